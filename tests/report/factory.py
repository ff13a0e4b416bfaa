"""Small, fast fixtures shared by the report, eval-run and report-command tests.

Everything is built in seconds on one core: a randomly initialised tiny tokenizer bundle (3D or slice-wise)
with a small preprocessing spec (32 x 32 x 17 model grid → 3 x 4 x 4 latents), a tiny phantom dataset in
CT-RATE layout, and a tiny report training config. Nothing here is trained to be good; tests check
plumbing, shapes, determinism and contracts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ctvl.data.transforms import PreprocessSpec
from ctvl.train import TrainConfig

TINY_SPEC = PreprocessSpec(spacing=(12.0, 12.0, 22.5), size=(32, 32), depth=17, antialias=True)


def tiny_tokenizer_bundle(folder: Path, kind: str = "causal3d", seed: int = 0) -> Path:
    """A random tiny tokenizer bundle (8x8x8, 4 filters, 6-bit LFQ) with :data:`TINY_SPEC`."""
    from ctvl.tokenizers.causal3d import Causal3DConfig, slicewise_config
    from ctvl.tokenizers.causal3d.bundle import BUNDLE_FORMAT, build_tokenizer, tokenizer_export
    from ctvl.train import save_bundle

    config = Causal3DConfig.cpu(filters=4, token_channels=6, max_groups=4)
    if kind == "slicewise":
        config = slicewise_config(config, depth=TINY_SPEC.depth)
    torch.manual_seed(seed)
    model = build_tokenizer(kind, config)
    export = tokenizer_export(kind, config, TINY_SPEC, stage=2)
    return save_bundle(model, {"format": BUNDLE_FORMAT, "task_name": "tokenizer", "task": export}, folder)


def tiny_dataset(root: Path, train: int = 6, valid: int = 3) -> Path:
    """A phantom dataset (32 x 32 x 17 voxels) with ``train`` and ``valid`` scans."""
    from ctvl.data.phantom import write_dataset

    write_dataset(root, train, seed=0, split="train", shape=(32, 32, 17), workers=1)
    if valid:
        write_dataset(root, valid, seed=0, split="valid", shape=(32, 32, 17), workers=1)
    return root


def tiny_model_section(**overrides: Any) -> dict[str, Any]:
    """A report ``model:`` section that builds in milliseconds."""
    section: dict[str, Any] = {
        "lm": {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "max_position_embeddings": 512},
        "vocab_size": 700,
        "reduction": {"kind": "divprune", "keep": 16},
        "conv_layers": 1,
        "conv_width": 8,
        "summary_token": True,
        "aux_label_weight": 0.5,
        "max_new_tokens": 24,
    }
    section.update(overrides)
    return section


def tiny_config(
    run_dir: Path, data_root: Path, tokenizer: Path | None, cache: Path | None, steps: int = 2, **model: Any
) -> TrainConfig:
    """A report training config for the tiny dataset (``tokenizer`` None → text-only)."""
    section = tiny_model_section(**model)
    if tokenizer is None:
        section["visual"] = "none"
    data = {
        "root": str(data_root),
        "tokenizer": str(tokenizer) if tokenizer else None,
        "cache_dir": str(cache) if cache else None,
    }
    return TrainConfig(
        run_name=run_dir.name,
        output_dir=str(run_dir),
        steps=steps,
        batch_size=2,
        lr=1e-3,
        checkpoint_every=0,
        log_every=1,
        device="cpu",
        model=section,
        data=data,
    )


_SHARED: dict[str, Path] = {}


def shared() -> dict[str, Path]:
    """Artifacts built once per test process and reused by every test module (read-only for tests).

    Keys: ``root`` (temp folder), ``data`` (tiny dataset: 6 train + 3 valid), ``tokenizer`` and
    ``slicewise`` (tiny random tokenizer bundles), ``bundle`` (a 3D report bundle trained for 2 steps),
    ``textonly`` (a text-only report bundle trained for 2 steps).
    """
    if _SHARED:
        return _SHARED
    import atexit
    import shutil
    import tempfile

    from ctvl.report.bundle import export_report_bundle
    from ctvl.report.task import ReportTask
    from ctvl.train import train

    root = Path(tempfile.mkdtemp(prefix="ctvl-report-tests-"))
    atexit.register(shutil.rmtree, root, True)
    out = {"root": root, "data": tiny_dataset(root / "data")}
    out["tokenizer"] = tiny_tokenizer_bundle(root / "tokenizer")
    out["slicewise"] = tiny_tokenizer_bundle(root / "slicewise", kind="slicewise")
    for name, tok in (("bundle", out["tokenizer"]), ("textonly", None)):
        result = train(ReportTask(), tiny_config(root / f"run-{name}", out["data"], tok, root / "cache"))
        out[name] = export_report_bundle(result.run_dir, root / name)
    _SHARED.update(out)
    return _SHARED
