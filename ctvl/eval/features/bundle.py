"""The feature-network bundle: CTNet3D + SliceNet2D, their thresholds and the preprocessing they expect.

A bundle folder holds ``weights.safetensors`` (both nets, keys prefixed ``ctnet3d.`` / ``slicenet2d.``;
float16 when float32 would exceed 1 MB), ``config.json`` (format, both net configs, the 18 label names,
thresholds, ``preprocessing`` = ``PreprocessSpec.to_dict()``, training facts, held-out F1) and whatever
extra files the writer adds (model card, plots). :func:`save_feature_nets` publishes it with
:func:`ctvl.atomic.publish_dir` (built in a hidden folder beside the target, then swapped in), so a reader
sees the old bundle or the new one, never a mixture. The default bundle
``ctvl/bundles/featurenets-phantom-cpu`` is trained by ``pipelines/train_feature_nets.py``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ctvl.atomic import publish_dir
from ctvl.classify.extract import predict_labels, volume_logits
from ctvl.classify.nets import CTNet3D, FeatureNetConfig, SliceNet2D
from ctvl.data.labels import CTRATE_LABELS
from ctvl.data.transforms import PreprocessSpec
from ctvl.errors import InputError
from ctvl.train.checkpoint import load_checkpoint, load_weights, write_bundle_files

FORMAT = "ctvl-featurenets-1"
DEFAULT_BUNDLE = Path(__file__).resolve().parents[2] / "bundles" / "featurenets-phantom-cpu"
PIPELINE = "pipelines/train_feature_nets.py"
FP16_ABOVE_BYTES = 1 << 20  # store float16 weights when float32 would be larger than 1 MB


@dataclass
class FeatureNets:
    """Loaded feature networks.

    Attributes:
        ctnet3d: the 3D classifier (eval mode).
        slicenet2d: the 2D slice network (eval mode).
        thresholds: (18,) probability thresholds of ``ctnet3d``.
        spec: the preprocessing the nets expect (model space of the tokenizer they were trained with).
        config: the bundle's whole ``config.json`` (training facts, held-out F1, ...).
        folder: where it was loaded from (None when built in memory).
    """

    ctnet3d: CTNet3D
    slicenet2d: SliceNet2D
    thresholds: torch.Tensor
    spec: PreprocessSpec
    config: dict[str, Any] = field(default_factory=dict)
    folder: Path | None = None

    def probabilities(self, x: torch.Tensor, batch: int = 16) -> torch.Tensor:
        """Label probabilities of model-space volumes: (N, 1, T, H, W) -> (N, 18)."""
        return torch.sigmoid(volume_logits(self.ctnet3d, x, batch))

    def predict(self, x: torch.Tensor, batch: int = 16) -> torch.Tensor:
        """0/1 labels of model-space volumes with the bundle's thresholds: (N, 1, T, H, W) -> (N, 18) int64."""
        return predict_labels(self.ctnet3d, x, self.thresholds, batch)


def _state(ctnet3d: torch.nn.Module, slicenet2d: torch.nn.Module) -> tuple[dict[str, torch.Tensor], str]:
    state = {f"ctnet3d.{k}": v for k, v in ctnet3d.state_dict().items()}
    state.update({f"slicenet2d.{k}": v for k, v in slicenet2d.state_dict().items()})
    fp32 = sum(v.numel() * 4 for v in state.values() if v.is_floating_point())
    if fp32 <= FP16_ABOVE_BYTES:
        return state, "float32"
    return {k: v.half() if v.is_floating_point() else v for k, v in state.items()}, "float16"


def save_feature_nets(
    out_dir: str | Path,
    *,
    ctnet3d: CTNet3D,
    slicenet2d: SliceNet2D,
    thresholds: torch.Tensor,
    spec: PreprocessSpec,
    training: Mapping[str, Any] | None = None,
    heldout: Mapping[str, Any] | None = None,
    extra_files: Mapping[str, str | bytes] | None = None,
) -> Path:
    """Write a feature-network bundle atomically (:func:`ctvl.atomic.publish_dir`).

    Args:
        out_dir: the bundle folder (its parent is created; an existing bundle there is replaced).
        ctnet3d, slicenet2d: the trained nets.
        thresholds: (18,) probability thresholds of ``ctnet3d``.
        spec: the preprocessing the nets were trained on.
        training: JSON-able training facts (data, epochs, seconds, ...).
        heldout: JSON-able held-out results (per-label F1, floors, ...).
        extra_files: file name -> text or bytes written beside the weights (model card, plots).

    Returns:
        The bundle folder.
    """

    out = Path(out_dir)
    state, dtype = _state(ctnet3d, slicenet2d)
    config = {
        "format": FORMAT,
        "labels": list(CTRATE_LABELS),
        "ctnet3d": ctnet3d.config.to_dict(),
        "slicenet2d": slicenet2d.config.to_dict(),
        "thresholds": [round(float(t), 6) for t in thresholds],
        "preprocessing": spec.to_dict(),
        "weights_dtype": dtype,
        "training": dict(training or {}),
        "heldout": dict(heldout or {}),
    }
    with publish_dir(out) as tmp:
        write_bundle_files(state, config, tmp)
        for name, content in (extra_files or {}).items():
            if Path(name).name != name:
                raise ValueError(f"extra file names must be plain names, got {name!r}")
            (tmp / name).write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    return out


def load_feature_nets(path: str | Path | None = None, device: str | torch.device = "cpu") -> FeatureNets:
    """Load a feature-network bundle (default: the shipped ``ctvl/bundles/featurenets-phantom-cpu``).

    Raises:
        InputError: (one line) no bundle there (naming the pipeline that trains the default one), not a
            feature-network bundle, or weights that do not fit the stored configs.
    """

    folder = Path(path) if path is not None else DEFAULT_BUNDLE
    if not (folder / "config.json").is_file():
        raise InputError(f"feature-network bundle not found; train it with `python {PIPELINE}`", path=folder)
    try:
        fmt = json.loads((folder / "config.json").read_text(encoding="utf-8")).get("format")
    except (OSError, ValueError, AttributeError):
        raise InputError("config.json is unreadable or not a JSON object", path=folder / "config.json") from None
    if fmt != FORMAT:
        raise InputError(f"not a feature-network bundle (format {fmt!r}, expected {FORMAT!r})", path=folder)
    state, config = load_checkpoint(folder)
    state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    ctnet3d = CTNet3D(config=FeatureNetConfig.from_dict(config["ctnet3d"]))
    slicenet2d = SliceNet2D(config=FeatureNetConfig.from_dict(config["slicenet2d"]))
    for prefix, net in (("ctnet3d.", ctnet3d), ("slicenet2d.", slicenet2d)):
        load_weights(net, {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}, folder)
        net.to(device).eval()
    return FeatureNets(
        ctnet3d,
        slicenet2d,
        torch.tensor(config["thresholds"], dtype=torch.float32),
        PreprocessSpec.from_dict(config["preprocessing"]),
        config,
        folder,
    )
