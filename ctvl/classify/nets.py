"""Feature networks for synthesis metrics: a 3D classifier of the 18 labels and a 2D slice network.

GenerateCT and BTB3D score generated volumes with "CT-Net", a 3D classifier of the 18 CT-RATE labels whose
penultimate features feed an FVD-style Fréchet distance; its weights are not available. The VLM3D / MAISI
protocol adds a 2.5D FID: a 2D network's features of axial, coronal and sagittal slices. ctvl trains both
on phantoms (``pipelines/train_feature_nets.py``):

- :class:`CTNet3D` reads a model-space volume (B, 1, T, H, W) = (B, 1, 33, 64, 64) in [-1, 1].
- :class:`SliceNet2D` reads slices (B, 1, h, w) of any plane: axial (H, W) = 64 × 64, coronal (T, W) and
  sagittal (T, H) = 33 × 64. Global pooling makes the size irrelevant, so one net serves all three planes
  (trained on slices of all three with the volume's labels as weak slice labels); one net keeps the three
  per-plane FIDs in the same feature space, so their mean is meaningful.

Both are conv stacks (conv → norm → ReLU layers, optionally residual blocks between), pooled by
concatenated mean and max (max keeps small findings a mean would dilute), then a linear layer to the
``feature_dim`` features (ReLU) and a linear head to the 18 logits.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from ctvl.data.labels import CTRATE_LABELS
from ctvl.errors import ConfigError, check_keys


@dataclass(frozen=True)
class FeatureNetConfig:
    """Shape of a feature network (shared by the 3D and the 2D net).

    Attributes:
        in_channels: input channels (1: one CT intensity channel in [-1, 1]).
        widths: channels of each conv layer (conv 3 → norm → ReLU).
        strides: stride of each conv layer (None = 2 for every layer).
        blocks: residual blocks after each conv layer (0 = a plain conv stack).
        feature_dim: size of the penultimate features (Fréchet distances use them).
        num_labels: logits out (18 CT-RATE labels).
        norm: "batch" (BatchNorm) or "group" (GroupNorm, 8 groups).
        dropout: dropout before the label head (training only).
    """

    in_channels: int = 1  # CT intensity
    widths: tuple[int, ...] = (24, 32, 64, 64, 96, 96)  # channels per conv layer (the token probe's CNN)
    strides: tuple[int, ...] | None = (2, 1, 2, 1, 2, 1)  # stride per layer; None = all 2
    blocks: int = 0  # residual blocks after each layer
    feature_dim: int = 128  # penultimate features
    num_labels: int = len(CTRATE_LABELS)  # 18 CT-RATE labels
    norm: str = "batch"  # "batch" | "group"
    dropout: float = 0.1  # before the head

    def __post_init__(self) -> None:
        if self.norm not in ("batch", "group"):
            raise ConfigError(f"feature net norm must be 'batch' or 'group', got {self.norm!r}")
        if not self.widths or min(self.widths) < 1 or self.feature_dim < 1 or self.num_labels < 1:
            raise ConfigError(f"feature net widths, feature_dim and num_labels must be positive, got {self}")
        if self.strides is not None and len(self.strides) != len(self.widths):
            raise ConfigError(f"feature net strides {self.strides} must have one entry per width {self.widths}")
        if self.norm == "group" and any(w % 8 for w in self.widths):
            raise ConfigError(f"GroupNorm uses 8 groups: every width must be a multiple of 8, got {self.widths}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict (tuples become lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FeatureNetConfig:
        """Inverse of :meth:`to_dict`; unknown keys are a :class:`ConfigError`."""
        check_keys(data, cls, "feature net config")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})


SLICE_CONFIG = FeatureNetConfig(widths=(16, 32, 64, 128), strides=None, blocks=1)  # SliceNet2D default


def _conv(spatial_dims: int) -> type[nn.Module]:
    return nn.Conv3d if spatial_dims == 3 else nn.Conv2d


def _norm(kind: str, spatial_dims: int, channels: int) -> nn.Module:
    if kind == "group":
        return nn.GroupNorm(8, channels)
    return nn.BatchNorm3d(channels) if spatial_dims == 3 else nn.BatchNorm2d(channels)


class _ConvNormAct(nn.Sequential):
    def __init__(self, spatial_dims: int, cin: int, cout: int, stride: int, norm: str, act: bool = True) -> None:
        layers = [
            _conv(spatial_dims)(cin, cout, 3, stride=stride, padding=1, bias=False),
            _norm(norm, spatial_dims, cout),
        ]
        super().__init__(*layers, *([nn.ReLU(inplace=True)] if act else []))


class _ResBlock(nn.Module):
    """x + conv-norm-ReLU-conv-norm(x), then ReLU (ResNet basic block)."""

    def __init__(self, spatial_dims: int, channels: int, norm: str) -> None:
        super().__init__()
        self.body = nn.Sequential(
            _ConvNormAct(spatial_dims, channels, channels, 1, norm),
            _ConvNormAct(spatial_dims, channels, channels, 1, norm, act=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x + self.body(x))


class _FeatureNet(nn.Module):
    """Stages → mean+max pooling → features → label head, for ``spatial_dims`` 2 or 3."""

    spatial_dims: int = 3

    def __init__(self, *, config: FeatureNetConfig | None = None) -> None:
        super().__init__()
        self.config = config or FeatureNetConfig()
        c, d = self.config, self.spatial_dims
        stages: list[nn.Module] = []
        cin = c.in_channels
        for width, stride in zip(c.widths, c.strides or (2,) * len(c.widths)):
            stages.append(_ConvNormAct(d, cin, width, stride, c.norm))
            stages.extend(_ResBlock(d, width, c.norm) for _ in range(c.blocks))
            cin = width
        self.stages = nn.Sequential(*stages)
        self.project = nn.Sequential(nn.Linear(2 * cin, c.feature_dim), nn.ReLU(inplace=True))
        self.dropout = nn.Dropout(c.dropout)
        self.head = nn.Linear(c.feature_dim, c.num_labels)

    def _check(self, x: torch.Tensor) -> None:
        if x.ndim != self.spatial_dims + 2 or x.shape[1] != self.config.in_channels:
            want = "(B, C, T, H, W)" if self.spatial_dims == 3 else "(B, C, h, w)"
            raise ValueError(
                f"{type(self).__name__} expects {want} with C={self.config.in_channels}, got {tuple(x.shape)}"
            )

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate features: (B, C, ...) -> (B, feature_dim), non-negative (after ReLU)."""
        self._check(x)
        return self.features_of_map(self.stages(x))

    def features_of_map(self, h: torch.Tensor) -> torch.Tensor:
        """Penultimate features from the last stage's map: (B, widths[-1], ...) -> (B, feature_dim)."""
        dims = tuple(range(2, h.ndim))
        pooled = torch.cat([h.mean(dims), h.amax(dims)], 1)  # (B, 2 * widths[-1])
        return self.project(pooled)  # (B, feature_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Label logits: (B, C, ...) -> (B, num_labels)."""
        return self.head(self.dropout(self.features(x)))


class CTNet3D(_FeatureNet):
    """3D classifier of the 18 labels on model-space volumes.

    Args:
        config: :class:`FeatureNetConfig` (default: the token probe's six layers 24-32-64-64-96-96, strides
            2-1-2-1-2-1, 128 features).

    Shapes:
        ``forward``: (B, 1, T, H, W) -> (B, 18) logits; ``features``: (B, 1, T, H, W) -> (B, feature_dim).
        Any T, H, W of at least 1 work (global pooling); the shipped net was trained on 33 × 64 × 64.
    """

    spatial_dims = 3


class SliceNet2D(_FeatureNet):
    """2D network on slices of any plane (axial 64 × 64, coronal / sagittal 33 × 64).

    Args:
        config: :class:`FeatureNetConfig` (default :data:`SLICE_CONFIG`: stride-2 layers 16-32-64-128, one
            residual block after each).

    Shapes:
        ``forward``: (B, 1, h, w) -> (B, 18) logits; ``features``: (B, 1, h, w) -> (B, feature_dim).
    """

    spatial_dims = 2

    def __init__(self, *, config: FeatureNetConfig | None = None) -> None:
        super().__init__(config=config or SLICE_CONFIG)
