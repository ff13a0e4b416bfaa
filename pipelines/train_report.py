"""Train and compare the report models on phantoms, and ship the default report bundle.

    python pipelines/train_report.py                      # the real run (2 threads, one variant at a time)
    python pipelines/train_report.py --quick --out runs/report-smoke   # a minutes-long smoke run

Steps (each skipped when already done, so re-running continues where it stopped):

1. data: ``--n-train`` / ``--n-valid`` phantom scans in ``--data`` (``ctvl data phantom``);
2. visual-token caches of every training scan for the 3D and the slice-wise tokenizer;
3. the paper's comparison, same LM, steps and batch, three visual inputs:
   ``configs/phantom-cpu-report.yaml`` (3D tokenizer), ``-slicewise.yaml`` (2D slice-wise tokenizer),
   ``-textonly.yaml`` (no visual input), each ``ctvl train report`` in its own process;
4. the diagnosis-prompt threshold of each visual model chosen on its *training* scans
   (:mod:`ctvl.eval.calibrate`), each model exported as a bundle with it (``bundles/<variant>``);
5. ``ctvl eval run`` of each bundle on the held-out split: clinical F1 (dataset labels), BLEU/ROUGE-L/CIDEr
   (reference: findings + impression), duplicate fraction, mean length vs the references;
6. ``comparison.md`` / ``comparison.json``, the model card, and the 3D model exported as a bundle,
   installed in ``ctvl/bundles/report-phantom-cpu/`` (unless ``--quick`` or ``--no-install``).
"""

from __future__ import annotations

import argparse
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
sys.path.insert(0, str(REPO / "pipelines"))

from report_card import comparison_rows, markdown_table, model_card, targets  # noqa: E402

CONFIGS = REPO / "configs"
VARIANTS = {  # name -> (config, what the LM sees)
    "3d": (CONFIGS / "phantom-cpu-report.yaml", "3D causal tokenizer"),
    "slicewise": (CONFIGS / "phantom-cpu-report-slicewise.yaml", "2D slice-wise tokenizer"),
    "textonly": (CONFIGS / "phantom-cpu-report-textonly.yaml", "none (text-only prior)"),
}
BUNDLE_DIR = REPO / "ctvl" / "bundles" / "report-phantom-cpu"
DATA_SEED = 0


def ensure_phantoms(root: Path, n_train: int, n_valid: int) -> float:
    """Write the phantom splits unless complete ones of that size exist; returns seconds spent."""
    from ctvl.data.phantom import write_dataset

    began = time.perf_counter()
    for split, n in (("train", n_train), ("valid", n_valid)):
        manifest = root / f"phantom_{split}.json"
        if manifest.exists() and json.loads(manifest.read_text()).get("n") == n:
            continue
        print(f"writing {n} phantom {split} scans to {root}", flush=True)
        write_dataset(root, n, DATA_SEED, split=split, workers=0, progress=True)
    return time.perf_counter() - began


def fill_cache(data: Path, tokenizer: str, cache: Path) -> float:
    """Encode every training scan with ``tokenizer`` into the cache; returns seconds spent."""
    from ctvl.data.datasets import scan_ctrate
    from ctvl.tokenizers.causal3d.bundle import load_tokenizer
    from ctvl.tokenizers.causal3d.token_cache import VisualTokenCache

    began = time.perf_counter()
    records = scan_ctrate(data, split="train", require=("reports",)).records
    tok = load_tokenizer(tokenizer)
    VisualTokenCache(tokenizer=tok, root=cache).codes_many(records)
    return time.perf_counter() - began


def _finished(run_dir: Path, steps: int) -> bool:
    from ctvl.train import latest_checkpoint

    latest = latest_checkpoint(run_dir)
    return latest is not None and int(latest.name.split("-")[1]) >= steps


def launch(name: str, overrides: list[str], out: Path, threads: int) -> tuple[subprocess.Popen | None, dict[str, Any]]:
    """Start ``ctvl train report`` for one variant (None when it already finished)."""
    from ctvl.train import latest_checkpoint, load_config

    config = VARIANTS[name][0]
    cfg = load_config(config, overrides)
    facts = {
        "config": str(config.relative_to(REPO)),
        "overrides": overrides,
        "run_dir": str(cfg.run_dir),
        "steps": cfg.steps,
        "batch_size": cfg.batch_size,
    }
    if _finished(cfg.run_dir, cfg.steps):
        return None, facts
    cmd = [sys.executable, "-m", "ctvl", "train", "report", "--config", str(config), *overrides]
    if latest_checkpoint(cfg.run_dir) is not None:
        cmd.insert(cmd.index("--config"), "--resume")
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    log = open(out / "logs" / f"train-{name}.log", "a", encoding="utf-8")  # noqa: SIM115 - closed by the caller
    print(f"training {name}: {' '.join(cmd[2:])}", flush=True)
    return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT), facts


def train_all(names: list[str], overrides: dict[str, list[str]], out: Path, threads: int, jobs: int) -> dict[str, Any]:
    """Train the variants, ``jobs`` at a time with ``threads // jobs`` threads each."""
    from ctvl.train import read_metrics

    facts: dict[str, Any] = {}
    pending = list(names)
    running: dict[str, subprocess.Popen] = {}
    per_job = max(1, threads // jobs)
    while pending or running:
        while pending and len(running) < jobs:
            name = pending.pop(0)
            proc, facts[name] = launch(name, overrides[name], out, per_job)
            if proc is not None:
                running[name] = proc
        for name, proc in list(running.items()):
            if proc.poll() is not None:
                del running[name]
                if proc.returncode != 0:
                    raise SystemExit(f"training {name} failed (exit {proc.returncode}); see {out / 'logs'}")
        time.sleep(2)
    for name in names:
        records = read_metrics(Path(facts[name]["run_dir"]) / "metrics.jsonl")
        last = records[-1] if records else {}
        facts[name].update(
            {
                "seconds": round(float(last.get("seconds", 0.0)), 1),
                "final_loss": last.get("loss"),
                "final_metrics": last.get("metrics", {}),
                "threads": per_job,
            }
        )
    return facts


def calibrate_and_export(names: list[str], facts: dict[str, Any], data: Path, out: Path, cache: Path) -> None:
    """Choose each diagnosis-prompt threshold on the training scans and export every variant as a bundle.

    Adds ``calibration`` (threshold, macro F1 per candidate) and ``bundle`` to ``facts[name]``.
    """
    from ctvl.eval.calibrate import calibrate_on_split
    from ctvl.report.bundle import export_report_bundle, load_report_model

    for name in names:
        run_dir = facts[name]["run_dir"]
        overrides = None
        if load_report_model(run_dir).model.config.label_prompt:
            found = calibrate_on_split(run_dir, data, split="train", cache_dir=cache)
            facts[name]["calibration"] = found
            overrides = {"label_threshold": found["threshold"]}
            print(
                f"{name}: diagnosis threshold {found['threshold']} (training macro-F1 "
                f"{found['scores'][found['threshold']]:.3f})",
                flush=True,
            )
        facts[name]["model_overrides"] = overrides
        facts[name]["bundle"] = str(
            export_report_bundle(
                run_dir,
                out / "bundles" / name,
                model_overrides=overrides,
                tokenizer_source=installed_tokenizer(run_dir),
            )
        )


def evaluate_all(names: list[str], facts: dict[str, Any], data: Path, out: Path, limit: int | None) -> dict[str, Any]:
    """``ctvl eval run`` of each exported variant on the held-out split (in this process)."""
    from ctvl.eval.run import run_eval

    results: dict[str, Any] = {}
    for name in names:
        began = time.perf_counter()
        print(f"evaluating {name} on held-out phantoms", flush=True)
        result = run_eval(
            data,
            out / "eval" / name,
            split="valid",
            model=facts[name]["bundle"],
            limit=limit,
            batch_size=16,
            meteor=None,
        )
        if result.metrics is None:
            raise RuntimeError(f"no report generated for {name}")
        results[name] = {
            "metrics": result.metrics,
            "errors": result.errors,
            "seconds": round(time.perf_counter() - began, 1),
        }
    return results


def installed_tokenizer(run_dir: str) -> Path | None:
    """The tokenizer bundle shipped in ctvl/bundles when it is the one the run used (copied from there)."""
    from ctvl.report.bundle import load_report_model
    from ctvl.tokenizers.causal3d.bundle import PHANTOM_BUNDLE, load_tokenizer

    if not (PHANTOM_BUNDLE / "config.json").is_file():
        return None
    ident = load_report_model(run_dir).export["tokenizer"]
    if ident is None:  # text-only model
        return None
    return PHANTOM_BUNDLE if load_tokenizer(PHANTOM_BUNDLE).tokenizer_id == ident["id"] else None


def install(bundle: Path) -> None:
    """Copy the bundle (weights, config, tokenizer, card) into the package, atomically (whole or not at all)."""
    from ctvl.atomic import publish_dir

    with publish_dir(BUNDLE_DIR) as tmp:
        for item in bundle.iterdir():
            (shutil.copytree if item.is_dir() else shutil.copy2)(item, tmp / item.name)
    print(f"installed the report bundle in {BUNDLE_DIR}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "report-phantom-cpu")
    parser.add_argument("--data", type=Path, default=REPO / "runs" / "data" / "phantom-report")
    parser.add_argument("--n-train", type=int, default=2000)
    parser.add_argument("--n-valid", type=int, default=250)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--jobs", type=int, default=1, help="variants trained at once (threads are split; 1 on a 2-core machine)"
    )
    parser.add_argument("--variants", default="3d,slicewise,textonly")
    parser.add_argument("--tokenizer", default=str(REPO / "ctvl" / "bundles" / "tokenizer-phantom-cpu"))
    parser.add_argument("--slicewise-tokenizer", default=str(REPO / "runs" / "tokenizer-phantom-cpu" / "slicewise"))
    parser.add_argument("--quick", action="store_true", help="smoke run: few scans, few steps, no install")
    parser.add_argument(
        "--probe",
        type=Path,
        default=REPO / "runs" / "probe-tokens" / "probe.json",
        help="probe.json of pipelines/probe_tokens.py, quoted in the model card when present",
    )
    parser.add_argument("--install", action=argparse.BooleanOptionalAction, default=None)
    parser.add_argument("overrides", nargs="*", help="config overrides for every variant, e.g. steps=1200")
    args = parser.parse_args(argv)
    import torch

    # the caches and the evaluation run here on threads // jobs threads: on a busy machine more OpenMP threads
    # than free cores make small-tensor work many times slower, not faster
    torch.set_num_threads(max(1, args.threads // args.jobs))
    began = time.perf_counter()
    out = args.out.resolve()
    (out / "logs").mkdir(parents=True, exist_ok=True)
    n_train, n_valid = (16, 6) if args.quick else (args.n_train, args.n_valid)
    data = (out / "data") if args.quick else args.data.resolve()
    names = [v.strip() for v in args.variants.split(",") if v.strip()]
    facts: dict[str, Any] = {
        "out": str(out),
        "threads": args.threads,
        "jobs": args.jobs,
        "hardware": f"{platform.machine()} {platform.system()}, {os.cpu_count()} cores",
    }
    facts["data"] = {
        "root": str(data),
        "n_train": n_train,
        "n_valid": n_valid,
        "seconds": round(ensure_phantoms(data, n_train, n_valid), 1),
    }
    cache = out / "cache"
    tokenizers = {"3d": args.tokenizer, "slicewise": args.slicewise_tokenizer}
    facts["cache_seconds"] = {n: round(fill_cache(data, tokenizers[n], cache), 1) for n in names if n in tokenizers}
    common = [f"data.root={data}", f"data.cache_dir={cache}", *args.overrides]
    if args.quick:
        common += ["steps=6", "log_every=2", "checkpoint_every=6", "warmup_steps=2", "model.max_new_tokens=48"]
    overrides = {
        n: [f"output_dir={out / 'runs' / n}", *common]
        + ([f"data.tokenizer={tokenizers[n]}"] if n in tokenizers else [])
        for n in names
    }
    facts["train"] = train_all(names, overrides, out, args.threads, args.jobs)
    calibrate_and_export(names, facts["train"], data, out, cache)
    results = evaluate_all(names, facts["train"], data, out, None)
    rows = comparison_rows(results, {n: v[1] for n, v in VARIANTS.items()})
    table = markdown_table(rows)
    facts["eval"] = {n: {k: v for k, v in r.items() if k != "metrics"} for n, r in results.items()}
    facts["comparison"] = rows
    facts["pipeline_seconds"] = round(time.perf_counter() - began, 1)
    if args.probe.is_file():
        facts["probe"] = json.loads(args.probe.read_text())
    (out / "comparison.md").write_text(table + "\n\n" + "\n".join(targets(rows)) + "\n", encoding="utf-8")
    (out / "comparison.json").write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")
    (out / "pipeline.json").write_text(json.dumps(facts, indent=2, default=str) + "\n", encoding="utf-8")
    print(table)
    print("\n".join(targets(rows)))
    if "3d" in names:
        from ctvl.report.bundle import export_report_bundle

        card = model_card(facts, rows, table, DATA_SEED)
        training = {
            "pipeline": "pipelines/train_report.py",
            "train": facts["train"]["3d"],
            "data": facts["data"],
            "comparison": rows,
        }
        bundle = export_report_bundle(
            facts["train"]["3d"]["run_dir"],
            out / "bundle",
            card=card,
            training=training,
            tokenizer_source=installed_tokenizer(facts["train"]["3d"]["run_dir"]),
            model_overrides=facts["train"]["3d"]["model_overrides"],
        )
        shutil.copyfile(out / "eval" / "3d" / "per_label_f1.png", bundle / "per_label_f1.png")
        if args.install if args.install is not None else not args.quick:
            install(bundle)
    print(f"pipeline finished in {facts['pipeline_seconds'] / 60:.1f} min", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
