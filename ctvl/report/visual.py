"""Visual path of the report model: tokenizer latents → token reduction → MLP projector (+ positions).

Optionally a few 3x3x3 convolutions run on the latent grid first (:class:`~ctvl.report.projector.ConvMixer`,
C-Abstractor-style), and the selected tokens carry those features instead of the raw latents.

Input per scan: the quantized latents ``codes`` (D, t, h, w) of the 3D (or slice-wise) tokenizer.
Reduction, chosen by ``ReductionConfig.kind`` and taken from the shared library
(:mod:`ctvl.tokenizers.reduction`, :mod:`ctvl.tokenizers.oned`):

=============== ======================================================================================
``none``        every latent voxel is a token (BTB3D: 31,744 tokens at 241 × 512² and 8 × 16 × 16)
``pool``        average pooling to a fixed grid (M3 :class:`~ctvl.tokenizers.oned.NestedPooling`, one level)
``divprune``    keep ``keep`` tokens by greedy max-min cosine diversity (:func:`~ctvl.tokenizers.reduction.divprune`)
``topk``        keep ``keep`` tokens by summary attention, budget split over ``regions`` (VTC-CLS / HiRED)
``tokenpacker`` learned: coarse queries attend to their own region (:class:`~ctvl.tokenizers.reduction.TokenPacker`)
``mqt``         learned: ``keep`` prefix queries attend to all tokens (:class:`~ctvl.tokenizers.oned.MQTResampler`)
=============== ======================================================================================

Selected or pooled tokens keep their grid position through a sin-cos code of the (t, h, w) coordinate,
projected by a small linear layer and added after the MLP projector. The learned reducers run after the
projector, in the LM's width.

The reduction modules are imported only for the kind a config selects (each is a separate module
of :mod:`ctvl.tokenizers`, most configs use one or none), which keeps loading a report bundle light.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from ctvl.data.labels import NUM_LABELS
from ctvl.errors import ConfigError, check_keys
from ctvl.report.projector import ConvMixer, MLPProjector, grid_coordinates, sincos_positions

REDUCTIONS = ("none", "pool", "divprune", "topk", "tokenpacker", "mqt")
POSITION_FEATURES = 48  # sin-cos features per token: 3 axes x 2 x 8 frequencies


@dataclass
class ReductionConfig:
    """How the latent grid becomes the visual tokens the LM reads."""

    kind: str = "none"  # one of REDUCTIONS
    keep: int = 64  # divprune / topk / mqt: tokens kept
    grid: list[int] = field(default_factory=lambda: [2, 4, 4])  # pool: output grid (t, h, w)
    regions: list[int] = field(default_factory=lambda: [1, 2, 2])  # topk: regions per axis (HiRED budget split)
    factor: list[int] = field(default_factory=lambda: [1, 2, 2])  # tokenpacker: region size per axis
    heads: int = 4  # tokenpacker / mqt attention heads
    depth: int = 1  # mqt decoder layers

    def __post_init__(self) -> None:
        if self.kind not in REDUCTIONS:
            raise ConfigError(f"model.reduction.kind must be one of {', '.join(REDUCTIONS)}, got {self.kind!r}")
        if self.keep < 1:
            raise ConfigError(f"model.reduction.keep must be >= 1, got {self.keep}")
        for name in ("grid", "regions", "factor"):
            value = [int(v) for v in getattr(self, name)]
            if len(value) != 3 or min(value) < 1:
                raise ConfigError(f"model.reduction.{name} must be three positive integers (t, h, w), got {value}")
            setattr(self, name, value)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> ReductionConfig:
        check_keys(data or {}, cls, "model.reduction")
        return cls(**(data or {}))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Selection(NamedTuple):
    """Latent tokens chosen for the LM: ``tokens`` (k, D), flat ``indices`` (k,) into ``grid`` (t, h, w),
    and the whole latent grid ``codes`` (D, t, h, w) for a convolutional projector."""

    tokens: torch.Tensor
    indices: torch.Tensor
    grid: tuple[int, ...]
    codes: torch.Tensor


def count_tokens(reduction: ReductionConfig, grid: tuple[int, ...]) -> int:
    """Visual tokens the LM receives for a latent grid (t, h, w) under ``reduction``."""
    r, n = reduction, math.prod(grid)
    if r.kind == "none":
        return n
    if r.kind == "pool":
        return math.prod(r.grid)
    if r.kind in ("divprune", "topk"):
        return min(r.keep, n)
    if r.kind == "tokenpacker":
        return math.prod(-(-g // f) for g, f in zip(grid, r.factor))
    return r.keep


def select_tokens(codes: torch.Tensor, reduction: ReductionConfig) -> Selection:
    """The parameter-free part of the visual path: which latent (or pooled) tokens the LM will see.

    Deterministic for given latents, so training computes it once per scan
    (:class:`~ctvl.report.task.ReportTask`). The learned reducers (TokenPacker, MQT) select every token here.

    Args:
        codes: one scan's latents (D, t, h, w).
        reduction: the reduction config.

    Returns:
        :class:`Selection` with tokens (k, D), their flat indices (k,) and the grid they index.
    """
    r = reduction
    x = codes.float()[None]  # (1, D, t, h, w)
    grid = tuple(int(s) for s in codes.shape[1:])
    n = math.prod(grid)
    keep_all = r.kind in ("none", "tokenpacker", "mqt") or (r.kind in ("divprune", "topk") and r.keep >= n)
    if keep_all:
        return Selection(x[0].flatten(1).T.contiguous(), torch.arange(n, device=x.device), grid, x[0])
    if r.kind == "pool":
        from ctvl.tokenizers.oned import NestedPooling

        pooled = NestedPooling(spatial_dims=3, levels=[tuple(r.grid)]).pool(x, 0)[0]  # (k, D)
        return Selection(pooled, torch.arange(pooled.shape[0], device=x.device), tuple(r.grid), x[0])
    if r.kind == "divprune":
        from ctvl.tokenizers.reduction import divprune

        kept = divprune(x, r.keep, spatial_dims=3)
    else:
        from ctvl.tokenizers.reduction import attention_topk

        regions = [min(a, g) for a, g in zip(r.regions, grid)]
        kept = attention_topk(x, r.keep, spatial_dims=3, regions=regions)
    return Selection(kept.tokens[0], kept.indices[0], grid, x[0])


class VisualEncoder(nn.Module):
    """Latent grid of one scan → visual token embeddings in the LM's width.

    Args:
        in_dim: latent channels D of the tokenizer.
        lm_dim: the LM's hidden size.
        reduction: the reduction to apply.
        projector_hidden: hidden width of the MLP projector (None = ``lm_dim``).
        projector_layers: Linear layers of the projector.
        positions: add the (t, h, w) position code.
        conv_layers: 3x3x3 conv layers over the latent grid before the projector (0 = none).
        conv_width: their channels.
        summary: append one summary token (mean and max of the features over the whole grid, projected)
            and predict the 18 labels from the same pooled features (a direct auxiliary target for the
            visual path; the LM then finds the scan's findings in one place, right before ``</image>``).
    """

    def __init__(
        self,
        *,
        in_dim: int,
        lm_dim: int,
        reduction: ReductionConfig,
        projector_hidden: int | None = None,
        projector_layers: int = 2,
        positions: bool = True,
        conv_layers: int = 0,
        conv_width: int = 64,
        summary: bool = False,
    ) -> None:
        super().__init__()
        self.in_dim, self.lm_dim, self.reduction = in_dim, lm_dim, reduction
        self.conv = ConvMixer(in_dim=in_dim, width=conv_width, layers=conv_layers) if conv_layers > 0 else None
        feature_dim = conv_width if self.conv is not None else in_dim
        self.projector = MLPProjector(
            in_dim=feature_dim, out_dim=lm_dim, hidden=projector_hidden, layers=projector_layers
        )
        self.summary_token = (
            MLPProjector(in_dim=2 * feature_dim, out_dim=lm_dim, hidden=projector_hidden, layers=projector_layers)
            if summary
            else None
        )
        self.label_head = nn.Linear(2 * feature_dim, NUM_LABELS) if summary else None
        self.position = nn.Linear(POSITION_FEATURES, lm_dim) if positions else None
        if self.position is not None:
            nn.init.normal_(self.position.weight, std=0.02)
            nn.init.zeros_(self.position.bias)
        self.packer: nn.Module | None = None
        self.resampler: nn.Module | None = None
        if reduction.kind == "tokenpacker":
            from ctvl.tokenizers.reduction import TokenPacker

            self.packer = TokenPacker(
                spatial_dims=3, dim=lm_dim, out_dim=lm_dim, factor=reduction.factor, heads=reduction.heads
            )
        elif reduction.kind == "mqt":
            from ctvl.tokenizers.oned import MQTResampler

            self.resampler = MQTResampler(
                dim=lm_dim, num_queries=reduction.keep, depth=reduction.depth, heads=reduction.heads
            )

    def num_tokens(self, grid: tuple[int, int, int]) -> int:
        """Visual tokens the LM receives for a latent grid (t, h, w)."""
        return count_tokens(self.reduction, grid) + (self.summary_token is not None)

    def select(self, codes: torch.Tensor) -> Selection:
        """:func:`select_tokens` for one scan's latents (D, t, h, w), checking D against the model."""
        if codes.ndim != 4 or codes.shape[0] != self.in_dim:
            raise ConfigError(
                f"visual latents must be ({self.in_dim}, t, h, w), got {tuple(codes.shape)}; "
                "the report model and the tokenizer do not match"
            )
        return select_tokens(codes, self.reduction)

    def _maps(self, selections: list[Selection]) -> list[torch.Tensor]:
        """Per scan, the feature grid: conv features (W, t, h, w), or the latents (D, t, h, w) without convs."""
        if self.conv is None:
            return [s.codes.float() for s in selections]
        shapes = {tuple(s.codes.shape) for s in selections}
        if len(shapes) == 1:  # one conv call for the batch
            return list(self.conv(torch.stack([s.codes.float() for s in selections])).unbind(0))
        return [self.conv(s.codes.float()[None])[0] for s in selections]

    def _features(self, selections: list[Selection], maps: list[torch.Tensor]) -> list[torch.Tensor]:
        """Per scan, the selected tokens (k, D), or with a conv stage its features at the same places (k, W)."""
        if self.conv is None:
            return [s.tokens.float() for s in selections]
        out = []
        for sel, fmap in zip(selections, maps):  # fmap (W, t, h, w)
            if self.reduction.kind == "pool":
                from ctvl.tokenizers.oned import NestedPooling

                out.append(NestedPooling(spatial_dims=3, levels=[tuple(self.reduction.grid)]).pool(fmap[None], 0)[0])
            else:
                out.append(fmap.flatten(1).T[sel.indices])
        return out

    def embed(self, selections: list[Selection]) -> tuple[list[torch.Tensor], torch.Tensor | None]:
        """Selected tokens of B scans → B tensors (k_b, lm_dim) (one projector call for the whole batch),
        and with ``summary`` the (B, 18) label logits of the pooled features (else None)."""
        maps = self._maps(selections) if (self.conv is not None or self.summary_token is not None) else []
        tokens = torch.cat(self._features(selections, maps))  # (sum k, D or W)
        out = self.projector(tokens)  # (sum k, lm_dim)
        if self.position is not None:
            coords = torch.cat([grid_coordinates(s.indices, tuple(int(g) for g in s.grid)) for s in selections])
            out = out + self.position(sincos_positions(coords, POSITION_FEATURES))
        parts = list(out.split([s.tokens.shape[0] for s in selections]))
        if self.reduction.kind == "tokenpacker":
            if self.packer is None:
                raise RuntimeError("reduction 'tokenpacker' was built without its packer")
            packed = []
            for sel, part in zip(selections, parts):
                grid = tuple(int(g) for g in sel.grid)
                fmap = part.T.reshape(1, self.lm_dim, *grid)
                pad = [v for g, f in zip(reversed(grid), reversed(self.reduction.factor)) for v in (0, -g % f)]
                fmap = F.pad(fmap, pad, mode="replicate") if any(pad) else fmap
                packed.append(self.packer(fmap)[0][0])  # (Nq, lm_dim)
            parts = packed
        elif self.reduction.kind == "mqt":
            if self.resampler is None:
                raise RuntimeError("reduction 'mqt' was built without its resampler")
            parts = [self.resampler(part[None])[0] for part in parts]  # (keep, lm_dim) each
        if self.summary_token is None:
            return parts, None
        pooled = torch.stack([torch.cat([m.flatten(1).mean(1), m.flatten(1).amax(1)]) for m in maps])  # (B, 2F)
        extra = self.summary_token(pooled)  # (B, lm_dim)
        parts = [torch.cat([part, extra[b : b + 1]]) for b, part in enumerate(parts)]
        return parts, self.label_head(pooled)

    def encode_one(self, codes: torch.Tensor) -> torch.Tensor:
        """One scan's latents (D, t, h, w) → visual tokens (k, lm_dim)."""
        return self.embed([self.select(codes)])[0][0]

    def forward(self, items: list[torch.Tensor | Selection]) -> tuple[list[torch.Tensor], torch.Tensor | None]:
        """B scans, each latents (D, t, h, w) or a precomputed :class:`Selection` → B tensors (k_b, lm_dim)
        and the summary label logits (B, 18) or None (see :meth:`embed`)."""
        return self.embed([it if isinstance(it, Selection) else self.select(it) for it in items])
