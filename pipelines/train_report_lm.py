"""Retrain the shipped report bundle's LM on more phantoms for more steps, keeping its tokenizer and
diagnosis, and measure whether it writes what its diagnosis prompt says (issue 13).

    python pipelines/train_report_lm.py                      # 8000 phantoms, 3000 steps, ~55 min on 2 cores
    python pipelines/train_report_lm.py --quick --out /tmp/lm   # smoke run, never installs

Why: with the voxel diagnosis setting the prompt, the shipped LM (1200 steps on 2000 phantoms) drops part
of what the prompt says. Its text reads interlobular septal thickening at F1 0.08 where the prompt reads
it at 0.93, and even a ground-truth prompt yields the finding in about half of the reports that have it:
the rare sentences were seen too seldom. Phantoms render in milliseconds, so the cure is more reports
and more steps, not another architecture.

Steps (each skipped when already done, so a re-run continues where it stopped):

1. ``--n-train`` phantoms of seed 0 in ``--data`` (patient seeds derive from (seed, split, index), so the
   first 2000 are the shipped LM's own training scans);
2. their 3D visual tokens with the bundle's tokenizer (``VisualTokenCache``);
3. ``ctvl train report --config configs/phantom-cpu-report.yaml`` with ``steps=--steps`` and that data,
   in its own process on ``--threads`` threads (resumable: ``--resume`` when a checkpoint exists);
4. the label-head threshold chosen on the training scans (:mod:`ctvl.eval.calibrate`) and a bundle with
   the shipped tokenizer and ``diagnosis/``;
5. on seed 0's 250 valid scans and 250 scans of seed 7 (nothing tuned on either): the shipped LM and the
   new one, each given the same voxel-diagnosis prompts, and each given the ground-truth labels as the
   prompt (how far the LM follows a perfect prompt). Clinical macro/micro-F1 of the text, per-label F1,
   duplicate fraction, contradicting reports, seconds per report;
6. ``lm.json``, ``lm.png`` and ``card_section.md`` in ``--out``; unless ``--quick`` or ``--no-install``,
   the new LM replaces the shipped one (atomically, with the card section) when its voxel-prompt
   macro-F1 is higher on both held-out sets.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "pipelines"))

from report_card import splice_section  # noqa: E402
from train_report import fill_cache  # noqa: E402
from train_report_diagnosis import ensure, read_volumes, score, write_reports  # noqa: E402

from ctvl.atomic import publish_dir, write_text  # noqa: E402
from ctvl.data.datasets import load_record_volume  # noqa: E402
from ctvl.data.labels import CTRATE_LABELS  # noqa: E402
from ctvl.eval.calibrate import calibrate_on_split  # noqa: E402
from ctvl.eval.labeler import ReportLabeler  # noqa: E402
from ctvl.report.bundle import DEFAULT_BUNDLE, export_report_bundle, load_report_model  # noqa: E402
from ctvl.report.generate import ReportGenerator  # noqa: E402
from ctvl.train import latest_checkpoint, read_metrics  # noqa: E402

CONFIG = REPO / "configs" / "phantom-cpu-report.yaml"
MARK_BEGIN, MARK_END = "<!-- lm:begin -->", "<!-- lm:end -->"
MODES = (("voxel", "voxel-diagnosis prompt"), ("oracle", "ground-truth prompt"))


def train(overrides: list[str], run_dir: Path, steps: int, threads: int, log: Path) -> dict:
    """Run (or resume) ``ctvl train report`` in its own process; the run's facts."""
    done = latest_checkpoint(run_dir)
    if done is None or int(done.name.split("-")[1]) < steps:
        cmd = [sys.executable, "-m", "ctvl", "train", "report", "--config", str(CONFIG), *overrides]
        if done is not None:
            cmd.insert(cmd.index("--config"), "--resume")
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
        print(f"training: {' '.join(cmd[2:])} (log {log})", flush=True)
        with open(log, "a", encoding="utf-8") as out:
            if subprocess.run(cmd, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT).returncode:
                raise SystemExit(f"training failed; see {log}")
    last = (read_metrics(run_dir / "metrics.jsonl") or [{}])[-1]
    return {
        "config": str(CONFIG.relative_to(REPO)),
        "overrides": overrides,
        "run_dir": str(run_dir),
        "steps": steps,
        "seconds": round(float(last.get("seconds", 0.0)), 1),
        "final_loss": last.get("loss"),
        "final_metrics": last.get("metrics", {}),
        "threads": threads,
    }


def measure(bundles: dict, sets: list, batch: int) -> dict:
    """Per held-out set, per LM and prompt: the scores of :func:`train_report_diagnosis.score`."""
    labeler = ReportLabeler()
    result: dict = {}
    gens = {name: ReportGenerator(loaded=loaded, labeler=labeler) for name, loaded in bundles.items()}
    if len({json.dumps(g.loaded.export["tokenizer"], sort_keys=True, default=str) for g in gens.values()}) != 1:
        raise SystemExit("the LMs to compare read different tokenizers: their latents cannot be shared")
    first = next(iter(gens.values()))
    for set_name, records in sets:
        volumes = [load_record_volume(r) for r in records]
        truth = np.stack([r.labels for r in records]).astype(np.int64)
        # once per scan: latents and prompts, the same for every LM (same tokenizer, same diagnosis)
        codes, (voxel,), read_s = read_volumes([first], volumes)
        oracle = [torch.from_numpy(t.astype(np.float32)) for t in truth]  # probability 1 for present, 0 absent
        row: dict = {"n": len(records)}
        for name, gen in gens.items():
            for mode, _ in MODES:
                reports, seconds = write_reports(gen, codes, voxel if mode == "voxel" else oracle, batch)
                row[f"{name}/{mode}"] = score(reports, truth, labeler, seconds + read_s)
                print(set_name, name, mode, row[f"{name}/{mode}"]["macro_f1"], flush=True)
        result[set_name] = row
    return result


def write_chart(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(result), 1, figsize=(11, 3.2 * len(result)), squeeze=False)
    x = np.arange(len(CTRATE_LABELS))
    keys = [k for k in next(iter(result.values())) if k != "n"]
    width = 0.8 / len(keys)
    for ax, (name, row) in zip(axes[:, 0], result.items(), strict=True):
        for k, key in enumerate(keys):
            f1 = row[key]["per_label_f1"]
            ax.bar(x + width * k, [f1[n] for n in CTRATE_LABELS], width, label=f"{key} ({row[key]['macro_f1']:.3f})")
        ax.set_xticks(x + 0.4 - width / 2)
        ax.set_xticklabels([n.replace(" ", "\n", 2) for n in CTRATE_LABELS], fontsize=6)
        ax.set_ylim(0, 1)
        ax.set_title(f"{name}: clinical F1 of the report text, per label (LM / prompt)", fontsize=9)
        ax.legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def card_section(facts: dict, result: dict) -> str:
    t = facts["train"]
    lines = [
        MARK_BEGIN,
        "## The LM, retrained on more phantoms (`pipelines/train_report_lm.py`)",
        "",
        f"The shipped LM is the same architecture and config (`{t['config']}`), trained for {t['steps']} steps "
        f"instead of 1200 on {facts['n_train']:,} phantoms (seed 0) instead of 2,000, in {t['seconds'] / 60:.1f} min "
        f"({facts['machine']}); tokenizer and `diagnosis/` unchanged, label-head threshold "
        f"{facts['threshold']} chosen on the training scans. The paper's comparison table above was measured "
        "with the previous LM (1200 steps, 2,000 scans, the same for all three variants) and was not re-run. "
        "Same held-out scans, same prompts:",
        "",
        "| held-out phantoms | LM | prompt | clinical macro-F1 | micro-F1 | duplicate fraction | contradicting | s / report |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, row in result.items():
        for key, r in row.items():
            if key == "n":
                continue
            lm, mode = key.split("/")
            what = dict(MODES)[mode]
            lines.append(
                f"| {name} ({row['n']}) | {lm} | {what} | {r['macro_f1']:.3f} | {r['micro_f1']:.3f} | "
                f"{r['duplicate_fraction']:.3f} | {r['contradicting']} | {r['seconds_per_report']:.2f} |"
            )
    lines += ["", "![per-label F1 of both LMs](lm.png)", MARK_END, ""]
    return "\n".join(lines)


def install(candidate: Path, section: str, png: Path) -> None:
    """Replace the shipped report bundle with ``candidate`` (its card: the shipped one with ``section``)."""
    card = (DEFAULT_BUNDLE / "MODEL_CARD.md").read_text(encoding="utf-8")
    card = splice_section(card, section, MARK_BEGIN, MARK_END)
    with publish_dir(DEFAULT_BUNDLE) as tmp:
        for item in candidate.iterdir():
            (shutil.copytree if item.is_dir() else shutil.copy2)(item, tmp / item.name)
        (tmp / "MODEL_CARD.md").write_text(card, encoding="utf-8")
        shutil.copy2(png, tmp / "lm.png")
    print(f"installed the retrained LM ({candidate}) in {DEFAULT_BUNDLE}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO / "runs" / "data" / "phantom-report-8k")
    parser.add_argument("--valid-data", type=Path, default=REPO / "runs" / "data" / "phantom-report")
    parser.add_argument("--new-seed-data", type=Path, default=REPO / "runs" / "data" / "phantom-report-seed7")
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "report-lm")
    parser.add_argument("--n-train", type=int, default=8000)
    parser.add_argument("--n-valid", type=int, default=250)
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--batch", type=int, default=8, help="reports generated together")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="tiny data and steps; never installs")
    parser.add_argument("--no-install", action="store_true")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    out = args.out.resolve()
    extra: list[str] = []
    if args.quick:
        args.n_train, args.n_valid, args.steps = 16, 4, 4
        args.data, args.valid_data, args.new_seed_data = out / "data", out / "data", out / "data-seed7"
        extra = ["log_every=2", "checkpoint_every=4", "warmup_steps=2", "model.max_new_tokens=48"]
    (out / "logs").mkdir(parents=True, exist_ok=True)
    shipped = load_report_model(None)
    if shipped.diagnosis is None or shipped.tokenizer is None:
        raise SystemExit("the shipped report bundle has no voxel diagnosis or tokenizer: nothing to keep")
    tokenizer = str(shipped.source / "tokenizer")
    records = ensure(args.data.resolve(), 0, "train", args.n_train)
    cache = out / "cache"
    cache_s = fill_cache(args.data.resolve(), tokenizer, cache)
    run_dir = out / "run"
    overrides = [
        f"output_dir={run_dir}",
        f"data.root={args.data.resolve()}",
        f"data.cache_dir={cache}",
        f"data.tokenizer={tokenizer}",
        f"steps={args.steps}",
        *extra,
    ]
    facts: dict = {
        "pipeline": "pipelines/train_report_lm.py",
        "n_train": len(records),
        "cache_seconds": round(cache_s, 1),
        "machine": f"{platform.machine()}, {args.threads} torch threads",
        "train": train(overrides, run_dir, args.steps, args.threads, out / "logs" / "train.log"),
    }
    found = calibrate_on_split(run_dir, args.data.resolve(), split="train", cache_dir=cache)
    facts["threshold"] = found["threshold"]
    candidate = export_report_bundle(
        run_dir,
        out / "bundle",
        card=(shipped.source / "MODEL_CARD.md").read_text(encoding="utf-8"),
        training={
            "pipeline": facts["pipeline"],
            "train": facts["train"],
            "data": {"n_train": len(records)},
            "comparison": json.loads((shipped.source / "config.json").read_text())["training"].get("comparison", []),
        },
        tokenizer_source=tokenizer,
        model_overrides={"label_threshold": found["threshold"]},
        diagnosis_source=shipped.source / "diagnosis",
    )
    sets = [
        ("seed0-valid", ensure(args.valid_data.resolve(), 0, "valid", args.n_valid)),
        ("seed7-valid", ensure(args.new_seed_data.resolve(), 7, "valid", args.n_valid)),
    ]
    result = measure({"previous": shipped, "retrained": load_report_model(candidate)}, sets, args.batch)
    facts["sets"] = result
    write_text(out / "lm.json", json.dumps(facts, indent=2, default=str) + "\n")
    write_chart(result, out / "lm.png")
    section = card_section(facts, result)
    write_text(out / "card_section.md", section)
    print(section)
    better = all(row["retrained/voxel"]["macro_f1"] > row["previous/voxel"]["macro_f1"] for row in result.values())
    if not (args.quick or args.no_install):
        if better:
            install(candidate, section, out / "lm.png")
        else:
            print("not installed: the retrained LM is not better on both held-out sets", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
