"""Read report and label CSV files (CT-RATE layout or plain) and write label CSVs.

Column auto-detection, in order:

* id: ``VolumeName`` (CT-RATE reports/labels), ``AccessionNo`` (CT-RATE manual annotations),
  then ``id``, ``scan_id``, ``case_id``, ``study_id``;
* text: ``report_text``, ``report``, ``generated_report``, ``prediction``, ``text``; else CT-RATE's
  ``Findings_EN`` (joined with ``Impressions_EN`` unless only the findings are asked for).

A text column option may name several columns separated by commas; they are joined with a space.
"""

from __future__ import annotations

import csv
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ctvl.atomic import atomic_file
from ctvl.data.labels import CTRATE_LABELS
from ctvl.errors import InputError

ID_COLUMNS: tuple[str, ...] = ("VolumeName", "AccessionNo", "id", "scan_id", "case_id", "study_id")
TEXT_COLUMNS: tuple[str, ...] = ("report_text", "report", "generated_report", "prediction", "text")
FINDINGS_COLUMN = "Findings_EN"
IMPRESSION_COLUMN = "Impressions_EN"

csv.field_size_limit(min(sys.maxsize, 2**31 - 1))


@dataclass(frozen=True)
class ReportTable:
    """Reports read from a CSV file.

    Attributes:
        path: the file.
        ids: N report ids (strings, unique).
        texts: N report texts (empty string for empty cells).
        id_column: the id column used.
        text_columns: the text column(s) used, joined in this order.
    """

    path: Path
    ids: list[str]
    texts: list[str]
    id_column: str
    text_columns: tuple[str, ...]


def _read_rows(path: str | Path) -> tuple[list[str], list[dict[str, str]]]:
    path = Path(path)
    if not path.is_file():
        raise InputError("file not found; give the path of a CSV file", path=path)
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            rows = list(reader)
            header = list(reader.fieldnames or [])
    except (UnicodeDecodeError, csv.Error) as exc:
        raise InputError(f"not a readable UTF-8 CSV file ({exc})", path=path) from exc
    if not header:
        raise InputError("empty CSV file (no header row)", path=path)
    return header, rows


def _pick_id_column(header: Sequence[str], id_column: str | None, path: Path) -> str:
    if id_column is not None:
        if id_column not in header:
            raise InputError(f"no id column {id_column!r}; columns are: {', '.join(header)}", path=path)
        return id_column
    for name in ID_COLUMNS:
        if name in header:
            return name
    raise InputError(
        f"no id column found (looked for {', '.join(ID_COLUMNS)}); columns are: {', '.join(header)}; pass --id-column",
        path=path,
    )


def _pick_text_columns(
    header: Sequence[str], text_column: str | None, path: Path, findings_only: bool
) -> tuple[str, ...]:
    if text_column is not None:
        cols = tuple(c.strip() for c in text_column.split(",") if c.strip())
        missing = [c for c in cols if c not in header]
        if not cols or missing:
            raise InputError(
                f"no text column {', '.join(missing) or repr(text_column)}; columns are: {', '.join(header)}",
                path=path,
            )
        return cols
    for name in TEXT_COLUMNS:
        if name in header:
            return (name,)
    if FINDINGS_COLUMN in header:
        if IMPRESSION_COLUMN in header and not findings_only:
            return (FINDINGS_COLUMN, IMPRESSION_COLUMN)
        return (FINDINGS_COLUMN,)
    raise InputError(
        f"no report text column found (looked for {', '.join(TEXT_COLUMNS + (FINDINGS_COLUMN,))}); "
        f"columns are: {', '.join(header)}; pass --text-column",
        path=path,
    )


def _check_unique(ids: Sequence[str], path: Path) -> None:
    seen: set[str] = set()
    dups: list[str] = []
    for i in ids:
        if i in seen and i not in dups:
            dups.append(i)
        seen.add(i)
    if dups:
        raise InputError(f"{len(dups)} duplicate id(s), e.g. {', '.join(dups[:5])}; ids must be unique", path=path)
    if any(not i for i in ids):
        raise InputError("some rows have an empty id", path=path)


def read_reports(
    path: str | Path, text_column: str | None = None, id_column: str | None = None, findings_only: bool = False
) -> ReportTable:
    """Read reports from a CSV file.

    Args:
        path: CSV file with a header row.
        text_column: text column name(s), comma-separated; None to auto-detect (module docstring).
        id_column: id column name; None to auto-detect.
        findings_only: when auto-detecting CT-RATE columns, use ``Findings_EN`` alone instead of
            findings + impression.

    Returns:
        The :class:`ReportTable`.
    """
    path = Path(path)
    header, rows = _read_rows(path)
    id_col = _pick_id_column(header, id_column, path)
    text_cols = _pick_text_columns(header, text_column, path, findings_only)
    ids = [(row.get(id_col) or "").strip() for row in rows]
    _check_unique(ids, path)
    texts = [" ".join((row.get(c) or "").strip() for c in text_cols).strip() for row in rows]
    return ReportTable(path, ids, texts, id_col, text_cols)


def read_labels(path: str | Path, id_column: str | None = None) -> tuple[list[str], np.ndarray, str]:
    """Read a label CSV: an id column plus the 18 CT-RATE label columns (0/1).

    Args:
        path: CSV file (CT-RATE's ``*_predicted_labels.csv`` or a ``ctvl label`` output).
        id_column: id column name; None to auto-detect.

    Returns:
        ``(ids, labels, id_column)`` with labels an (N, 18) int64 array in CT-RATE order.
    """
    path = Path(path)
    header, rows = _read_rows(path)
    id_col = _pick_id_column(header, id_column, path)
    missing = [name for name in CTRATE_LABELS if name not in header]
    if missing:
        raise InputError(f"missing label column(s): {', '.join(missing)}", path=path)
    ids = [(row.get(id_col) or "").strip() for row in rows]
    _check_unique(ids, path)
    out = np.zeros((len(rows), len(CTRATE_LABELS)), dtype=np.int64)
    for i, row in enumerate(rows):
        for j, name in enumerate(CTRATE_LABELS):
            raw = (row.get(name) or "").strip()
            try:
                value = float(raw)
            except ValueError:
                value = float("nan")
            if value not in (0.0, 1.0):
                raise InputError(f"row {i + 2}, column {name!r}: expected 0 or 1, got {raw!r}", path=path)
            out[i, j] = int(value)
    return ids, out, id_col


def write_labels(path: str | Path, ids: Sequence[str], labels: np.ndarray, id_column: str = "VolumeName") -> Path:
    """Write an id column plus the 18 CT-RATE label columns (0/1) as CSV, atomically.

    Args:
        path: output CSV path (parent folders are created).
        ids: N ids.
        labels: (N, 18) 0/1 array in CT-RATE order.
        id_column: name of the id column.

    Returns:
        The written path.
    """
    path = Path(path)
    labels = np.asarray(labels)
    if labels.shape != (len(ids), len(CTRATE_LABELS)):
        raise InputError(f"labels must have shape ({len(ids)}, {len(CTRATE_LABELS)}), got {labels.shape}")
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow([id_column, *CTRATE_LABELS])
        for rid, row in zip(ids, labels):
            writer.writerow([rid, *(int(v) for v in row)])
    return path
