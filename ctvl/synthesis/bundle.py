"""Generator bundles: flow-UNet weights, the text encoder's identity, and the exact tokenizer and spec.

A bundle folder holds ``weights.safetensors`` and ``config.json`` (``{"format", "task_name": "synthesis",
"task": <SynthesisTask export>, "training": {...}}``), a copy of the tokenizer bundle whose latents it
generates in ``tokenizer/`` and ``MODEL_CARD.md``. The latent statistics are buffers inside the weights.
Loading checks that the tokenizer is the one the generator was trained on (weights digest) with the
preprocessing recorded at training: a generated latent is always decoded by the decoder it was made for,
and the output volume has that spec's spacing. :func:`load_generator` reads a bundle, a run folder or a
checkpoint alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ctvl.atomic import publish_dir
from ctvl.data.transforms import PreprocessSpec
from ctvl.errors import CtvlError, InputError
from ctvl.synthesis.model import LatentFlowGenerator, SynthesisConfig
from ctvl.synthesis.text import ENCODER_ID, TextEncoder
from ctvl.tokenizers.causal3d.bundle import (
    LoadedTokenizer,
    copy_tokenizer_bundle,
    load_embedded_tokenizer,
    state_digest,
)
from ctvl.train.checkpoint import load_checkpoint, load_weights, open_bundle, write_bundle_files

DEFAULT_BUNDLE = Path(__file__).resolve().parents[1] / "bundles" / "synthesis-phantom-cpu"
BUNDLE_FORMAT = "ctvl-synthesis-bundle-1"
TASK_NAME = "synthesis"
TOKENIZER_DIR = "tokenizer"
PIPELINE = "pipelines/train_synthesis.py"


@dataclass
class LoadedGenerator:
    """A text-to-CT generator ready for sampling.

    Attributes:
        model: the flow UNet, eval mode.
        tokenizer: the causal tokenizer whose decoder turns its latents into volumes.
        text: the frozen text encoder.
        spec: the preprocessing spec of the latents (output spacing, size, window).
        export: the stored task export (model config, tokenizer identity, training data).
        training: the bundle's ``training`` facts ({} for a run folder).
        source: the folder it was loaded from.
        generator_id: 16-hex digest of the weights and export (written into every output's sidecar).
    """

    model: LatentFlowGenerator
    tokenizer: LoadedTokenizer
    text: TextEncoder
    spec: PreprocessSpec
    export: dict[str, Any]
    training: dict[str, Any]
    source: Path
    generator_id: str

    @property
    def config(self) -> SynthesisConfig:
        return self.model.config


def _export_of(config: dict[str, Any], where: Path) -> dict[str, Any]:
    export = config.get("task")
    if config.get("task_name") != TASK_NAME or not isinstance(export, dict):
        raise InputError(
            "not a ctvl text-to-CT generator (config.json has no synthesis task); pass a synthesis bundle or run",
            path=where,
        )
    for key in ("model", "tokenizer", "preprocessing", "text_encoder"):
        if key not in export:
            raise InputError(f"synthesis config.json lacks '{key}'; re-export the bundle from its run", path=where)
    if export["text_encoder"].get("id") != ENCODER_ID:
        raise InputError(
            f"the generator was trained with text encoder {export['text_encoder'].get('id')!r}, "
            f"this ctvl has {ENCODER_ID!r}",
            path=where,
        )
    return export


def load_generator(path: str | Path | None = None, device: str | torch.device = "cpu") -> LoadedGenerator:
    """Load a generator bundle, run folder or checkpoint (default: the phantom bundle shipped with ctvl).

    Raises:
        InputError: missing folder, not a generator, weights that do not fit, or a tokenizer/preprocessing
            other than the one it was trained with.
    """

    folder, state, config = open_bundle(path, DEFAULT_BUNDLE, "text-to-CT generator", PIPELINE)
    export = _export_of(config, folder)
    try:
        model = LatentFlowGenerator(config=SynthesisConfig.from_dict(export["model"]))
    except CtvlError as exc:
        raise InputError(f"invalid synthesis config.json: {exc}", path=folder) from None
    load_weights(model, state, folder)
    model.to(device).eval()
    tok = load_embedded_tokenizer(
        folder / TOKENIZER_DIR, export["tokenizer"], export["preprocessing"], device, "generator"
    )
    return LoadedGenerator(
        model=model,
        tokenizer=tok,
        text=TextEncoder(max_tokens=int(export["text_encoder"]["max_tokens"])),
        spec=PreprocessSpec.from_dict(export["preprocessing"]),
        export=export,
        training=dict(config.get("training") or {}),
        source=folder,
        generator_id=state_digest(state, export),
    )


def export_synthesis_bundle(
    source: str | Path,
    out_dir: str | Path,
    *,
    card: str | None = None,
    training: dict[str, Any] | None = None,
    half: bool = False,
    tokenizer_source: str | Path | None = None,
) -> Path:
    """Write a self-contained generator bundle from a training run or checkpoint.

    Args:
        source: run folder (newest checkpoint; EMA weights when kept) or checkpoint folder.
        out_dir: bundle folder (created; an existing one is replaced whole, atomically).
        card: MODEL_CARD.md text.
        training: facts stored under ``config.json["training"]`` (command, times, metrics).
        half: store floating-point weights as float16 (upcast on load).
        tokenizer_source: copy the tokenizer from here instead of the recorded source (same id required).

    Returns:
        The bundle folder.
    """

    source = Path(source)
    state, config = load_checkpoint(source)
    export = _export_of(config, source)
    if half:
        state = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
    where = Path(tokenizer_source) if tokenizer_source is not None else Path(export["tokenizer"]["source"])
    info = {
        "source_run": config.get("run", {}).get("run_name"),
        "step": config.get("step"),
        "weights_dtype": "float16" if half else "float32",
        **(training or {}),
    }
    with publish_dir(out_dir) as tmp:  # the bundle appears whole (weights, config, tokenizer, card) or not at all
        copy_tokenizer_bundle(where, tmp / TOKENIZER_DIR, export["tokenizer"]["id"])
        write_bundle_files(
            state, {"format": BUNDLE_FORMAT, "task_name": TASK_NAME, "task": export, "training": info}, tmp
        )
        if card is not None:
            (tmp / "MODEL_CARD.md").write_text(card, encoding="utf-8")
    return Path(out_dir)
