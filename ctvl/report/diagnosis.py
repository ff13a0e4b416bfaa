"""Diagnosis from the voxels: a 3D classifier of the 18 labels that fills the report model's diagnosis prompt.

The report LM is trained to write what its 18 diagnosis tokens say (PromptMRG; in training they carry the
ground truth). At inference something must read the scan and set them. Out of the box that is the visual
path's own label head, which sees only the tokens; the tokens keep about half of what the 64 × 64 × 33 grid
shows (``pipelines/probe_tokens.py``: token probe 0.27 vs voxel probe 0.55 macro-F1). A bundle may instead
carry a :class:`~ctvl.classify.nets.CTNet3D` trained on the preprocessed voxels of the same training scans
(``pipelines/train_report_diagnosis.py``); then the prompt says what that classifier reads, with per-label
thresholds chosen on the training scans, and the visual tokens still reach the LM for what the labels do
not say (sides, sizes, severity). PromptMRG itself takes its diagnosis from a separate classification
branch.

Optionally it also reads each finding's side and extent (:class:`~ctvl.report.details.DetailHead` on the
classifier's last feature map, the classifier itself frozen) for a report model with ``detail_prompt``.

Stored in the report bundle's ``diagnosis/`` folder: ``weights.safetensors`` + ``config.json``
(format, net config, thresholds, label names, the preprocessing spec, training facts; the detail head's
weights under ``detail.*`` and its shape under ``"detail"``). The spec must be
the report bundle's own: the classifier reads exactly the model-space volume the tokenizer reads.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ctvl.classify.extract import volume_logits
from ctvl.classify.nets import CTNet3D, FeatureNetConfig
from ctvl.data.labels import CTRATE_LABELS
from ctvl.data.transforms import PreprocessSpec
from ctvl.errors import InputError
from ctvl.io.volume import Volume
from ctvl.report.details import DetailHead
from ctvl.train.checkpoint import load_checkpoint, load_weights, write_bundle_files

FORMAT = "ctvl-report-diagnosis-1"
DIAGNOSIS_DIR = "diagnosis"


@dataclass
class VoxelDiagnosis:
    """A loaded voxel classifier for the diagnosis prompt.

    Attributes:
        net: the 3D classifier, eval mode.
        thresholds: (18,) probability above which a label is stated present.
        spec: the preprocessing it reads (the report bundle's).
        config: the stored ``config.json`` (training facts, held-out F1).
        detail: side/extent head on ``net``'s last feature map, or None.
    """

    net: CTNet3D
    thresholds: torch.Tensor
    spec: PreprocessSpec
    config: dict[str, Any] = field(default_factory=dict)
    detail: DetailHead | None = None

    def probabilities(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 1, T, H, W) model-space volumes in [-1, 1] → (N, 18) label probabilities."""
        return torch.sigmoid(volume_logits(self.net, x))

    def reading(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 1, T, H, W) model-space volumes → what the prompt needs: (N, 18) label probabilities, or with a
        detail head (N, 18, 2): [..., 0] the probabilities, [..., 1] the detail code each label would carry
        if present (:mod:`ctvl.report.details`)."""
        if self.detail is None:
            return self.probabilities(x)
        device = next(self.net.parameters()).device
        rows = []
        with torch.no_grad():
            for i in range(0, len(x), 16):
                h = self.net.stages(x[i : i + 16].to(device=device, dtype=torch.float32))
                p = torch.sigmoid(self.net.head(self.net.features_of_map(h)))
                rows.append(torch.stack([p, self.detail.codes(h).float()], -1).cpu())
        return torch.cat(rows)

    def of_volume(self, volume: Volume) -> torch.Tensor:
        """:meth:`reading` of one HU volume, preprocessed with the stored spec: (18,) or (18, 2)."""
        return self.reading(self.spec.apply(volume)[None])[0]

    def states(self, reading: torch.Tensor) -> torch.Tensor:
        """(B, 18) probabilities or (B, 18, 2) readings → (B, 18) states of the diagnosis prompt: 0 where the
        probability is below the threshold, else 1 (no detail head) or the label's detail code."""
        probabilities = reading[..., 0] if reading.ndim == 3 else reading
        present = (probabilities.float() >= self.thresholds.to(reading.device)).long()
        return present * reading[..., 1].long() if reading.ndim == 3 else present


def write_diagnosis(
    folder: str | Path,
    *,
    net: CTNet3D,
    thresholds: torch.Tensor,
    spec: PreprocessSpec,
    training: Mapping[str, Any] | None = None,
    detail: DetailHead | None = None,
) -> Path:
    """Write a diagnosis folder (``weights.safetensors`` + ``config.json``) into ``folder``.

    The caller publishes the enclosing report bundle atomically; this writes plain files into it.
    """
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    if thresholds.shape != (len(CTRATE_LABELS),):
        raise InputError(f"diagnosis thresholds must have shape ({len(CTRATE_LABELS)},), got {tuple(thresholds.shape)}")
    config = {
        "format": FORMAT,
        "labels": list(CTRATE_LABELS),
        "net": net.config.to_dict(),
        "thresholds": [round(float(t), 6) for t in thresholds],
        "preprocessing": spec.to_dict(),
        "training": dict(training or {}),
    }
    state = {k: v.detach().cpu() for k, v in net.state_dict().items()}
    if detail is not None:
        config["detail"] = detail.facts()
        state.update({f"detail.{k}": v.detach().cpu() for k, v in detail.state_dict().items()})
    write_bundle_files(state, config, out)
    return out


def load_diagnosis(
    folder: str | Path, spec: PreprocessSpec | None, device: str | torch.device = "cpu"
) -> VoxelDiagnosis:
    """Load the ``diagnosis/`` folder of a report bundle.

    Args:
        folder: the diagnosis folder.
        spec: the report bundle's preprocessing; the classifier's must be the same.

    Raises:
        InputError: (one line) not a diagnosis folder, weights that do not fit, or another preprocessing.
    """
    folder = Path(folder)
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise InputError("the diagnosis config.json is missing or unreadable", path=folder) from None
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise InputError(f"not a report diagnosis folder (expected format {FORMAT!r})", path=folder)
    missing = [k for k in ("labels", "net", "thresholds", "preprocessing") if k not in config]
    if missing:
        raise InputError(
            f"the diagnosis config.json lacks {', '.join(missing)}; rewrite it with write_diagnosis", path=folder
        )
    if config.get("labels") != list(CTRATE_LABELS):
        raise InputError("the diagnosis classifier was trained on other labels than CT-RATE's 18", path=folder)
    own = PreprocessSpec.from_dict(config["preprocessing"])
    if spec is not None and own != spec:
        raise InputError(
            "the diagnosis classifier was trained on another preprocessing than the report model's; "
            "retrain it with pipelines/train_report_diagnosis.py",
            path=folder,
        )
    state, _ = load_checkpoint(folder)
    state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    net = CTNet3D(config=FeatureNetConfig.from_dict(config["net"]))
    load_weights(net, {k: v for k, v in state.items() if not k.startswith("detail.")}, folder)
    detail = None
    if isinstance(config.get("detail"), dict):
        facts = config["detail"]
        detail = DetailHead(channels=facts["channels"], cells=tuple(facts["cells"]), hidden=facts["hidden"])
        load_weights(detail, {k[len("detail.") :]: v for k, v in state.items() if k.startswith("detail.")}, folder)
        detail = detail.to(device).eval()
    return VoxelDiagnosis(
        net=net.to(device).eval(),
        thresholds=torch.tensor(config["thresholds"], dtype=torch.float32),
        spec=own,
        config=config,
        detail=detail,
    )
