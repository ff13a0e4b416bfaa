"""Train the shipped CPU tokenizer end to end: phantom data, curriculum stages 1 -> 2 -> 3, 2D baseline,
evaluation, model card, PNG montage, and the bundle in ``ctvl/bundles/tokenizer-phantom-cpu/``.

    python pipelines/train_tokenizer.py                 # the real run (2 threads)
    python pipelines/train_tokenizer.py --quick --out runs/tokenizer-smoke   # minutes-long smoke run

Each stage is ``ctvl train tokenizer --config configs/phantom-cpu-tokenizer-s{N}.yaml --stage N`` with
``output_dir``/``init_from`` pointing into ``--out``; a finished stage is skipped and an interrupted one
resumed, so re-running the command continues where it stopped. The 2D slice-wise baseline
(``configs/phantom-cpu-slicewise.yaml``) gets the same token budget, the same stream of slices per step and
as many optimiser steps as the three 3D stages together (set here from the stage configs).
"""

from __future__ import annotations

import os

# On a machine shared with other jobs, OpenMP threads that spin while waiting steal each other's cores
# (measured here: 2 spinning threads 1.5-16 s per stage-1 step, 2 passive threads 0.9 s, 1 thread 1.1 s).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import json
import platform
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
import eval_tokenizer  # noqa: E402  (the sibling pipeline script)

CONFIGS = REPO / "configs"
STAGE_CONFIGS = {n: CONFIGS / f"phantom-cpu-tokenizer-s{n}.yaml" for n in (1, 2, 3)}
BASELINE_CONFIG = CONFIGS / "phantom-cpu-slicewise.yaml"
BUNDLE_DIR = REPO / "ctvl" / "bundles" / "tokenizer-phantom-cpu"
N_TRAIN, N_VALID, DATA_SEED = 200, 24, 0
# --grid: the shipped bundle is trained on the `cpu` grid (64 x 64 x 33, 11.25 mm slices); `cpu-iso` (64 x 64 x 65,
# 5.625 mm) is the experiment that asks whether thinner slices let 3D tokens beat 2D ones. Phantoms are rendered
# natively on each grid: interpolating a coarser render would fake the inter-slice redundancy 3D tokens exploit.
GRIDS: dict[str, dict[str, Any]] = {
    "cpu": {"shape": (64, 64, 33), "spacing": None, "overrides": {}},
    "cpu-iso": {
        "shape": (64, 64, 65),
        "spacing": (6.0, 6.0, 5.625),
        "overrides": {
            "s1": ["data.preprocessing=cpu-iso"],
            "s2": ["data.preprocessing=cpu-iso", "data.crop=33"],  # 4 windows, as whole volumes on the cpu grid
            "s3": ["data.preprocessing=cpu-iso", "data.crop=33"],
            "slicewise": ["data.preprocessing=cpu-iso", "model.match_depth=65"],
        },
    },
}
# --model: the shipped bundle compresses 8 x 8 x 8 (Haar level + two strided levels: 5 x 8 x 8 tokens on the cpu
# grid); `f4` drops one strided level (4 x 4 x 4: 9 x 16 x 16 tokens, 7.2x the latent bits), the experiment that
# asks whether finer tokens keep the findings the coarse ones blur (synthesis and report issues).
MODELS: dict[str, list[str]] = {
    "f8": [],
    "f4": ["model.channel_mult=[1,2]", "model.temporal_downsample=[true]"],
}


def ensure_phantoms(root: Path, n_train: int, n_valid: int, grid: str = "cpu") -> float:
    """Write the phantom train/valid splits unless a complete one of that size is there, and fill the
    preprocessing cache (so training times are training only); returns seconds."""
    from ctvl.data.datasets import CTRateDataset, scan_ctrate
    from ctvl.data.phantom import write_dataset
    from ctvl.data.transforms import PreprocessSpec

    t0 = time.perf_counter()
    for split, n in (("train", n_train), ("valid", n_valid)):
        manifest = root / f"phantom_{split}.json"
        if manifest.exists() and json.loads(manifest.read_text()).get("n") == n:
            continue
        print(f"writing {n} phantom {split} volumes to {root}", flush=True)
        write_dataset(
            root, n, DATA_SEED, split=split, shape=GRIDS[grid]["shape"], spacing=GRIDS[grid]["spacing"], progress=True
        )
    spec = PreprocessSpec.cpu_iso() if grid == "cpu-iso" else PreprocessSpec.cpu()
    train = CTRateDataset(source=scan_ctrate(root, split="train"), spec=spec, cache_dir=root / ".cache" / "preprocess")
    for i in range(len(train)):  # the cache the training configs read (data.cache_dir default)
        train.image(i)
    return time.perf_counter() - t0


def train_run(task_stage: int, config: Path, overrides: list[str]) -> dict[str, Any]:
    """Run (or finish, or skip) one training run; returns its facts (wall and CPU seconds in ``timing.json``)."""
    import resource

    from ctvl.tokenizers.causal3d.task import TokenizerTask
    from ctvl.train import latest_checkpoint, load_config, read_metrics, train

    cfg = load_config(config, overrides)
    latest = latest_checkpoint(cfg.run_dir)
    done = latest is not None and int(latest.name.split("-")[1]) >= cfg.steps
    shown = " ".join(o.replace(f"{REPO}/", "") for o in overrides)
    command = f"ctvl train tokenizer --config {config.relative_to(REPO)} --stage {task_stage} {shown}".strip()
    timing_file = cfg.run_dir / "timing.json"
    if done:
        print(f"{cfg.run_dir}: already at step {cfg.steps}, skipped", flush=True)
        timing = json.loads(timing_file.read_text()) if timing_file.exists() else {}
        if "wall_seconds" not in timing:  # the elapsed training time lives in the resume state
            timing["wall_seconds"] = float(torch.load(latest / "state.pt", weights_only=True).get("seconds", 0.0))
    else:
        print(f"$ {command}", flush=True)
        usage = resource.getrusage(resource.RUSAGE_SELF)
        result = train(TokenizerTask(stage=task_stage), cfg, resume=latest is not None)
        after = resource.getrusage(resource.RUSAGE_SELF)
        cpu = (after.ru_utime - usage.ru_utime) + (after.ru_stime - usage.ru_stime)
        timing = {
            "wall_seconds": result.seconds,
            "cpu_seconds": cpu,
            "threads": torch.get_num_threads(),
            "resumed": latest is not None,
        }
        timing_file.write_text(json.dumps(timing, indent=2) + "\n", encoding="utf-8")
    records = read_metrics(cfg.run_dir / "metrics.jsonl")
    last = records[-1] if records else {}
    return {
        "command": command,
        "skipped": done,
        "run_dir": str(cfg.run_dir.relative_to(REPO) if cfg.run_dir.is_relative_to(REPO) else cfg.run_dir),
        "steps": cfg.steps,
        "batch_size": cfg.batch_size,
        "seconds": round(float(timing["wall_seconds"]), 1),
        "cpu_seconds": timing.get("cpu_seconds"),
        "threads": timing.get("threads"),
        "final": last.get("metrics", {}),
        "final_loss": last.get("loss"),
    }


def model_card(facts: dict[str, Any], results: dict[str, Any], table: str) -> str:
    """MODEL_CARD.md of the shipped bundle."""
    from ctvl.tokenizers.causal3d.bundle import load_tokenizer

    runs = facts["runs"]
    facts.setdefault("grid", "cpu")
    facts.setdefault("model", "f8")
    flags = "".join(f" --{k} {facts[k]}" for k, default in (("grid", "cpu"), ("model", "f8")) if facts[k] != default)
    tok = load_tokenizer(results["models"]["3D after stage 3"]["source"])
    spec = tok.spec
    arch = tok.model.config
    d3, t3, h3, w3 = tok.model.latent_shape(spec.depth or 33, *spec.size)
    rows = results["models"]
    s3, s1, base = rows["3D after stage 3"], rows["3D after stage 1"], rows["2D slice-wise baseline"]
    gain = s3["phantom"]["psnr"] - base["phantom"]["psnr"]
    total_3d = sum(runs[k]["seconds"] for k in ("s1", "s2", "s3"))
    lines = [
        "# tokenizer-phantom-cpu — causal 3D CT tokenizer (CPU-sized, trained on the ctvl phantom)",
        "",
        "The default tokenizer of ctvl (`ctvl encode`, `ctvl reconstruct`). A causal 3D convolutional tokenizer",
        "after BTB3D: one 3D Haar level (first slice repeated), causal Conv3d encoder with "
        f"{arch.space_factor} x {arch.space_factor} x {arch.time_factor} compression,",
        f"{arch.token_channels}-bit LFQ tokens ({2**arch.token_channels:,} codes), causal decoder with adaptive "
        f"GroupNorm. {arch.filters} filters, channel multipliers",
        f"{'-'.join(str(m) for m in arch.channel_mult)}, {arch.num_res_blocks} ResBlock(s) per level; weights "
        "stored in float16 (upcast on load).",
        "",
        "**Input**: any CT (NIfTI / DICOM), preprocessed with the spec stored in `config.json` (the "
        f"`{facts['grid']}` preset: LPS, {' x '.join(f'{v:g}' for v in spec.spacing)} mm, HU [-1000, 1000] -> [-1, 1], "
        f"{spec.size[0]} x {spec.size[1]} x {spec.depth}). **Tokens**: {t3} x {h3} x {w3} per volume "
        f"({d3 * t3 * h3 * w3:,} latent values). **Not** a clinical model: trained on procedural phantoms only.",
        "",
        "## Training",
        "",
        f"Command: `python pipelines/train_tokenizer.py{flags}` (data: {facts['data']['n_train']} phantom train volumes,"
        f" seed {DATA_SEED}; held-out: {facts['data']['n_valid']} valid volumes).",
        f"Hardware: {facts['hardware']}, {runs['s1'].get('threads') or facts['threads']} torch threads "
        "(2 cores shared with other jobs: wall times include waiting for the CPU).",
        "",
        "| stage | what | command | steps x batch | wall time | CPU time |",
        "|---|---|---|---|---|---|",
    ]
    what = {
        "s1": "local reconstruction: 9-slice excerpts + 2 single slices per sample",
        "s2": "overlapping-window tiling (5 Haar frames, stride 4), "
        + ("whole 33-slice volumes" if spec.depth == 33 else f"33-slice crops of {spec.depth}"),
        "s3": "long-context decoder refinement (encoder + quantizer frozen), "
        + ("whole volumes" if spec.depth == 33 else "33-slice crops"),
        "slicewise": "2D baseline: same stream as stage 1, steps of all three stages",
    }
    for key in ("s1", "s2", "s3", "slicewise"):
        r = runs[key]
        cpu = f"{r['cpu_seconds'] / 60:.1f} min" if r.get("cpu_seconds") else "n/a"
        lines.append(
            f"| {key} | {what[key]} | `{r['command']}` | {r['steps']} x {r['batch_size']} | "
            f"{r['seconds'] / 60:.1f} min | {cpu} |"
        )
    lines += [
        "",
        f"3D total: {total_3d / 60:.1f} min (target <= 60 min on 2 cores); 2D baseline: "
        f"{runs['slicewise']['seconds'] / 60:.1f} min; whole pipeline: {facts['pipeline_seconds'] / 60:.1f} min.",
        "",
        "## Reconstruction (windowed encode + streaming decode, PSNR / SSIM in the [-1000, 1000] HU window)",
        "",
        table.strip(),
        "",
        f"3D (stage 3, this bundle) vs 2D slice-wise baseline at the same token budget on held-out phantoms: "
        f"**{gain:+.2f} dB** PSNR (target >= +2 dB: {'met' if gain >= 2 else 'NOT met'}); stage 3 vs stage 1: "
        f"{s3['phantom']['psnr'] - s1['phantom']['psnr']:+.2f} dB.",
        "",
        "![reconstructions](recon_montage.png)",
        "",
    ]
    if "phantom_psnr_first_slice" in s3:
        lines += [
            "## Where the bits go (held-out phantoms)",
            "",
            "| | first slice (3D: its own latent frame) | the other slices |",
            "|---|---|---|",
            f"| 3D after stage 3 | {s3['phantom_psnr_first_slice']:.2f} dB | {s3['phantom_psnr_other_slices']:.2f} dB |",
            f"| 2D slice-wise | {base['phantom_psnr_first_slice']:.2f} dB | {base['phantom_psnr_other_slices']:.2f} dB |",
            "",
            budget_note(results),
            "",
        ]
    if facts.get("bench"):
        b = facts["bench"]
        lines += ["## Memory in depth (`ctvl bench tokenizer`)", "", "```", b, "```", ""]
    if facts.get("note"):
        lines += ["## Notes", "", facts["note"].strip(), ""]
    lines += [
        "## Limits",
        "",
        f"- Trained on procedural phantoms at 64 x 64 x {spec.depth} that fill the field of view: real CT is reconstructed",
        "  coarsely (see the real CT rows), and slabs padded with many air slices are reconstructed poorly.",
        "- No perceptual or adversarial loss (none is available offline): reconstructions are smooth.",
        "",
    ]
    return "\n".join(lines)


def budget_note(results: dict[str, Any]) -> str:
    """How the 3D and 2D tokenizers spend the same latent budget on a whole volume of the spec depth."""
    from ctvl.tokenizers.causal3d.bundle import load_tokenizer

    rows = results["models"]
    m3 = load_tokenizer(rows["3D after stage 3"]["source"]).model
    m2 = load_tokenizer(rows["2D slice-wise baseline"]["source"]).model
    spec = load_tokenizer(rows["3D after stage 3"]["source"]).spec
    depth = spec.depth or 33
    d3, t3, h3, w3 = m3.latent_shape(depth, 64, 64)
    d2, t2, h2, w2 = m2.latent_shape(depth, 64, 64)
    first = d3 * h3 * w3
    per_slice_3d = d3 * h3 * w3 * (t3 - 1) / (depth - 1)
    per_slice_2d = d2 * h2 * w2
    adjacent = results.get("phantom_adjacent_slice_psnr")
    text = (
        f"Budget at {depth} slices: the 3D tokenizer spends {first} of its {d3 * h3 * w3 * t3} latent bits on the "
        f"first slice alone (causal design: latent frame 0 is that slice) and {per_slice_3d:.0f} bits per slice "
        f"on the other {depth - 1}; the 2D one spends {per_slice_2d} bits on every slice ({d2 * h2 * w2 * t2} in all)."
    )
    if adjacent is not None:
        fine = adjacent_slice_psnr(1.5)
        coarse = adjacent_slice_psnr(11.25, slices=33)
        dz = spec.spacing[2]
        f_t = m3.config.time_factor
        text += (
            f" On this {dz:g} mm grid neighbouring slices agree to {adjacent:.1f} dB PSNR (11.25 mm grid: "
            f"{coarse:.1f} dB; the paper's 1.5 mm: {fine:.1f} dB); one 3D latent frame spans {f_t} slices = "
            f"{f_t * dz:g} mm of anatomy (the paper's: 8 slices, 12 mm at 1.5 mm)."
        )
    return text


def adjacent_slice_psnr(z_spacing: float, seeds: tuple[int, ...] = (11, 12, 13), slices: int = 65) -> float:
    """PSNR (HU window) between neighbouring axial slices of phantoms rendered at ``z_spacing`` mm."""
    import numpy as np

    from ctvl.data.phantom import render_case
    from ctvl.psnr import psnr_from_mse

    values = []
    for seed in seeds:
        v = np.clip(render_case(seed, shape=(64, 64, slices), spacing=(6.0, 6.0, z_spacing)).volume.data, -1000, 1000)
        mse = np.mean(((v[:, :, 1:] - v[:, :, :-1]) / 2000.0) ** 2)
        values.append(psnr_from_mse(float(mse), data_range=1.0))
    return float(np.mean(values))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help="default: runs/tokenizer-phantom-cpu[-MODEL]")
    parser.add_argument("--data", type=Path, default=None, help="phantom folder (default: runs/data/phantom[-iso])")
    parser.add_argument("--grid", choices=sorted(GRIDS), default="cpu", help="model grid (see GRIDS)")
    parser.add_argument("--model", choices=sorted(MODELS), default="f8", help="compression (see MODELS)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="smoke run: a few steps, few volumes, no install")
    parser.add_argument(
        "--install",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="copy the bundle into ctvl/bundles/tokenizer-phantom-cpu[-MODEL] (default: unless --quick or --model)",
    )
    parser.add_argument("--bench", type=Path, default=None, help="a `ctvl bench tokenizer` text output for the card")
    parser.add_argument("--note", type=Path, default=None, help="a text file appended to the model card (Notes)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.out is None:
        args.out = REPO / "runs" / ("tokenizer-phantom-cpu" + ("" if args.model == "f8" else f"-{args.model}"))
    began = time.perf_counter()
    n_train, n_valid = (12, 4) if args.quick else (N_TRAIN, N_VALID)
    default_data = REPO / "runs" / "data" / ("phantom" if args.grid == "cpu" else f"phantom-{args.grid.split('-')[1]}")
    data_root = (args.data or default_data) if not args.quick else args.out / "data"
    grid_over = {
        key: [*GRIDS[args.grid]["overrides"].get(key, []), *MODELS[args.model]]
        for key in ("s1", "s2", "s3", "slicewise")
    }
    facts: dict[str, Any] = {
        "threads": args.threads,
        "runs": {},
        "grid": args.grid,
        "model": args.model,
        "hardware": f"{platform.processor() or platform.machine()}, {platform.system()}",
    }
    facts["data"] = {
        "root": str(data_root),
        "n_train": n_train,
        "n_valid": n_valid,
        "seconds": round(ensure_phantoms(data_root, n_train, n_valid, args.grid), 1),
    }
    common = [f"data.root={data_root}"] + (["steps=4", "log_every=2", "checkpoint_every=4"] if args.quick else [])
    total_steps = 0
    from ctvl.train import load_config

    for n in (1, 2, 3):
        over = [f"output_dir={args.out / f's{n}'}", *common, *grid_over.get(f"s{n}", [])]
        if n > 1:
            over.append(f"init_from={args.out / f's{n - 1}'}")
        facts["runs"][f"s{n}"] = train_run(n, STAGE_CONFIGS[n], over)
        total_steps += load_config(STAGE_CONFIGS[n], over).steps
    over = [f"output_dir={args.out / 'slicewise'}", *common, f"steps={total_steps}", *grid_over.get("slicewise", [])]
    facts["runs"]["slicewise"] = train_run(1, BASELINE_CONFIG, over)

    from ctvl.tokenizers.causal3d.bundle import export_bundle

    bundle = export_bundle(args.out / "s3", args.out / "bundle", training={"pipeline": "pipelines/train_tokenizer.py"})
    models = {
        "3D after stage 1": args.out / "s1",
        "3D after stage 3": bundle,
        "2D slice-wise baseline": args.out / "slicewise",
    }
    real = eval_tokenizer.SHARED_VOLUMES if eval_tokenizer.SHARED_VOLUMES.is_dir() else None
    results = eval_tokenizer.run(models, data_root, real, args.out / "eval", max_cases=None)
    table = eval_tokenizer.markdown_table(results)
    facts["pipeline_seconds"] = round(time.perf_counter() - began, 1)
    previous = args.out / "pipeline.json"
    if all(r["skipped"] for r in facts["runs"].values()) and previous.exists():  # re-evaluation only
        first = json.loads(previous.read_text())
        facts["pipeline_seconds"] = first.get("pipeline_seconds", facts["pipeline_seconds"])
        facts["data"]["seconds"] = first.get("data", {}).get("seconds", facts["data"]["seconds"])
    if args.bench is not None and args.bench.is_file():
        facts["bench"] = args.bench.read_text().strip()
    if args.note is not None and args.note.is_file():
        facts["note"] = args.note.read_text().strip()
    card = model_card(facts, results, table)
    training = {
        "pipeline": "pipelines/train_tokenizer.py",
        "stages": facts["runs"],
        "data": facts["data"],
        "threads": args.threads,
        "pipeline_seconds": facts["pipeline_seconds"],
        "metrics": {k: {"phantom": v["phantom"], "real": v["real"]} for k, v in results["models"].items()},
    }
    export_bundle(args.out / "s3", bundle, card=card, training=training)
    shutil.copyfile(args.out / "eval" / "recon_montage_small.png", bundle / "recon_montage.png")
    (args.out / "pipeline.json").write_text(json.dumps(facts, indent=2) + "\n", encoding="utf-8")
    install = (not args.quick and args.model == "f8") if args.install is None else args.install
    if install:
        target = BUNDLE_DIR if args.model == "f8" else BUNDLE_DIR.with_name(f"{BUNDLE_DIR.name}-{args.model}")
        target.mkdir(parents=True, exist_ok=True)
        for name in ("weights.safetensors", "config.json", "MODEL_CARD.md", "recon_montage.png"):
            shutil.copyfile(bundle / name, target / name)
        print(f"installed the bundle in {target}", flush=True)
    print(table)
    print(f"pipeline finished in {facts['pipeline_seconds'] / 60:.1f} min", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
