"""Tokenizer bundles: a trained tokenizer together with the preprocessing it was trained with.

A bundle folder holds ``weights.safetensors`` + ``config.json`` (+ ``MODEL_CARD.md``). ``config.json`` is
``{"format", "task_name": "tokenizer", "task": <export>, "training": {...}}`` where ``<export>`` is what
:class:`~ctvl.tokenizers.causal3d.task.TokenizerTask` stores in every checkpoint (:func:`tokenizer_export`):
the model kind and architecture, the curriculum stage, the encode path and the **preprocessing spec**.
Inference always rebuilds the spec from there, never from a default, so a volume is preprocessed exactly
as the training volumes were. :func:`load_tokenizer` reads a bundle, a training checkpoint or a run folder
alike. Two bundles ship inside the package, weights stored in float16 to keep them small (upcast to float32
on load): ``tokenizer-realct-1p5mm`` (real chest CT at 1.5 mm isotropic, :data:`DEFAULT_BUNDLE`, what
``ctvl encode``/``ctvl reconstruct`` use) and ``tokenizer-phantom-cpu`` (the phantom tokenizer on the report
path's 5.6 x 5.6 x 11.25 mm grid; a copy lives inside the report bundle). Either can be named by its short
name (:data:`SHIPPED`: ``realct``, ``phantom``) wherever a bundle path is taken.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ctvl.atomic import is_temporary, publish_dir
from ctvl.data.transforms import PreprocessSpec
from ctvl.errors import ConfigError, CtvlError, InputError
from ctvl.tokenizers.causal3d.model import Causal3DConfig, Causal3DTokenizer
from ctvl.tokenizers.causal3d.slicewise import SliceTokenizer
from ctvl.train.checkpoint import load_checkpoint, load_weights, open_bundle, read_config, write_bundle_files

_BUNDLES = Path(__file__).resolve().parents[2] / "bundles"
REALCT_BUNDLE = _BUNDLES / "tokenizer-realct-1p5mm"
PHANTOM_BUNDLE = _BUNDLES / "tokenizer-phantom-cpu"
DEFAULT_BUNDLE = REALCT_BUNDLE
SHIPPED = {"realct": REALCT_BUNDLE, "phantom": PHANTOM_BUNDLE}
BUNDLE_FORMAT = "ctvl-tokenizer-bundle-1"
TASK_NAME = "tokenizer"
KINDS = ("causal3d", "slicewise")


def build_tokenizer(kind: str, config: Causal3DConfig) -> Causal3DTokenizer:
    """The network of ``kind`` (``"causal3d"`` or ``"slicewise"``) with architecture ``config``."""
    if kind == "causal3d":
        return Causal3DTokenizer(config=config)
    if kind == "slicewise":
        return SliceTokenizer(config=config)
    raise ConfigError(f"unknown tokenizer kind {kind!r}; use one of {', '.join(KINDS)}")


def tokenizer_export(
    kind: str,
    config: Causal3DConfig,
    spec: PreprocessSpec,
    stage: int | None,
    encode_mode: str = "windowed",
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The JSON a tokenizer checkpoint/bundle carries so inference can rebuild model and preprocessing."""
    return {
        "kind": kind,
        "config": config.to_dict(),
        "compression": config.compression,
        "preprocessing": spec.to_dict(),
        "stage": stage,
        "encode_mode": encode_mode,
        **(extra or {}),
    }


@dataclass
class LoadedTokenizer:
    """A tokenizer ready for inference.

    Attributes:
        model: the network, in eval mode.
        spec: the preprocessing spec it was trained with (from the bundle).
        kind: ``"causal3d"`` or ``"slicewise"``.
        stage: curriculum stage of the weights (None when unknown).
        encode_mode: inference encode path (``"windowed"``).
        source: the folder it was loaded from.
        tokenizer_id: 16-hex digest of weights + export config (stored in token files).
        export: the stored export dict.
    """

    model: Causal3DTokenizer
    spec: PreprocessSpec
    kind: str
    stage: int | None
    encode_mode: str
    source: Path
    tokenizer_id: str
    export: dict[str, Any]


def _export_of(config: dict[str, Any], where: Path) -> dict[str, Any]:
    export = config.get("task")
    if config.get("task_name") != TASK_NAME or not isinstance(export, dict):
        raise InputError("not a ctvl tokenizer bundle or checkpoint (config.json has no tokenizer task)", path=where)
    if "preprocessing" not in export or "config" not in export:
        raise InputError(
            "tokenizer config.json stores no preprocessing spec or architecture; it cannot be used "
            "for inference (re-export it from its training run)",
            path=where,
        )
    return export


def state_digest(state: dict[str, torch.Tensor], export: dict[str, Any]) -> str:
    """16-hex digest of a state dict (names, dtypes, values) and the export config."""
    h = hashlib.sha256(json.dumps(export, sort_keys=True, default=str).encode())
    for key in sorted(state):
        t = state[key].detach().to("cpu").contiguous()
        h.update(f"{key}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()[:16]


def resolve_bundle(path: str | Path | None) -> Path | None:
    """``path`` itself, or the shipped bundle it names (``"realct"``, ``"phantom"``) when no such file exists."""
    if path is not None and str(path) in SHIPPED and not Path(path).exists():
        return SHIPPED[str(path)]
    return None if path is None else Path(path)


def load_tokenizer(path: str | Path | None = None, device: str | torch.device = "cpu") -> LoadedTokenizer:
    """Load a tokenizer bundle, checkpoint or run folder (default: the real-CT bundle shipped with ctvl).

    Args:
        path: bundle / checkpoint / run folder, or a shipped bundle's short name (:data:`SHIPPED`);
            None = :data:`DEFAULT_BUNDLE`.
        device: where to put the model.

    Raises:
        InputError: no such folder, not a tokenizer, no stored spec, or weights that do not fit.
    """

    path = resolve_bundle(path)
    pipeline = "pipelines/train_tokenizer.py" if path == PHANTOM_BUNDLE else "pipelines/train_realct_tokenizer.py"
    folder, state, config = open_bundle(path, DEFAULT_BUNDLE, "tokenizer", pipeline)
    export = _export_of(config, folder)
    try:
        spec = PreprocessSpec.from_dict(export["preprocessing"])
        arch = Causal3DConfig.from_dict(export["config"])
        model = build_tokenizer(str(export.get("kind", "causal3d")), arch)
    except CtvlError as exc:
        raise InputError(f"invalid tokenizer config.json: {exc}", path=folder) from None
    load_weights(model, state, folder)
    model.to(device).eval()
    return LoadedTokenizer(
        model=model,
        spec=spec,
        kind=str(export.get("kind", "causal3d")),
        stage=export.get("stage"),
        encode_mode=str(export.get("encode_mode", "windowed")),
        source=folder,
        tokenizer_id=state_digest(state, export),
        export=export,
    )


def token_channels(path: str | Path | None, default: int) -> tuple[int, str | None]:
    """Token channels D of the tokenizer at ``path`` (for dry runs), read from its ``config.json`` alone (no
    weights are loaded); ``default`` and a note when there is no readable tokenizer config."""
    try:
        folder = resolve_bundle(path) or DEFAULT_BUNDLE
        if not folder.exists():
            raise InputError("tokenizer bundle not found", path=folder)
        export = _export_of(read_config(folder), folder)
        return int(Causal3DConfig.from_dict(export["config"]).token_channels), None
    except CtvlError as exc:
        return default, f"tokenizer not loaded ({str(exc).splitlines()[0]}); {default} token channels from the config"


def export_bundle(
    source: str | Path,
    out_dir: str | Path,
    card: str | None = None,
    half: bool = True,
    training: dict[str, Any] | None = None,
) -> Path:
    """Write a small inference bundle from a training run or checkpoint.

    Args:
        source: run folder (newest checkpoint) or checkpoint folder of a tokenizer training.
        out_dir: bundle folder (created; an existing one is replaced whole, atomically: see
            :func:`ctvl.atomic.publish_dir`).
        card: MODEL_CARD.md text to write beside the weights.
        half: store floating-point weights as float16 (half the size; upcast on load).
        training: facts for ``config.json["training"]`` (command, times, metrics).

    Returns:
        The bundle folder.
    """
    with publish_dir(out_dir) as tmp:
        _write_export(source, tmp, card, half, training)
    return Path(out_dir)


def _write_export(
    source: str | Path, folder: Path, card: str | None, half: bool, training: dict[str, Any] | None
) -> None:
    """The files of :func:`export_bundle`, written into ``folder`` (a folder being published)."""

    state, config = load_checkpoint(source)
    export = _export_of(config, Path(source))
    if half:
        state = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
    info = {
        "source_run": config.get("run", {}).get("run_name"),
        "step": config.get("step"),
        "weights_dtype": "float16" if half else "float32",
        **(training or {}),
    }
    write_bundle_files(
        state, {"format": BUNDLE_FORMAT, "task_name": TASK_NAME, "task": export, "training": info}, folder
    )
    if card is not None:
        (folder / "MODEL_CARD.md").write_text(card, encoding="utf-8")


def tokenizer_identity(tok: LoadedTokenizer) -> dict[str, Any]:
    """What a model trained on a tokenizer's latents records about it (id, kind, spec, source)."""
    return {
        "id": tok.tokenizer_id,
        "kind": tok.kind,
        "compression": tok.model.config.compression,
        "token_channels": tok.model.config.token_channels,
        "stage": tok.stage,
        "encode_mode": tok.encode_mode,
        "source": str(tok.source),
        "spec_hash": tok.spec.hash(),
    }


def load_embedded_tokenizer(
    inside: Path, identity: dict[str, Any], preprocessing: dict[str, Any], device: str | torch.device, what: str
) -> LoadedTokenizer:
    """The tokenizer a model was trained with: the copy in ``inside`` or, failing that, its recorded source.

    Args:
        inside: the ``tokenizer/`` folder of a bundle (may be absent for a training run folder).
        identity: :func:`tokenizer_identity` stored at training time.
        preprocessing: the preprocessing spec dict stored at training time.
        device: where to put the model.
        what: the model that needs it, for messages (e.g. ``"report model"``).

    Raises:
        InputError: not found, another tokenizer (weights digest differs) or another preprocessing spec.
    """
    where = inside if inside.is_dir() else Path(identity["source"])
    if not where.exists():
        raise InputError(
            f"the tokenizer this {what} was trained with is not in {inside} nor at its recorded "
            f"source {where}; re-export the bundle",
            path=inside.parent,
        )
    tok = load_tokenizer(where, device=device)
    if tok.tokenizer_id != identity["id"]:
        raise InputError(
            f"the tokenizer at {where} (id {tok.tokenizer_id}) is not the one this {what} was "
            f"trained with (id {identity['id']}); use the bundle's own tokenizer",
            path=inside.parent,
        )
    stored = PreprocessSpec.from_dict(preprocessing)
    if tok.spec != stored:
        raise InputError(
            f"the tokenizer's preprocessing (spec {tok.spec.hash()}) differs from the one used in "
            f"training (spec {stored.hash()}); the bundle is inconsistent",
            path=inside.parent,
        )
    return tok


def copy_tokenizer_bundle(source: Path, dest: Path, expected_id: str) -> None:
    """Put the tokenizer a model was trained with into ``dest`` (a bundle copy keeps its id).

    ``dest`` is published whole (:func:`ctvl.atomic.publish_dir`) and only once its id is checked.

    Raises:
        InputError: the tokenizer at ``source`` is no longer the one with ``expected_id``.
    """
    import shutil

    with publish_dir(dest) as tmp:
        if (source / "weights.safetensors").is_file() and (source / "config.json").is_file():
            for f in source.iterdir():
                if f.is_file() and not is_temporary(f.name):
                    shutil.copy2(f, tmp / f.name)
        else:  # a run folder or checkpoint: full precision, so the digest is unchanged
            _write_export(source, tmp, None, False, None)
        got = load_tokenizer(tmp).tokenizer_id
        if got != expected_id:
            raise InputError(
                f"the tokenizer at {source} is no longer the one the model was trained with "
                f"(id {got}, expected {expected_id})",
                path=source,
            )
