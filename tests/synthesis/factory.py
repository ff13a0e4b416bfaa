"""A tiny random text-to-CT generator bundle for tests (built in seconds on one core).

The generator is trained for 2 steps on a 6-scan phantom set over the tiny random tokenizer of
``tests/report/factory.py`` (32 x 32 x 17 model grid, 12 x 12 x 22.5 mm): it makes noise-like volumes, but
through the real bundle format, loader, sampler and decoder. Nothing here is meant to be good; tests check
plumbing, shapes, determinism and contracts.
"""

from __future__ import annotations

from pathlib import Path

TINY_MODEL = {
    "channels": [16, 32],
    "attention_levels": [False, True],
    "norm_num_groups": 8,
    "num_head_channels": 16,
    "cross_attention_dim": 32,
}


def tiny_generator_bundle(folder: Path, steps: int = 2) -> Path:
    """Train a tiny generator for ``steps`` steps under ``folder`` and export it to ``folder / "bundle"``.

    Args:
        folder: an empty working folder (dataset, tokenizer, run, cache and the bundle go inside).
        steps: optimiser steps (2 is enough for every plumbing test).
    Returns:
        The bundle folder (loadable with :func:`ctvl.synthesis.load_generator`).
    """
    from ctvl.synthesis import export_synthesis_bundle
    from ctvl.synthesis.task import SynthesisTask
    from ctvl.train import TrainConfig, train
    from tests.report.factory import tiny_dataset, tiny_tokenizer_bundle

    folder = Path(folder)
    data = tiny_dataset(folder / "data", train=6, valid=0)
    tokenizer = tiny_tokenizer_bundle(folder / "tokenizer")
    config = TrainConfig(
        run_name="tiny-synthesis",
        output_dir=str(folder / "run"),
        steps=steps,
        batch_size=4,
        lr=1e-3,
        checkpoint_every=0,
        log_every=1,
        device="cpu",
        model=dict(TINY_MODEL),
        data={"root": str(data), "tokenizer": str(tokenizer), "cache_dir": str(folder / "cache")},
    )
    result = train(SynthesisTask(), config)
    return export_synthesis_bundle(result.run_dir, folder / "bundle")
