"""Train, evaluate and ship the text-to-CT generator on phantoms (the default ``ctvl synthesize`` bundle).

    python pipelines/train_synthesis.py                  # the real run (~45 min of training on 2 cores)
    python pipelines/train_synthesis.py --quick --out runs/synthesis-smoke   # a minutes-long smoke run

Steps (each skipped when already done, so re-running continues where it stopped):

1. data: the report phantoms (seed 0: ``--n-train`` train + ``--n-valid`` valid) in ``runs/data/phantom-report``
   and a second held-out set from seed 1 (``--n-valid`` valid) in ``runs/data/phantom-synth-b``;
2. ``ctvl train synthesis --config configs/phantom-cpu-synthesis.yaml`` in its own process (resumed if a
   checkpoint exists);
3. the run exported as a bundle (with the shipped tokenizer copied in);
4. ``ctvl eval synthesis`` on the impressions of the seed-0 held-out scans: distances against the seed-1
   held-out set (never used for anything else), label consistency, baselines, memorization against the
   training set, PNG grid;
5. ``ctvl bench synthesis`` of the bundle;
6. the model card, and the bundle installed in ``ctvl/bundles/synthesis-phantom-cpu/`` (unless ``--quick``
   or ``--no-install``).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "configs" / "phantom-cpu-synthesis.yaml"
BUNDLE_DIR = REPO / "ctvl" / "bundles" / "synthesis-phantom-cpu"
TOKENIZER = REPO / "ctvl" / "bundles" / "tokenizer-phantom-cpu"
sys.path.insert(0, str(REPO / "pipelines"))


def rel(path: Path) -> str:
    """``path`` relative to the repository when inside it (the form the configs and a resumed run use)."""
    try:
        return str(Path(path).resolve().relative_to(REPO))
    except ValueError:
        return str(path)


def ensure_split(root: Path, n: int, seed: int, split: str) -> None:
    """Write a phantom split unless a complete one of that size and seed exists."""
    from ctvl.data.phantom import write_dataset

    manifest = root / f"phantom_{split}.json"
    if manifest.exists():
        info = json.loads(manifest.read_text())
        if info.get("n") == n and info.get("seed") == seed:
            return
    print(f"writing {n} phantom {split} scans (seed {seed}) to {root}", flush=True)
    write_dataset(root, n, seed, split=split, workers=0, progress=True)


def train(out: Path, overrides: list[str], threads: int) -> dict[str, Any]:
    """``ctvl train synthesis`` in a subprocess; resumes an interrupted run."""
    from ctvl.train import latest_checkpoint

    run_dir = out / "run"
    resume = latest_checkpoint(run_dir) is not None
    cmd = [
        sys.executable,
        "-m",
        "ctvl",
        "train",
        "synthesis",
        "--config",
        str(CONFIG),
        *(["--resume"] if resume else []),
        f"output_dir={rel(run_dir)}",
        *overrides,
    ]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONUNBUFFERED": "1"}
    began = time.perf_counter()
    cpu0 = os.times()
    print(" ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, env=env, cwd=REPO)
    cpu1 = os.times()
    return {
        "command": "ctvl train synthesis --config configs/phantom-cpu-synthesis.yaml " + " ".join(overrides),
        "seconds": round(time.perf_counter() - began, 1),
        "resumed": resume,
        "cpu_seconds": round(
            (cpu1.children_user + cpu1.children_system) - (cpu0.children_user + cpu0.children_system), 1
        ),
        "run_dir": str(run_dir),
    }


def write_prompts(data: Path, path: Path, limit: int | None) -> int:
    """The impressions of the held-out scans as a prompts CSV (id = VolumeName); returns the count."""
    from ctvl.data.datasets import scan_ctrate

    records = scan_ctrate(data, split="valid", require=("reports",)).records[:limit]
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["id", "prompt"])
        w.writerows([r.volume_name, r.impression] for r in records)
    return len(records)


def previous_sentence(m: dict[str, Any]) -> str:
    """One card sentence comparing with the previous bundle (cross-attention only) on the same evaluation."""
    few, b = m["label_consistency_1to3"], m["baselines"]
    return (
        f"The previous bundle (cross-attention only, same data, steps and evaluation) barely followed its prompts: "
        f"label consistency {few['macro']:.3f} on 1-3-finding prompts, shuffled prompts "
        f"{b['shuffled_prompts']['label_consistency']['macro']:.3f}, 2.5D FID {m['fid_2p5d']['mean']:.3f} "
        f"(unconditional {b['unconditional']['fid_2p5d']['mean']:.3f})."
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "synthesis-phantom-cpu")
    parser.add_argument("--data", type=Path, default=REPO / "runs" / "data" / "phantom-report")
    parser.add_argument("--data-b", type=Path, default=REPO / "runs" / "data" / "phantom-synth-b")
    parser.add_argument("--n-train", type=int, default=2000)
    parser.add_argument("--n-valid", type=int, default=250)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--features", type=Path, default=None, help="feature-network bundle (default: shipped)")
    parser.add_argument("--quick", action="store_true", help="tiny data and steps; never installs")
    parser.add_argument("--no-install", action="store_true")
    parser.add_argument(
        "--previous",
        type=Path,
        default=None,
        help="metrics.json of the previous bundle, evaluated with the same command and data: quoted in the card",
    )
    parser.add_argument("overrides", nargs="*", help="extra key=value overrides for the training config")
    args = parser.parse_args(argv)
    import torch
    from synthesis_card import card_text

    from ctvl.atomic import write_json
    from ctvl.bench.synthesis import run_synthesis_bench
    from ctvl.eval.synthesis import evaluate_synthesis
    from ctvl.synthesis import export_synthesis_bundle

    torch.set_num_threads(args.threads)
    began = time.perf_counter()
    overrides = list(args.overrides)
    if args.quick:
        args.n_train, args.n_valid = 24, 12
        args.data, args.data_b = args.out / "data", args.out / "data-b"
        overrides += [
            "steps=4",
            "batch_size=4",
            "checkpoint_every=2",
            "model.channels=[16,32,32]",
            "model.norm_num_groups=8",
            "model.num_head_channels=16",
        ]
    overrides += [f"data.root={rel(args.data)}", f"data.cache_dir={rel(args.out / 'cache')}"]
    ensure_split(args.data, args.n_train, 0, "train")
    ensure_split(args.data, args.n_valid, 0, "valid")
    ensure_split(args.data_b, args.n_valid, 1, "valid")
    training = train(args.out, overrides, args.threads)
    bundle = export_synthesis_bundle(
        args.out / "run",
        args.out / "bundle",
        tokenizer_source=TOKENIZER,
        training={"pipeline": "pipelines/train_synthesis.py", **training},
    )
    prompts = args.out / "prompts.csv"
    n_prompts = write_prompts(args.data, prompts, None)
    metrics = evaluate_synthesis(
        prompts,
        args.out / "eval",
        real=args.data,
        reference=args.data_b,
        train=args.data,
        generator=bundle,
        features=args.features,
        cache_dir=args.out / "cache" / "voxels",
    )
    bench = run_synthesis_bench(model=bundle, steps=25, repeats=3, threads=args.threads)
    write_json(args.out / "bench.json", bench)
    facts = {
        "training": training,
        "data": rel(args.data),
        "features": rel(Path(metrics["feature_nets"])),
        "n_train": args.n_train,
        "n_valid": args.n_valid,
        "n_prompts": n_prompts,
        "machine": f"{platform.machine()}, {platform.system()}, {args.threads} torch threads",
        "pipeline_seconds": round(time.perf_counter() - began, 1),
        "overrides": overrides,
        "pooled_text": bool(json.loads((bundle / "config.json").read_text())["task"]["model"].get("pooled_text")),
    }
    if args.previous is not None:
        facts["previous"] = previous_sentence(json.loads(args.previous.read_text()))
    export_synthesis_bundle(
        args.out / "run",
        args.out / "bundle",
        tokenizer_source=TOKENIZER,
        training={
            "pipeline": "pipelines/train_synthesis.py",
            **training,
            "metrics": {k: metrics[k] for k in ("fid_2p5d", "fd_3d", "targets")},
            "bench": {k: bench[k] for k in ("volume_seconds", "pass")},
        },
        card=card_text(metrics, bench, facts),
    )
    shutil.copy2(args.out / "eval" / "grid.png", args.out / "bundle" / "grid.png")
    if not (args.quick or args.no_install):
        from ctvl.atomic import publish_dir

        with publish_dir(BUNDLE_DIR) as tmp:  # the shipped bundle is replaced whole or not at all
            shutil.copytree(args.out / "bundle", tmp, dirs_exist_ok=True)
        print(f"installed {BUNDLE_DIR}")
    print(
        json.dumps(
            {
                "fid_2p5d": metrics["fid_2p5d"],
                "fd_3d": metrics["fd_3d"],
                "targets": metrics["targets"],
                "bench_median_s": bench["volume_seconds"]["median"],
            },
            indent=2,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
