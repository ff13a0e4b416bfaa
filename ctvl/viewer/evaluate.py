"""The Evaluate tab's work: the same call as ``ctvl eval reports``, packed for a browser.

:func:`run_evaluation` calls :func:`ctvl.eval.reports.evaluate_report_files` (what the CLI calls),
then turns ``metrics.json`` into two tables and zips every output for download.
"""

from __future__ import annotations

import shutil
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

from ctvl.data.labels import CTRATE_LABELS
from ctvl.errors import InputError

SUMMARY_HEADERS = ["metric", "value"]
PER_LABEL_HEADERS = ["label", "precision", "recall", "f1", "support", "predicted"]
ARCHIVE_NAME = "ctvl_eval_results.zip"


@dataclass
class EvaluationResult:
    """Outputs of one evaluation.

    Attributes:
        metrics: the metrics dictionary (as in ``metrics.json``).
        summary_rows: [metric, value] rows: clinical macro/micro/weighted P/R/F1, NLG, duplicates.
        per_label_rows: one row per CT-RATE label (see ``PER_LABEL_HEADERS``).
        chart: the per-label F1 bar chart (PNG).
        metrics_json: ``metrics.json``.
        archive: zip of every output file.
    """

    metrics: dict
    summary_rows: list[list]
    per_label_rows: list[list]
    chart: Path
    metrics_json: Path
    archive: Path


def _value(v: float | None, digits: int = 4) -> float | str:
    return "skipped" if v is None else round(float(v), digits)


def summary_rows(metrics: dict) -> list[list]:
    """Headline numbers of a metrics dictionary as [metric, value] rows."""
    c, n, d = metrics["clinical"], metrics["nlg"], metrics["degenerate"]
    rows: list[list] = [["reports", metrics["n_reports"]], ["ground truth", c.get("ground_truth", "")]]
    for avg in ("macro", "micro", "weighted"):
        for part in ("precision", "recall", "f1"):
            rows.append([f"clinical {avg} {part}", _value(c[f"{avg}_{part}"])])
    for key, name in (
        ("bleu_1", "BLEU-1"),
        ("bleu_2", "BLEU-2"),
        ("bleu_3", "BLEU-3"),
        ("bleu_4", "BLEU-4"),
        ("meteor", "METEOR"),
        ("rouge_l", "ROUGE-L"),
        ("cider", "CIDEr"),
    ):
        rows.append([name, _value(n.get(key))])
    rows.append(["NLG reference text", n.get("reference", "")])
    rows.append(["duplicate report fraction", _value(d["duplicate_fraction"])])
    rows.append(["distinct-2", _value(d["distinct_2"])])
    return rows


def per_label_rows(metrics: dict) -> list[list]:
    """Per-label precision/recall/F1/support rows in CT-RATE order."""
    per = metrics["clinical"]["per_label"]
    return [
        [
            name,
            _value(per[name]["precision"], 3),
            _value(per[name]["recall"], 3),
            _value(per[name]["f1"], 3),
            int(per[name]["support"]),
            int(per[name]["predicted"]),
        ]
        for name in CTRATE_LABELS
    ]


def zip_folder(folder: Path, archive: Path) -> Path:
    """Zip every file under ``folder`` (relative names) into ``archive`` (outside ``folder``)."""
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                zf.write(path, path.relative_to(folder).as_posix())
    return archive


def run_evaluation(
    pred_csv: str | Path | None,
    ref_csv: str | Path | None,
    labels_csv: str | Path | None,
    work_dir: str | Path,
    meteor: bool | None = None,
) -> EvaluationResult:
    """Evaluate uploaded report CSVs like ``ctvl eval reports --pred --ref [--labels] --out``.

    Args:
        pred_csv: generated reports (id + text column).
        ref_csv: reference reports (e.g. CT-RATE ``validation_reports.csv``).
        labels_csv: optional ground-truth labels (id + 18 label columns); None labels the references.
        work_dir: an empty folder for this evaluation's outputs.
        meteor: compute METEOR (needs Java); None when Java is available, as the CLI does.
    Returns:
        :class:`EvaluationResult`.
    """
    from ctvl.eval.reports import evaluate_report_files

    if pred_csv is None:
        raise InputError("upload the predictions CSV (an id column and the generated report text)")
    if ref_csv is None:
        raise InputError("upload the references CSV (an id column and the reference report text)")
    work_dir = Path(work_dir)
    out = work_dir / "results"
    metrics = evaluate_report_files(pred_csv, ref_csv, out, labels_csv=labels_csv, meteor=meteor)
    archive = zip_folder(out, work_dir / ARCHIVE_NAME)
    return EvaluationResult(
        metrics, summary_rows(metrics), per_label_rows(metrics), out / "per_label_f1.png", out / "metrics.json", archive
    )


class WorkDirs:
    """Per-request output folders under one temporary root, pruned after ``ttl_s`` seconds.

    Gradio copies returned files into its own cache after the handler returns, so a folder must
    outlive the request briefly; pruning on each :meth:`new` bounds the disk a long-running app uses.
    """

    def __init__(self, *, root: str | Path | None = None, ttl_s: float = 3600.0) -> None:
        self._root = Path(root) if root is not None else None
        self.ttl_s = ttl_s

    @property
    def root(self) -> Path:
        """The folder holding every request's folder (a new temporary folder unless given; made on first use)."""
        if self._root is None:
            self._root = Path(tempfile.mkdtemp(prefix="ctvl-app-"))
        self._root.mkdir(parents=True, exist_ok=True)
        return self._root

    def new(self, prefix: str) -> Path:
        """A fresh empty folder; folders older than ``ttl_s`` are removed first."""
        now = time.time()
        for old in self.root.iterdir():
            try:
                if old.is_dir() and now - old.stat().st_mtime > self.ttl_s:
                    shutil.rmtree(old, ignore_errors=True)
            except OSError:
                continue  # removed by a concurrent request
        return Path(tempfile.mkdtemp(prefix=prefix, dir=self.root))

    def cleanup(self) -> None:
        """Remove the root and everything in it."""
        if self._root is not None:
            shutil.rmtree(self._root, ignore_errors=True)
