"""Self-consistent decoding against the first draft (issue 13): contradictions, clinical F1, duplicates, time.

    python pipelines/measure_consistency.py                       # shipped report bundle, 2 x 250 phantoms
    python pipelines/measure_consistency.py --n 16 --out /tmp/c   # smoke run

For each held-out phantom set (seed 0's valid split, the report bundle's own held-out set, and seed 7,
which nothing was tuned on; rendered at the report data's 64 x 64 x 33 if missing), every scan is encoded
once and written twice by the same model: ``draft`` (``ReportGenerator(consistent=False)``: the first
greedy draft, contradictions only warned about) and ``consistent`` (the default: re-decoding, then
removal). Counted per mode: reports whose impression affirms what their findings rule out (in the text
the user gets), re-decoded reports, reports with a removed sentence, clinical macro-F1 against the
phantom labels, the duplicate fraction and seconds per report. Writes ``consistency.json`` and
``consistency.png`` in ``--out``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ctvl.atomic import write_text  # noqa: E402
from ctvl.data.datasets import load_record_volume, scan_ctrate  # noqa: E402
from ctvl.data.labels import CTRATE_LABELS  # noqa: E402
from ctvl.data.phantom import write_dataset  # noqa: E402
from ctvl.eval.clinical import clinical_metrics  # noqa: E402
from ctvl.eval.degenerate import degenerate_metrics  # noqa: E402
from ctvl.eval.labeler import ReportLabeler  # noqa: E402
from ctvl.report.bundle import load_report_model  # noqa: E402
from ctvl.report.generate import ReportGenerator  # noqa: E402

SETS = {"seed0-valid": 0, "seed7-valid": 7}


def ensure(root: Path, seed: int, n: int) -> list:
    """The first ``n`` valid records of ``root``, rendering the split at 64 x 64 x 33 when it is short."""
    if not (root / "valid").is_dir() or len(scan_ctrate(root, split="valid").records) < n:
        write_dataset(root, n, seed, split="valid", workers=0, progress=True)
    return scan_ctrate(root, split="valid", require=("labels",)).records[:n]


def run_mode(
    loaded, labeler: ReportLabeler, codes: list[torch.Tensor], diagnoses: list, consistent: bool, batch: int
) -> dict:
    """Write every report in one mode; counts, texts and predicted labels."""
    gen = ReportGenerator(loaded=loaded, labeler=labeler, consistent=consistent)
    reports, began = [], time.perf_counter()
    for i in range(0, len(codes), batch):
        reports += gen.from_codes(codes[i : i + batch], None, diagnoses[i : i + batch])
    seconds = time.perf_counter() - began
    clashing = [r for r in reports if labeler.contradictions(r.findings, r.impression)]
    return {
        "reports": reports,
        "contradicting": len(clashing),
        "redecoded": sum(r.redecodes > 0 for r in reports),
        "redecodes": sum(r.redecodes for r in reports),
        "removed": sum(any("were removed after" in w for w in r.warnings) for r in reports),
        "seconds_per_report": round(seconds / len(reports), 3),
    }


def write_chart(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    names = list(result["sets"])
    x = np.arange(len(names))
    for k, mode in enumerate(("draft", "consistent")):
        rate = [result["sets"][s][mode]["contradicting_fraction"] for s in names]
        f1 = [result["sets"][s][mode]["macro_f1"] for s in names]
        axes[0].bar(x + 0.4 * k, rate, 0.4, label=mode)
        axes[1].bar(x + 0.4 * k, f1, 0.4, label=mode)
    for ax, title in zip(axes, ("reports contradicting themselves", "clinical macro-F1"), strict=True):
        ax.set_xticks(x + 0.2)
        ax.set_xticklabels(names)
        ax.set_title(title, fontsize=9)
    axes[0].axhline(0.02, color="k", lw=0.8, ls="--")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="report bundle (default: the shipped one)")
    parser.add_argument("--data", type=Path, default=REPO / "runs" / "data" / "phantom-report")
    parser.add_argument("--new-seed-data", type=Path, default=REPO / "runs" / "data" / "phantom-report-seed7")
    parser.add_argument("--n", type=int, default=250)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "consistency")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    loaded = load_report_model(args.model)
    labeler = ReportLabeler()
    encoder = ReportGenerator(loaded=loaded, labeler=labeler)
    result: dict = {"model": str(loaded.source), "sets": {}}
    for name, root in (("seed0-valid", args.data), ("seed7-valid", args.new_seed_data)):
        records = ensure(root, SETS[name], args.n)
        volumes = [load_record_volume(r) for r in records]
        codes = [encoder.encode(v) for v in volumes]
        diagnoses = [encoder.diagnose(v) for v in volumes]  # None unless the bundle has a voxel diagnosis
        truth = np.stack([r.labels for r in records]).astype(np.int64)
        row: dict = {"n": len(records)}
        for mode in ("draft", "consistent"):
            got = run_mode(loaded, labeler, codes, diagnoses, mode == "consistent", args.batch)
            reports = got.pop("reports")
            pred = np.array([[r.labels[k] for k in CTRATE_LABELS] for r in reports], dtype=np.int64)
            metrics = clinical_metrics(truth, pred)
            row[mode] = {
                **got,
                "contradicting_fraction": round(got["contradicting"] / len(reports), 4),
                "macro_f1": round(metrics["macro_f1"], 4),
                "micro_f1": round(metrics["micro_f1"], 4),
                "duplicate_fraction": round(degenerate_metrics([r.text for r in reports])["duplicate_fraction"], 4),
            }
            print(name, mode, json.dumps(row[mode]), flush=True)
        result["sets"][name] = row
    args.out.mkdir(parents=True, exist_ok=True)
    write_text(args.out / "consistency.json", json.dumps(result, indent=2) + "\n")
    write_chart(result, args.out / "consistency.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
