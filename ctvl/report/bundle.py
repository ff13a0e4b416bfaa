"""Report-model bundles: LM + projector weights, the BPE, and the exact tokenizer and preprocessing.

A bundle folder holds ``weights.safetensors`` and ``config.json`` (``{"format", "task_name": "report",
"task": <ReportTask export>, "training": {...}}``), a copy of the tokenizer bundle it was trained on in
``tokenizer/`` (a text-only model has none), optionally a voxel classifier for the diagnosis prompt in
``diagnosis/`` (:mod:`ctvl.report.diagnosis`) and ``MODEL_CARD.md``. Loading checks that the tokenizer
found is the one the model was trained with (same weights digest) and that its preprocessing spec is
the one recorded at training time: a scan is always preprocessed exactly as the training scans were,
and a bundle whose parts do not belong together is refused rather than silently used.
:func:`load_report_model` reads a bundle, a training run folder or a checkpoint alike (for a run, the
tokenizer is found at the source recorded in the checkpoint).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ctvl.atomic import publish_dir
from ctvl.data.transforms import PreprocessSpec
from ctvl.errors import ConfigError, CtvlError, InputError
from ctvl.report.diagnosis import DIAGNOSIS_DIR, VoxelDiagnosis, load_diagnosis
from ctvl.report.model import ReportModel, ReportModelConfig
from ctvl.report.text_tokenizer import ReportTextTokenizer
from ctvl.tokenizers.causal3d.bundle import copy_tokenizer_bundle, load_embedded_tokenizer
from ctvl.train.checkpoint import load_checkpoint, load_weights, open_bundle, write_bundle_files

DEFAULT_BUNDLE = Path(__file__).resolve().parents[1] / "bundles" / "report-phantom-cpu"
BUNDLE_FORMAT = "ctvl-report-bundle-1"
TASK_NAME = "report"
TOKENIZER_DIR = "tokenizer"


@dataclass
class LoadedReportModel:
    """A report model ready for inference.

    Attributes:
        model: the :class:`ReportModel`, eval mode.
        text: its text tokenizer.
        tokenizer: the visual tokenizer (``LoadedTokenizer``), None for a text-only model.
        spec: the preprocessing spec recorded at training (None for a text-only model).
        export: the stored task export (model config, tokenizer identity, training data ranges).
        training: the bundle's ``training`` facts ({} for a run folder).
        source: the folder it was loaded from.
        diagnosis: the voxel classifier that sets the diagnosis prompt (None: the model's own label head).
    """

    model: ReportModel
    text: ReportTextTokenizer
    tokenizer: Any
    spec: PreprocessSpec | None
    export: dict[str, Any]
    training: dict[str, Any]
    source: Path
    diagnosis: VoxelDiagnosis | None = None

    @property
    def visual(self) -> bool:
        """Whether the model reads the scan (False: text-only prior)."""
        return self.tokenizer is not None


def _export_of(config: dict[str, Any], where: Path) -> dict[str, Any]:
    export = config.get("task")
    if config.get("task_name") != TASK_NAME or not isinstance(export, dict):
        raise InputError(
            "not a ctvl report model (config.json has no report task); pass a report bundle or run", path=where
        )
    for key in ("model", "text_tokenizer", "tokenizer", "preprocessing"):
        if key not in export:
            raise InputError(
                f"report config.json lacks '{key}'; re-export the bundle from its training run", path=where
            )
    return export


def load_report_model(path: str | Path | None = None, device: str | torch.device = "cpu") -> LoadedReportModel:
    """Load a report bundle, run folder or checkpoint (default: the phantom bundle shipped with ctvl).

    Raises:
        InputError: missing folder, not a report model, weights that do not fit, or a tokenizer /
            preprocessing that differs from the one the model was trained with.
    """

    folder, state, config = open_bundle(path, DEFAULT_BUNDLE, "report model", "pipelines/train_report.py")
    export = _export_of(config, folder)
    try:
        text = ReportTextTokenizer.from_dict(export["text_tokenizer"])
        model = ReportModel(config=ReportModelConfig.from_dict(export["model"]), text=text)
    except CtvlError as exc:
        raise InputError(f"invalid report config.json: {exc}", path=folder) from None
    load_weights(model, state, folder)
    model.to(device).eval()
    tok = (
        load_embedded_tokenizer(
            folder / TOKENIZER_DIR, export["tokenizer"], export["preprocessing"], device, "report model"
        )
        if export["tokenizer"] is not None
        else None
    )
    spec = PreprocessSpec.from_dict(export["preprocessing"]) if export["preprocessing"] else None
    diagnosis = None
    if (folder / DIAGNOSIS_DIR / "config.json").is_file():
        if model.diagnosis is None or tok is None:
            raise InputError("this report model has no diagnosis prompt to fill: remove diagnosis/", path=folder)
        diagnosis = load_diagnosis(folder / DIAGNOSIS_DIR, spec, device)
    return LoadedReportModel(
        model=model,
        text=text,
        tokenizer=tok,
        spec=spec,
        export=export,
        training=dict(config.get("training") or {}),
        source=folder,
        diagnosis=diagnosis,
    )


def export_report_bundle(
    source: str | Path,
    out_dir: str | Path,
    card: str | None = None,
    training: dict[str, Any] | None = None,
    half: bool = False,
    tokenizer_source: str | Path | None = None,
    model_overrides: dict[str, Any] | None = None,
    diagnosis_source: str | Path | None = None,
) -> Path:
    """Write a self-contained report bundle from a training run or checkpoint.

    Args:
        source: run folder (newest checkpoint; EMA weights when kept) or checkpoint folder.
        out_dir: bundle folder (created; an existing one is replaced whole, atomically).
        card: MODEL_CARD.md text.
        training: facts stored under ``config.json["training"]`` (command, time, metrics).
        half: store floating-point weights as float16 (upcast on load).
        tokenizer_source: copy the tokenizer from here instead of the source recorded at training (e.g. the
            installed bundle); it must have the same id.
        model_overrides: inference settings of the model config to replace (e.g. ``{"label_threshold": 0.2}``
            chosen after training by :mod:`ctvl.eval.calibrate`); checked like the YAML ``model:`` section.
        diagnosis_source: a ``diagnosis/`` folder (:mod:`ctvl.report.diagnosis`) to copy into the bundle.

    Returns:
        The bundle folder.
    """

    source = Path(source)
    state, config = load_checkpoint(source)
    export = _export_of(config, source)
    if model_overrides:
        allowed = {"label_threshold", "max_new_tokens", "num_beams"}  # never the architecture
        if set(model_overrides) - allowed:
            raise ConfigError(f"only {sorted(allowed)} can change at export, got {sorted(model_overrides)}")
        export = {**export, "model": ReportModelConfig.from_dict({**export["model"], **model_overrides}).to_dict()}
    if half:
        state = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
    info = {
        "source_run": config.get("run", {}).get("run_name"),
        "step": config.get("step"),
        "weights_dtype": "float16" if half else "float32",
        **(training or {}),
    }
    with publish_dir(out_dir) as tmp:  # the bundle appears whole (weights, config, tokenizer, card) or not at all
        if export["tokenizer"] is not None:
            where = Path(tokenizer_source) if tokenizer_source is not None else Path(export["tokenizer"]["source"])
            copy_tokenizer_bundle(where, tmp / TOKENIZER_DIR, export["tokenizer"]["id"])
        write_bundle_files(
            state, {"format": BUNDLE_FORMAT, "task_name": TASK_NAME, "task": export, "training": info}, tmp
        )
        if diagnosis_source is not None:
            shutil.copytree(diagnosis_source, tmp / DIAGNOSIS_DIR)
        if card is not None:
            (tmp / "MODEL_CARD.md").write_text(card, encoding="utf-8")
    return Path(out_dir)


def with_diagnosis(bundle: str | Path, diagnosis: str | Path | None, card: str | None = None) -> Path:
    """Republish ``bundle`` whole with ``diagnosis`` (a ``diagnosis/`` folder) in it, or without one (None).

    The rest of the bundle is copied unchanged (``card`` replaces MODEL_CARD.md when given); the swap is
    atomic, so a reader sees the old bundle or the new one.
    """
    bundle = Path(bundle)
    if not (bundle / "config.json").is_file():
        raise InputError("not a report bundle (no config.json)", path=bundle)
    with publish_dir(bundle) as tmp:
        for item in bundle.iterdir():
            if item.name == DIAGNOSIS_DIR:
                continue
            if item.is_dir():
                shutil.copytree(item, tmp / item.name)
            else:
                shutil.copy2(item, tmp / item.name)
        if diagnosis is not None:
            shutil.copytree(diagnosis, tmp / DIAGNOSIS_DIR)
        if card is not None:
            (tmp / "MODEL_CARD.md").write_text(card, encoding="utf-8")
    return bundle
