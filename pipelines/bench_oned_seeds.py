"""Seed study of the 1D tokenizer curves: is "more tokens, less error" a property of the training or luck?

    python pipelines/bench_oned_seeds.py                      # ~9 min on 2 cores (12 trainings of ~40 s)
    python pipelines/bench_oned_seeds.py --seeds 0 --steps 50 --train-cases 4   # smoke run

Trains the benchmark's TiTok1D (``ctvl.bench.oned.oned_config``: 16 patches of 8 x 8, 8 FSQ tokens
of 10 bits, causal latents, 2 + 2 layers of width 64) on the benchmark's 1D phantom set once per seed and
variant, in the same run:

- ``tail-uniform``: One-D-Piece tail drop, one uniform cut k ~ U{1..8} per batch (the paper's rule);
- ``tail-full50``: the same with half of the batches at full length (``full_share`` 0.5);
- ``nested-uniform``: FlexTok nested dropout, k ~ U{1..8} per sample (the paper's rule);
- ``nested-full50``: the same with half of the samples at full length.

For every run it records the held-out MSE at k = 1..8 kept tokens and whether the curve falls strictly at
every k and at the benchmark's k = 1, 2, 4, 8. Prints and writes ``seeds.json`` in ``--out``.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from ctvl.bench.bench_data import BenchConfig, BenchData

REPO = Path(__file__).resolve().parents[1]
VARIANTS = {
    "tail-uniform": ("tail", 0.0),
    "tail-full50": ("tail", 0.5),
    "nested-uniform": ("nested", 0.0),
    "nested-full50": ("nested", 0.5),
}


def strictly_falling(values: list[float]) -> bool:
    """True when every value is below the one before it."""
    return all(b < a for a, b in zip(values, values[1:], strict=False))


def run(variant: str, seed: int, cfg: BenchConfig, data: BenchData) -> dict:
    """Train one variant with one seed; its held-out curve at k = 1..K."""
    from ctvl.bench.oned import error_vs_kept, oned_config, train_titok
    from ctvl.tokenizers.oned import TiTok1D

    drop, share = VARIANTS[variant]
    torch.manual_seed(seed)
    config = replace(oned_config(cfg, drop, data.test_2d.shape[2:]), full_share=share)
    model = TiTok1D(config=config)
    t0 = time.perf_counter()
    train_titok(model, data.train_2d, cfg.oned_steps, cfg.oned_batch, cfg.lr, torch.Generator().manual_seed(seed))
    train_s = time.perf_counter() - t0
    ks = list(range(1, cfg.oned_tokens + 1))
    curve = [row["mse"] for row in error_vs_kept(model, data.test_2d, ks)]
    pow2 = [curve[k - 1] for k in ks if k & (k - 1) == 0]
    return {
        "variant": variant,
        "seed": seed,
        "mse": curve,
        "falls_at_every_k": strictly_falling(curve),
        "falls_at_powers_of_two": strictly_falling(pow2),
        "train_s": round(train_s, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--steps", type=int, default=1500, help="training steps per run")
    parser.add_argument("--train-cases", type=int, default=256, help="phantom patients for training (8 held out)")
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "bench" / "oned-seeds")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    from ctvl.bench.bench_data import BenchConfig
    from ctvl.bench.oned import oned_data

    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        parser.error(f"unknown variants {unknown}; choose from {list(VARIANTS)}")
    try:
        seeds = [int(s) for s in args.seeds.split(",")]
    except ValueError:
        parser.error(f"--seeds must be comma-separated integers, got {args.seeds!r}")
    cfg = BenchConfig(oned_steps=args.steps, oned_train_cases=args.train_cases)
    data = oned_data(cfg)  # the phantom patients do not depend on the training seed
    runs = []
    for variant in variants:
        for seed in seeds:
            runs.append(run(variant, seed, cfg, data))
            print(json.dumps(runs[-1]), flush=True)
    summary = {
        v: {
            "falls_at_every_k": sum(r["falls_at_every_k"] for r in runs if r["variant"] == v),
            "falls_at_powers_of_two": sum(r["falls_at_powers_of_two"] for r in runs if r["variant"] == v),
            "runs": sum(r["variant"] == v for r in runs),
        }
        for v in variants
    }
    result = {
        "config": {
            "steps": args.steps,
            "train_cases": args.train_cases,
            "test_cases": cfg.oned_test_cases,
            "seeds": seeds,
        },
        "summary": summary,
        "runs": runs,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "seeds.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
