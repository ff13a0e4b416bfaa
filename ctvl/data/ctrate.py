"""CT-RATE layout and CSV conventions: volume names, CSV discovery, metadata parsing, HU checks.

CT-RATE (Hamamci et al., Hugging Face ``ibrahimhamamci/CT-RATE``) stores volumes as
``{split}/{split}_{pid}/{split}_{pid}_{scan}/{split}_{pid}_{scan}_{recon}.nii.gz`` and keys every
CSV row by ``VolumeName`` (the file name). Its CSVs have changed names over releases
(``train_reports.csv``, ``validation_reports.csv``, ``dataset_radiology_text_reports_train_reports.csv``,
``train_predicted_labels.csv``, ``valid_predicted_labels.csv``, ``train_metadata.csv`` ...), so
CSVs are recognised by their header columns, not their names. See ``data_cards/ct-rate.md``.
"""

from __future__ import annotations

import ast
import csv
import re
import sys
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path

import numpy as np

from ctvl.data.labels import CTRATE_LABELS
from ctvl.io.volume import Volume

VOLUME_RE = re.compile(r"^(?P<split>[A-Za-z]+)_(?P<pid>\d+)_(?P<scan>[A-Za-z]+)_(?P<recon>\d+)\.nii(?:\.gz)?$")
REPORT_COLUMNS = ("Findings_EN", "Impressions_EN")
METADATA_COLUMNS = ("RescaleSlope", "RescaleIntercept", "XYSpacing", "ZSpacing")
CSV_KINDS = ("reports", "labels", "metadata")
HU_LOW_RANGE = (-1300.0, -500.0)  # where the lowest 0.5 % of a chest CT in HU falls (air, lung)


def volume_key(name: str) -> str:
    """``VolumeName`` without the ``.nii.gz``/``.nii`` suffix (CSV rows may carry either form)."""
    name = name.strip()
    for suffix in (".nii.gz", ".nii"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def parse_volume_name(name: str) -> dict[str, str] | None:
    """``"valid_43_a_2.nii.gz"`` → ``{"split": "valid", "pid": "43", "scan": "a", "recon": "2"}``, else None."""
    m = VOLUME_RE.match(name)
    return m.groupdict() if m else None


def find_volumes(root: Path) -> tuple[dict[str, Path], list[Path], dict[str, list[Path]]]:
    """Every CT-RATE-named NIfTI under ``root``.

    Returns:
        (volumes: key → path, other NIfTI files that do not follow the naming, duplicates: key → paths).
    """
    volumes: dict[str, Path] = {}
    others: list[Path] = []
    dupes: dict[str, list[Path]] = {}
    for path in sorted(_walk(root, (".nii.gz", ".nii"))):
        if parse_volume_name(path.name) is None:
            others.append(path)
            continue
        key = volume_key(path.name)
        if key in volumes:
            dupes.setdefault(key, [volumes[key]]).append(path)
        else:
            volumes[key] = path
    return volumes, others, dupes


def _walk(root: Path, suffixes: tuple[str, ...]) -> Iterable[Path]:
    """Files under ``root`` ending in ``suffixes``, skipping hidden folders (caches, .git)."""
    for path in root.rglob("*"):
        if any(part.startswith(".") for part in path.relative_to(root).parts[:-1]):
            continue
        if path.name.endswith(suffixes) and not path.name.startswith(".") and path.is_file():
            yield path


def _header(path: Path) -> list[str]:
    with open(path, newline="", encoding="utf-8-sig") as f:
        return [c.strip() for c in next(csv.reader(f), [])]


def classify_csv(columns: Iterable[str]) -> str | None:
    """ "reports", "labels", "metadata" or None, from a CSV's header columns."""
    cols = set(columns)
    if "VolumeName" not in cols:
        return None
    if cols & set(REPORT_COLUMNS):
        return "reports"
    if set(CTRATE_LABELS) <= cols:
        return "labels"
    if cols & set(METADATA_COLUMNS):
        return "metadata"
    return None


def find_csvs(root: Path) -> tuple[dict[str, list[Path]], list[Path]]:
    """CT-RATE CSVs under ``root``, by kind (recognised by columns); and the CSVs that are none of them."""
    found: dict[str, list[Path]] = {k: [] for k in CSV_KINDS}
    ignored: list[Path] = []
    for path in sorted(_walk(root, (".csv",))):
        try:
            kind = classify_csv(_header(path))
        except (OSError, UnicodeDecodeError, csv.Error):
            kind = None
        (found[kind] if kind else ignored).append(path)
    return found, ignored


def read_rows(paths: Iterable[Path]) -> tuple[dict[str, dict[str, str]], int]:
    """Rows of the CSVs keyed by :func:`volume_key` of ``VolumeName`` (first row wins).

    Returns:
        (rows, number of duplicate rows ignored).
    """
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))  # reports can be long
    rows: dict[str, dict[str, str]] = {}
    dupes = 0
    for path in paths:
        with open(path, newline="", encoding="utf-8-sig") as f:
            for row in csv.DictReader(f):
                name = (row.get("VolumeName") or "").strip()
                if not name:
                    continue
                key = volume_key(name)
                if key in rows:
                    dupes += 1
                    continue
                rows[key] = {str(k).strip(): (v or "") for k, v in row.items() if k is not None}
    return rows, dupes


def labels_from_row(row: dict[str, str]) -> np.ndarray:
    """(18,) float32 in CT-RATE label order; empty or unparsable cells become NaN."""
    out = np.full(len(CTRATE_LABELS), np.nan, dtype=np.float32)
    for i, name in enumerate(CTRATE_LABELS):
        try:
            out[i] = float(row.get(name, ""))
        except ValueError:
            pass
    return out


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return value if np.isfinite(value) else None


def parse_metadata(row: dict[str, str]) -> dict[str, object]:
    """Typed CT-RATE metadata: RescaleSlope/RescaleIntercept/ZSpacing floats, XYSpacing (row, col) tuple.

    ``XYSpacing`` is a string like ``"[0.75, 0.75]"``. Unparsable values become None; other columns
    are kept as strings.
    """
    out: dict[str, object] = {k: v for k, v in row.items() if k != "VolumeName"}
    for key in ("RescaleSlope", "RescaleIntercept", "ZSpacing"):
        if key in row:
            out[key] = _number(row[key])
    if "XYSpacing" in row:
        xy = None
        try:
            value = ast.literal_eval(row["XYSpacing"].strip())
            pair = value if isinstance(value, (list, tuple)) else (value, value)
            if len(pair) == 2 and all(_number(v) for v in pair):
                xy = (float(pair[0]), float(pair[1]))
        except (ValueError, SyntaxError, TypeError):
            xy = None
        out["XYSpacing"] = xy
    return out


def hu_low(data: np.ndarray) -> float | None:
    """0.5th percentile of a strided sample, ignoring padding far below air (−2048, −3024, ...)."""
    step = max(1, int(round((data.size / 2_000_000) ** (1 / 3))))
    sample = np.asarray(data[::step, ::step, ::step], dtype=np.float32).ravel()
    sample = sample[sample > -1500.0]
    return float(np.percentile(sample, 0.5)) if sample.size else None


def looks_like_hu(data: np.ndarray) -> bool:
    """True when a chest CT's lowest values sit at air/lung (−1300…−500), i.e. the data are HU."""
    low = hu_low(data)
    return low is not None and HU_LOW_RANGE[0] <= low <= HU_LOW_RANGE[1]


def resolve_rescale(volume: Volume, metadata: dict[str, object] | None) -> Volume:
    """Apply the metadata CSV's slope/intercept only when the volume is not HU yet.

    CT-RATE v2 volumes are already HU: re-applying ``RescaleIntercept`` (−1024, or −8192 on some
    Siemens scans) would rescale twice. So the CSV values are used only when the header applied no
    rescale, the data do not look like HU, and the rescaled data do. Every decision is recorded in
    ``volume.meta.extra["ctrate_rescale"]``; a surprising one also as a warning.
    """
    meta = replace(volume.meta, warnings=list(volume.meta.warnings), extra=dict(volume.meta.extra))
    slope = (metadata or {}).get("RescaleSlope")
    inter = (metadata or {}).get("RescaleIntercept")
    header_scaled = meta.rescale_slope != 1.0 or meta.rescale_intercept != 0.0
    if looks_like_hu(volume.data):
        done = f" (slope {meta.rescale_slope:g}, intercept {meta.rescale_intercept:g} applied on read)"
        done = done if header_scaled else ""
        meta.extra["ctrate_rescale"] = "not applied again: data already in HU" + done
        return replace(volume, meta=meta)
    if header_scaled or slope is None or inter is None:
        why = "a rescale was already applied on read" if header_scaled else "no slope/intercept in the metadata CSV"
        meta.extra["ctrate_rescale"] = f"not applied: {why}"
        meta.warnings.append("values do not look like HU (no air near -1000) and no metadata rescale fixes them")
        return replace(volume, meta=meta)
    candidate = volume.data * np.float32(slope) + np.float32(inter)
    if looks_like_hu(candidate):
        meta.rescale_slope, meta.rescale_intercept = float(slope), float(inter)  # type: ignore[arg-type]
        meta.extra["ctrate_rescale"] = f"applied metadata CSV slope {slope:g}, intercept {inter:g}"
        meta.warnings.append(f"header had no rescale; applied the metadata CSV slope {slope:g}, intercept {inter:g}")
        return replace(volume, data=candidate.astype(np.float32), meta=meta)
    meta.extra["ctrate_rescale"] = "not applied: the metadata rescale would not give HU either"
    meta.warnings.append(
        f"values do not look like HU, with or without the metadata rescale (slope {slope:g}, intercept {inter:g})"
    )
    return replace(volume, meta=meta)


def resolve_spacing(volume: Volume, metadata: dict[str, object] | None, tolerance: float = 0.05) -> Volume:
    """Use the CSV's XYSpacing/ZSpacing when the header carries none (unit spacing); warn on a mismatch.

    Assumes the CT-RATE storage: axes (I, J) in-plane, K along the slices. A header that states a
    spacing is trusted over the CSV (the mismatch is reported in ``meta.warnings``).
    """
    xy = (metadata or {}).get("XYSpacing")
    z = (metadata or {}).get("ZSpacing")
    if not xy or not z:
        return volume
    csv_spacing = np.array([xy[1], xy[0], z], dtype=np.float64)  # type: ignore[index]  # (col, row) → (I, J)
    header = np.array(volume.spacing)
    if np.allclose(header, csv_spacing, rtol=tolerance):
        return volume
    meta = replace(volume.meta, warnings=list(volume.meta.warnings), extra=dict(volume.meta.extra))
    if np.allclose(header, 1.0):
        affine = volume.affine.copy()
        affine[:3, :3] = affine[:3, :3] / header * csv_spacing
        meta.warnings.append(f"header spacing is 1 x 1 x 1 mm; used the metadata CSV spacing {_mm(csv_spacing)}")
        return replace(volume, affine=affine, meta=meta)
    meta.warnings.append(f"header spacing {_mm(header)} differs from the CSV's {_mm(csv_spacing)}; kept the header")
    return replace(volume, meta=meta)


def _mm(values: np.ndarray) -> str:
    return " x ".join(f"{v:g}" for v in np.round(values, 4)) + " mm"
