"""``ctvl eval run``: generate a report for every scan of a CT-RATE-layout split, then evaluate them.

Resumable and parallel:

* every finished scan is appended at once to ``OUT/predictions/rank-R.jsonl`` (one JSON row: id,
  findings, impression, warnings, seconds, or the error); a rerun skips scans that already have a row
  without error, so an interrupted run continues where it stopped (scans that failed are retried);
* under ``torchrun`` each rank takes every ``world_size``-th remaining scan; rank 0 waits for the others,
  merges the rows and evaluates;
* a scan that cannot be read or encoded gets an error row (``errors.csv``) and the batch goes on.

Outputs in ``OUT``: ``predictions.csv`` (``VolumeName, Findings_EN, Impressions_EN, report_text``),
``errors.csv``, ``run.json`` (model, timing, counts) and what :func:`ctvl.eval.reports.evaluate_reports`
writes (``metrics.json``, ``per_label.csv``, ``per_label_f1.png``, ``pred_labels.csv``, ``summary.md``). The
NLG reference is findings + impression (the generated report has both); the clinical ground truth is the
labels CSV when the dataset has one, else the labeler run on the reference reports.
"""

from __future__ import annotations

import csv
import json
import os
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ctvl.atomic import atomic_file, write_json
from ctvl.data.datasets import load_record_volume, scan_ctrate
from ctvl.errors import CtvlError, InputError
from ctvl.eval.labeler import ReportLabeler
from ctvl.eval.reports import evaluate_reports
from ctvl.report.bundle import load_report_model
from ctvl.report.generate import ReportGenerator
from ctvl.train.distributed import barrier, init_distributed, shutdown

PRED_DIR = "predictions"


@dataclass
class RunResult:
    """What :func:`run_eval` did (on rank 0; other ranks get ``metrics=None``)."""

    out_dir: Path
    generated: int  # scans this call generated (this rank)
    skipped: int  # scans already done by an earlier call
    errors: int  # scans with an error row after merging (rank 0)
    evaluated: int  # reports evaluated (rank 0)
    metrics: dict | None  # the metrics dictionary (rank 0, when at least one report exists)
    seconds: float


def read_rows(pred_dir: Path) -> dict[str, dict[str, Any]]:
    """Merged rows of every ``rank-*.jsonl``: per id, a row without error wins over an error row."""
    rows: dict[str, dict[str, Any]] = {}
    for path in sorted(pred_dir.glob("rank-*.jsonl")):
        with path.open(encoding="utf-8") as fh:
            for line in fh:
                line = line.strip()
                if not line:
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a line cut by a crash mid-write: that scan is simply redone
                key = row.get("VolumeName")
                if not key:
                    continue
                if key not in rows or rows[key].get("error") or not row.get("error"):
                    rows[key] = row
    return rows


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    if isinstance(exc, CtvlError):
        return text
    where = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
    at = f" (at {Path(where.filename).name}:{where.lineno})" if where else ""
    return f"{type(exc).__name__}: {text}{at}"


class _Writer:
    """Appends rows to this rank's JSONL file, flushed and fsynced row by row."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        cut = path.is_file() and path.stat().st_size > 0 and not path.read_bytes().endswith(b"\n")
        self.fh = path.open("a", encoding="utf-8")
        if cut:  # a crash left half a row: end it so the next row starts on its own line
            self.fh.write("\n")

    def write(self, row: dict[str, Any]) -> None:
        self.fh.write(json.dumps(row) + "\n")
        self.fh.flush()
        os.fsync(self.fh.fileno())

    def close(self) -> None:
        self.fh.close()


def _generate_shard(records: Sequence[Any], generator: Any, writer: _Writer, batch_size: int, show: bool) -> int:
    """Generate and write rows for ``records``; returns how many rows were written."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    columns = (TextColumn("reports"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    written = 0
    with Progress(*columns, disable=not show, transient=False) as bar:
        job = bar.add_task("generate", total=len(records))
        for start in range(0, len(records), batch_size):
            chunk = records[start : start + batch_size]
            began = time.perf_counter()
            ready, codes, notes, diagnoses = [], [], [], []
            for rec in chunk:  # read + encode one by one: a bad scan fails alone
                try:
                    volume = load_record_volume(rec)
                    prepared = generator.model_space(volume)  # one resampling for tokens and diagnosis
                    codes.append(generator.encode(volume, prepared))
                    diagnoses.append(generator.diagnose(volume, prepared))
                    notes.append(generator.scan_warnings(volume))
                    ready.append(rec)
                except Exception as exc:  # noqa: BLE001 - recorded per scan, the batch goes on
                    writer.write({"VolumeName": rec.volume_name, "error": _one_line(exc)})
                    written += 1
                    bar.advance(job)
            if not ready:
                continue
            try:
                reports = generator.from_codes(codes, notes, diagnoses)
            except Exception:  # noqa: BLE001 - isolate the failing scan(s)
                reports = []
                for k in range(len(ready)):
                    try:
                        reports.append(generator.from_codes([codes[k]], [notes[k]], [diagnoses[k]])[0])
                    except Exception as exc:  # noqa: BLE001
                        reports.append(exc)
            seconds = (time.perf_counter() - began) / len(chunk)
            for rec, rep in zip(ready, reports):
                if isinstance(rep, Exception):
                    row = {"VolumeName": rec.volume_name, "error": _one_line(rep)}
                else:
                    row = {
                        "VolumeName": rec.volume_name,
                        "findings": rep.findings,
                        "impression": rep.impression,
                        "warnings": rep.warnings,
                        "truncated": rep.truncated,
                        "seconds": round(seconds, 3),
                        "error": None,
                    }
                writer.write(row)
                written += 1
                bar.advance(job)
    return written


def _write_csv(path: Path, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    with atomic_file(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)


def _merge_and_evaluate(
    out: Path, records: Sequence[Any], meteor: bool | None, info: dict[str, Any]
) -> tuple[int, int, dict | None]:
    """Rank 0: merge rows, write predictions/errors CSVs and evaluate. Returns (errors, evaluated, metrics)."""

    rows = read_rows(out / PRED_DIR)
    ok = [r for r in records if r.volume_name in rows and not rows[r.volume_name].get("error")]
    failed = [
        (r.volume_name, rows[r.volume_name]["error"])
        for r in records
        if r.volume_name in rows and rows[r.volume_name].get("error")
    ]
    preds = [rows[r.volume_name] for r in ok]
    _write_csv(
        out / "predictions.csv",
        ["VolumeName", "Findings_EN", "Impressions_EN", "report_text"],
        [
            [
                p["VolumeName"],
                p["findings"],
                p["impression"],
                " ".join(x for x in (p["findings"], p["impression"]) if x),
            ]
            for p in preds
        ],
    )
    _write_csv(out / "errors.csv", ["VolumeName", "error"], failed)
    metrics = None
    if ok:
        refs = [" ".join(x for x in (r.findings, r.impression) if x) for r in ok]
        truth = np.stack([r.labels for r in ok]).astype(np.int64) if all(r.has_labels for r in ok) else None
        inputs = {
            "predictions": str(out / "predictions.csv"),
            "references": info["data"],
            "id_column": "VolumeName",
            "reference_text": "Findings_EN+Impressions_EN",
            "ground_truth": "dataset labels CSV"
            if truth is not None
            else "ctvl labeler on reference Findings_EN+Impressions_EN",
        }
        metrics = evaluate_reports(
            [r.volume_name for r in ok],
            [" ".join(x for x in (p["findings"], p["impression"]) if x) for p in preds],
            refs,
            out,
            ground_truth=truth,
            label_texts=refs,
            meteor=meteor,
            inputs=inputs,
        )
    truncated = sum(bool(p.get("truncated")) for p in preds)
    seconds = [p["seconds"] for p in preds if p.get("seconds") is not None]
    run = {
        **info,
        "scans": len(records),
        "reports": len(ok),
        "errors": len(failed),
        "truncated": truncated,
        "seconds_per_report": float(np.mean(seconds)) if seconds else None,
    }
    write_json(out / "run.json", run)
    return len(failed), len(ok), metrics


def run_eval(
    data: str | Path,
    out_dir: str | Path,
    split: str = "valid",
    model: str | Path | None = None,
    limit: int | None = None,
    batch_size: int = 8,
    num_beams: int | None = None,
    max_new_tokens: int | None = None,
    meteor: bool | None = None,
    progress: bool = True,
) -> RunResult:
    """Generate reports for a split and evaluate them (single process or one torchrun rank).

    Args:
        data: CT-RATE-layout dataset folder (volumes + reports CSV; labels CSV optional).
        out_dir: output folder (reused: finished scans are skipped).
        split: split to evaluate.
        model: report bundle / run folder (None = the bundle shipped with ctvl).
        limit: evaluate only the first N scans of the split.
        batch_size: scans generated together.
        num_beams: 1 = greedy; > 1 = beam search (default: the model's config).
        max_new_tokens: generation length limit (default: the model's config).
        meteor: compute METEOR (None: when Java is available).
        progress: show a progress bar (rank 0).

    Raises:
        InputError: no such dataset/split, no reports CSV, or a bad model bundle.
    """

    began = time.perf_counter()
    if batch_size < 1:
        raise InputError(f"--batch-size must be >= 1, got {batch_size}")
    out = Path(out_dir)
    index = scan_ctrate(data, split=split, require=("reports",), on_missing_row="drop")
    records = index.records[: int(limit)] if limit else index.records
    ctx = init_distributed("cpu")
    try:
        loaded = load_report_model(model)
        generator = ReportGenerator(
            loaded=loaded, labeler=ReportLabeler(), num_beams=num_beams, max_new_tokens=max_new_tokens
        )
        done = {k for k, row in read_rows(out / PRED_DIR).items() if not row.get("error")}
        barrier(ctx)  # every rank has read the same set before any rank writes
        todo = [r for r in records if r.volume_name not in done]
        mine = todo[ctx.rank :: ctx.world_size]
        writer = _Writer(out / PRED_DIR / f"rank-{ctx.rank}.jsonl")
        try:
            generated = _generate_shard(mine, generator, writer, batch_size, progress and ctx.is_main)
        finally:
            writer.close()
        barrier(ctx)
        errors, evaluated, metrics = 0, 0, None
        if ctx.is_main:
            info = {
                "data": str(data),
                "split": split,
                "model": str(loaded.source),
                "world_size": ctx.world_size,
                "num_beams": generator.num_beams,
                "max_new_tokens": generator.max_new_tokens,
                "visual_input": loaded.visual,
                "seconds": round(time.perf_counter() - began, 1),
            }
            errors, evaluated, metrics = _merge_and_evaluate(out, records, meteor, info)
        barrier(ctx)
    finally:
        shutdown(ctx)
    return RunResult(out, generated, len(records) - len(todo), errors, evaluated, metrics, time.perf_counter() - began)
