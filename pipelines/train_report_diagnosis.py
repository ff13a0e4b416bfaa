"""Train the report bundle's voxel diagnosis and measure what it changes (issue 13), then ship it.

    python pipelines/train_report_diagnosis.py                 # 2000 + 14000 phantoms, ~50 min on 2 cores
    python pipelines/train_report_diagnosis.py --quick --out /tmp/d   # smoke run, never installs

The report LM writes what its 18 diagnosis tokens say. Out of the box its token label head sets them from
the visual tokens, which keep about half of what the 64 x 64 x 33 grid shows. This pipeline trains a
:class:`ctvl.classify.CTNet3D` on the preprocessed voxels of the report model's own training phantoms
(seed 0, the same 2000 scans) and of ``--n-extra`` more training phantoms of seed 3 (phantoms render in
milliseconds, and the voxel probe is limited by its training scans, not the grid: docs/report_grid.md; the recipe of the feature networks: 6 epochs, one-cycle AdamW, BCE with
sqrt inverse-prevalence weights, flips and shifts; per-label thresholds chosen on the training scans only),
puts it in a copy of the shipped report bundle (``diagnosis/``) and writes every held-out report with
the same LM and tokens: prompt set by the token head, by the diagnosis installed now (when there is one) and by
the new voxel classifier; it installs only when the new one beats the installed one on both sets. Held-out
sets: seed 0's 250 valid scans and 250 scans of seed 7, which nothing was tuned on. Per set and mode:
clinical macro/micro-F1 of the generated text (report labeler vs phantom labels), per-label F1, the
duplicate fraction, reports whose impression contradicts the findings, seconds per report; beside them
the classifier's own label F1 (the prompt before the LM). Writes ``diagnosis.json``, ``diagnosis.png`` and
``card_section.md`` in ``--out``; unless ``--quick`` or ``--no-install``, installs the diagnosis into
``ctvl/bundles/report-phantom-cpu`` (atomically) with that section in its model card.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "pipelines"))

from report_card import splice_section  # noqa: E402

from ctvl.atomic import write_text  # noqa: E402
from ctvl.classify import FeatureNetConfig, train_classifier  # noqa: E402
from ctvl.data.datasets import load_record_volume, scan_ctrate  # noqa: E402
from ctvl.data.labels import CTRATE_LABELS  # noqa: E402
from ctvl.data.phantom import write_dataset  # noqa: E402
from ctvl.eval.clinical import clinical_metrics  # noqa: E402
from ctvl.eval.degenerate import degenerate_metrics  # noqa: E402
from ctvl.eval.features import model_space_volumes  # noqa: E402
from ctvl.eval.labeler import ReportLabeler  # noqa: E402
from ctvl.report.bundle import DEFAULT_BUNDLE, load_report_model, with_diagnosis  # noqa: E402
from ctvl.report.diagnosis import write_diagnosis  # noqa: E402
from ctvl.report.generate import ReportGenerator  # noqa: E402
from ctvl.report.specifics import misplaced  # noqa: E402

NET = FeatureNetConfig(widths=(16, 32, 64, 128), strides=None, blocks=1)  # the feature networks' CTNet3D
MARK_BEGIN, MARK_END = "<!-- diagnosis:begin -->", "<!-- diagnosis:end -->"


def ensure(root: Path, seed: int, split: str, n: int) -> list:
    """The first ``n`` records of a phantom split, rendered at 64 x 64 x 33 when missing or short."""
    if not (root / split).is_dir() or len(scan_ctrate(root, split=split).records) < n:
        write_dataset(root, n, seed, split=split, workers=0, progress=True)
    return scan_ctrate(root, split=split, require=("labels",)).records[:n]


def read_volumes(gens: list[ReportGenerator], volumes: list) -> tuple[list, list[list], float]:
    """Each volume preprocessed once: its latents and, per generator, its voxel-diagnosis probabilities (None
    without one); and the seconds per volume. The generators must share one tokenizer (same latents)."""
    began = time.perf_counter()
    codes: list = []
    probs: list[list] = [[] for _ in gens]
    for v in volumes:
        prepared = gens[0].loaded.tokenizer.spec.apply(v) if gens[0].loaded.visual else None
        codes.append(gens[0].encode(v, prepared))
        for out, gen in zip(probs, gens, strict=True):
            same = gen.diagnosis is not None and gen.diagnosis.spec == gens[0].loaded.tokenizer.spec
            out.append(gen.diagnose(v, prepared if same else None))
    return codes, probs, (time.perf_counter() - began) / max(1, len(volumes))


def write_reports(gen: ReportGenerator, codes: list, diagnoses: list, batch: int) -> tuple[list, float]:
    """Every report of one mode from the latents of :func:`read_volumes`, and seconds per report (generation +
    labels; ``diagnoses`` per volume, None for the token head)."""
    reports, began = [], time.perf_counter()
    for i in range(0, len(codes), batch):
        reports += gen.from_codes(codes[i : i + batch], None, diagnoses[i : i + batch])
    return reports, (time.perf_counter() - began) / max(1, len(codes))


def score(reports: list, truth: np.ndarray, labeler: ReportLabeler, seconds: float) -> dict:
    pred = np.array([[r.labels[k] for k in CTRATE_LABELS] for r in reports], dtype=np.int64)
    m = clinical_metrics(truth, pred)
    return {
        "macro_f1": round(m["macro_f1"], 4),
        "micro_f1": round(m["micro_f1"], 4),
        "per_label_f1": {k: round(v["f1"], 4) for k, v in m["per_label"].items()},
        "duplicate_fraction": round(degenerate_metrics([r.text for r in reports])["duplicate_fraction"], 4),
        "contradicting": sum(bool(labeler.contradictions(r.findings, r.impression)) for r in reports),
        "misplaced": sum(bool(misplaced(r.findings, r.impression, labeler.label)) for r in reports),
        "misplaced_dropped": sum(any("a location or size the findings do" in w for w in r.warnings) for r in reports),
        "seconds_per_report": round(seconds, 3),
    }


def write_chart(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sets = list(result["sets"])
    fig, axes = plt.subplots(len(sets), 1, figsize=(11, 3.2 * len(sets)), squeeze=False)
    x = np.arange(len(CTRATE_LABELS))
    for ax, name in zip(axes[:, 0], sets, strict=True):
        row = result["sets"][name]
        bars = (
            ("report text, token head sets the prompt", row["token_head"]["per_label_f1"]),
            ("report text, voxel classifier sets the prompt", row["voxel"]["per_label_f1"]),
            ("voxel classifier's own labels", row["classifier"]["per_label_f1"]),
        )
        for k, (label, f1) in enumerate(bars):
            ax.bar(x + 0.27 * k, [f1[n] for n in CTRATE_LABELS], 0.27, label=label)
        ax.set_xticks(x + 0.27)
        ax.set_xticklabels([n.replace(" ", "\n", 2) for n in CTRATE_LABELS], fontsize=6)
        ax.set_ylim(0, 1)
        ax.set_title(
            f"{name}: macro-F1 {row['token_head']['macro_f1']:.3f} -> {row['voxel']['macro_f1']:.3f} "
            f"(classifier {row['classifier']['macro_f1']:.3f})",
            fontsize=9,
        )
        ax.legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def card_section(result: dict) -> str:
    """The model-card section (between markers, so a rerun replaces it)."""
    t = result["training"]
    lines = [
        MARK_BEGIN,
        "## Diagnosis from the voxels (`diagnosis/`)",
        "",
        "The diagnosis prompt is set by a 3D classifier of the preprocessed voxels (`ctvl.report.diagnosis`,",
        f"CTNet3D: 4 stride-2 stages of widths 16-32-64-128 with a residual block each, {t['parameters']:,} parameters),",
        f"trained on {t['n_train']:,} training phantoms ({t['train_sets']}) in {t['seconds'] / 60:.1f} min "
        f"({t['machine']}); per-label thresholds chosen on the training scans only.",
        "The LM, its visual tokens and its weights are unchanged: it was trained with ground-truth prompts, and",
        "now the prompt comes from a reader that sees the whole 64 x 64 x 33 grid instead of the tokens alone",
        "(`ctvl.report.ReportGenerator(voxel_diagnosis=False)` restores the token head).",
        "Command: `python pipelines/train_report_diagnosis.py`. Same LM, same scans, both prompts, both decoded with prompt-following and self-consistent decoding (`ctvl.report.consistency`):",
        "",
        "| held-out phantoms | prompt set by | clinical macro-F1 | micro-F1 | duplicate fraction | contradicting | s / report |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, row in result["sets"].items():
        for mode, what in (
            ("token_head", "token label head"),
            ("shipped", "previous voxel classifier"),
            ("voxel", "voxel classifier"),
        ):
            if mode not in row:
                continue
            r = row[mode]
            lines.append(
                f"| {name} ({row['n']}) | {what} | {r['macro_f1']:.3f} | {r['micro_f1']:.3f} | "
                f"{r['duplicate_fraction']:.3f} | {r['contradicting']} | {r['seconds_per_report']:.2f} |"
            )
        lines.append(
            f"| {name} | (the classifier's own labels, no LM) | {row['classifier']['macro_f1']:.3f} | "
            f"{row['classifier']['micro_f1']:.3f} | | | |"
        )
        if "shipped_classifier" in row:
            lines.append(
                f"| {name} | (the previous classifier's own labels) | {row['shipped_classifier']['macro_f1']:.3f} "
                "| | | | |"
            )
    lines += ["", "![per-label F1 with either prompt](diagnosis/diagnosis.png)", MARK_END, ""]
    return "\n".join(lines)


def install(card: str, section: str, diagnosis: Path, png: Path, bundle: Path = DEFAULT_BUNDLE) -> None:
    """Put the diagnosis and its card section into the shipped report bundle (republished whole)."""
    card = splice_section(card, section, MARK_BEGIN, MARK_END)
    shutil.copy2(png, diagnosis / "diagnosis.png")  # travels inside diagnosis/, published with it
    with_diagnosis(bundle, diagnosis, card=card)
    print(f"installed the voxel diagnosis in {bundle}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO / "runs" / "data" / "phantom-report")
    parser.add_argument("--new-seed-data", type=Path, default=REPO / "runs" / "data" / "phantom-report-seed7")
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "report-diagnosis")
    parser.add_argument("--n-train", type=int, default=2000)
    parser.add_argument("--extra-data", type=Path, default=REPO / "runs" / "data" / "phantom-report-seed3")
    parser.add_argument("--extra-seed", type=int, default=3)
    parser.add_argument("--n-extra", type=int, default=14000, help="extra training phantoms (0 = none)")
    parser.add_argument("--n-valid", type=int, default=250)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--batch", type=int, default=8, help="reports generated together")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="tiny data and one epoch; never installs")
    parser.add_argument("--no-install", action="store_true")
    parser.add_argument("--reuse", action="store_true", help="evaluate the diagnosis already trained in --out")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.quick:
        args.n_train, args.n_valid, args.epochs, args.n_extra = 32, 8, 1, 16
        args.data, args.new_seed_data = args.out / "data", args.out / "data-seed7"
        args.extra_data = args.out / "data-extra"
    if args.extra_seed in (0, 7):
        parser.error("--extra-seed must differ from the report data's seed 0 and the held-out seed 7")
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    loaded = load_report_model(None)
    spec = loaded.spec
    train_records = ensure(args.data, 0, "train", args.n_train)
    train_sets = f"seed 0: {len(train_records):,}"
    if args.n_extra > 0:
        train_records += ensure(args.extra_data, args.extra_seed, "train", args.n_extra)
        train_sets += f"; seed {args.extra_seed}: {args.n_extra:,}"
    trained_dir = out / "diagnosis"
    if args.reuse and (trained_dir / "config.json").is_file():  # a finished training of this --out
        diagnosis = trained_dir
        training = json.loads((trained_dir / "config.json").read_text(encoding="utf-8"))["training"]
        print(f"reusing the diagnosis trained in {trained_dir}", flush=True)
    else:
        x, y = model_space_volumes(train_records, spec, cache_dir=out / "cache", progress=True)
        trained = train_classifier(
            x, y, config=NET, epochs=args.epochs, batch_size=16, lr=2e-3, thresholds="train", seed=1, progress=True
        )
        del x
        training = {
            **trained.facts,
            "seconds": round(trained.seconds, 1),
            "parameters": sum(p.numel() for p in trained.net.parameters()),
            "n_train": len(train_records),
            "train_sets": train_sets,
            "data": str(args.data.relative_to(REPO)) if args.data.is_relative_to(REPO) else str(args.data),
            "machine": f"{platform.machine()}, {args.threads} torch threads",
            "pipeline": "pipelines/train_report_diagnosis.py",
        }
        diagnosis = write_diagnosis(
            trained_dir, net=trained.net, thresholds=trained.thresholds, spec=spec, training=training
        )
    candidate = out / "bundle"
    if candidate.exists():
        shutil.rmtree(candidate)
    shutil.copytree(loaded.source, candidate)
    with_diagnosis(candidate, diagnosis)
    with_voxels = load_report_model(candidate)
    labeler = ReportLabeler()
    result: dict = {"training": training, "sets": {}}
    sets = (("seed0-valid", args.data, 0), ("seed7-valid", args.new_seed_data, 7))
    for name, root, seed in sets:
        records = ensure(root, seed, "valid", args.n_valid)
        volumes = [load_record_volume(r) for r in records]
        truth = np.stack([r.labels for r in records]).astype(np.int64)
        row: dict = {"n": len(records)}
        voxel_gen = ReportGenerator(loaded=with_voxels, labeler=labeler)
        modes = [("token_head", ReportGenerator(loaded=loaded, labeler=labeler, voxel_diagnosis=False))]
        if loaded.diagnosis is not None:  # the diagnosis installed now: the one this training must beat
            modes.append(("shipped", ReportGenerator(loaded=loaded, labeler=labeler)))
        modes.append(("voxel", voxel_gen))
        # once per scan: preprocessing, latents (the same tokenizer in every mode) and each mode's diagnosis
        codes, given, read_s = read_volumes([gen for _, gen in modes], volumes)
        diagnoses = given[-1]
        shipped = given[1] if len(modes) == 3 else None
        for (mode, gen), prompts in zip(modes, given, strict=True):
            reports, seconds = write_reports(gen, codes, prompts, args.batch)
            row[mode] = score(reports, truth, labeler, seconds + read_s)
            print(name, mode, row[mode]["macro_f1"], row[mode]["duplicate_fraction"], flush=True)
        own = (with_voxels.diagnosis.states(torch.stack(diagnoses)) > 0).long().numpy()  # type: ignore[union-attr]
        m = clinical_metrics(truth, own)
        row["classifier"] = {
            "macro_f1": round(m["macro_f1"], 4),
            "micro_f1": round(m["micro_f1"], 4),
            "per_label_f1": {k: round(v["f1"], 4) for k, v in m["per_label"].items()},
        }
        if shipped is not None:
            was = (loaded.diagnosis.states(torch.stack(shipped)) > 0).long().numpy()  # type: ignore[union-attr]
            row["shipped_classifier"] = {"macro_f1": round(clinical_metrics(truth, was)["macro_f1"], 4)}
        result["sets"][name] = row
    write_text(out / "diagnosis.json", json.dumps(result, indent=2) + "\n")
    write_chart(result, out / "diagnosis.png")
    section = card_section(result)
    write_text(out / "card_section.md", section)
    print(section)
    beats = [r["voxel"]["macro_f1"] > r["shipped"]["macro_f1"] for r in result["sets"].values() if "shipped" in r]
    if not all(beats):
        print("not installed: the new diagnosis does not beat the shipped one on every held-out set", flush=True)
    elif not (args.quick or args.no_install):
        install(
            (DEFAULT_BUNDLE / "MODEL_CARD.md").read_text(encoding="utf-8"), section, diagnosis, out / "diagnosis.png"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
