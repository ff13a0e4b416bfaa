"""Datasets for CT-RATE-layout folders (real CT-RATE or the ctvl phantom).

:func:`scan_ctrate` indexes a folder: every ``{split}_{pid}_{scan}_{recon}.nii.gz`` volume, joined by
``VolumeName`` with the reports, labels and metadata CSVs found under the folder (recognised by their
columns, whatever their file names). :class:`CTRateDataset` turns an index into a torch Dataset of
preprocessed tensors, caching each preprocessed volume on disk so later epochs never re-read NIfTI.

Example:
    >>> index = scan_ctrate("data/phantom", split="train")          # doctest: +SKIP
    >>> print(index.summary())                                       # doctest: +SKIP
    >>> ds = CTRateDataset(index, PreprocessSpec.cpu(), cache_dir="data/phantom/.cache")  # doctest: +SKIP
    >>> ds[0]["image"].shape                                         # doctest: +SKIP
    torch.Size([1, 33, 64, 64])
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from ctvl.data import ctrate
from ctvl.data.cache import TensorCache, file_key
from ctvl.data.labels import NUM_LABELS
from ctvl.data.transforms import PreprocessSpec
from ctvl.errors import InputError
from ctvl.io import read_volume
from ctvl.io.volume import Volume

Reader = Callable[[Path], Volume]
PATTERN = "{split}_{pid}_{scan}_{recon}.nii.gz"


@dataclass
class CTRateRecord:
    """One volume of a CT-RATE-layout folder and what the CSVs say about it.

    Attributes:
        volume_name: CSV key, e.g. ``"valid_43_a_2.nii.gz"``.
        path: the NIfTI file.
        split, patient, scan, recon: parsed from the name (``"valid"``, ``"valid_43"``, ``"a"``, 2).
        findings, impression: report text ("" when the reports CSV has no row or no reports CSV exists).
        labels: (18,) float32 in ``CTRATE_LABELS`` order; NaN when there is no labels row.
        metadata: parsed metadata row (see :func:`ctvl.data.ctrate.parse_metadata`), {} if none.
    """

    volume_name: str
    path: Path
    split: str
    patient: str
    scan: str
    recon: int
    findings: str = ""
    impression: str = ""
    labels: np.ndarray = field(default_factory=lambda: np.full(NUM_LABELS, np.nan, np.float32))
    metadata: dict[str, object] = field(default_factory=dict)

    @property
    def has_labels(self) -> bool:
        return bool(np.isfinite(self.labels).all())

    @property
    def report(self) -> str:
        """Findings and impression as one text."""
        return " ".join(t for t in (self.findings.strip(), self.impression.strip()) if t)


@dataclass
class CTRateIndex:
    """The volumes of a CT-RATE-layout folder joined with its CSVs.

    Attributes:
        root: the folder scanned.
        records: one per volume, sorted by split, patient number, scan, reconstruction.
        csvs: CSV files used, by kind ("reports", "labels", "metadata").
        ignored_csvs: CSVs that are none of the three kinds.
        other_nifti: NIfTI files whose names do not follow the CT-RATE pattern (not used).
        rows_without_volume: per kind, CSV rows with no volume on disk (normal for a partial download).
    """

    root: Path
    records: list[CTRateRecord]
    csvs: dict[str, list[Path]]
    ignored_csvs: list[Path] = field(default_factory=list)
    other_nifti: list[Path] = field(default_factory=list)
    rows_without_volume: dict[str, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.records)

    @property
    def splits(self) -> list[str]:
        return sorted({r.split for r in self.records})

    @property
    def missing(self) -> list[str]:
        """CSV kinds not found under the folder."""
        return [k for k in ctrate.CSV_KINDS if not self.csvs.get(k)]

    def split(self, name: str) -> CTRateIndex:
        """The records of one split ("train", "valid", ...); InputError if it has none."""
        records = [r for r in self.records if r.split == name]
        if not records:
            found = ", ".join(self.splits) or "none"
            raise InputError(f"no volumes of split {name!r}; splits found: {found}", path=self.root)
        return replace(self, records=records)

    def summary(self) -> str:
        """Human-readable account of what was found and what is missing."""
        counts = ", ".join(f"{s}: {sum(r.split == s for r in self.records)}" for s in self.splits)
        lines = [f"{self.root}: {len(self.records)} volumes ({counts})"]
        for kind in ctrate.CSV_KINDS:
            files = self.csvs.get(kind) or []
            if files:
                orphans = self.rows_without_volume.get(kind, 0)
                extra = f"; {orphans} rows without a volume" if orphans else ""
                lines.append(f"  {kind}: {', '.join(str(p.relative_to(self.root)) for p in files)}{extra}")
            else:
                lines.append(f"  {kind}: MISSING (no CSV with VolumeName and {_kind_columns(kind)})")
        if self.ignored_csvs:
            lines.append(f"  ignored CSVs: {', '.join(p.name for p in self.ignored_csvs[:5])}")
        if self.other_nifti:
            lines.append(f"  {len(self.other_nifti)} NIfTI files not named {PATTERN} were skipped")
        return "\n".join(lines)


def _kind_columns(kind: str) -> str:
    return {
        "reports": "Findings_EN/Impressions_EN",
        "labels": "the 18 CT-RATE label columns",
        "metadata": "RescaleSlope/XYSpacing/ZSpacing",
    }[kind]


def _few(names: Sequence[str], n: int = 5) -> str:
    shown = ", ".join(names[:n])
    return shown + (f" (+{len(names) - n} more)" if len(names) > n else "")


def scan_ctrate(
    root: str | Path, split: str | None = None, require: Sequence[str] = (), on_missing_row: str = "error"
) -> CTRateIndex:
    """Index a CT-RATE-layout folder.

    Args:
        root: folder holding the split folders and the CSVs (anywhere below it).
        split: keep only this split ("train", "valid", ...); None keeps all.
        require: CSV kinds that must exist ("reports", "labels", "metadata").
        on_missing_row: when a CSV of some kind exists but has no row for a volume: "error" (InputError
            listing a few) or "drop" (skip those volumes).
    Returns:
        The index. CSV rows without a volume are counted, not an error (partial downloads are normal),
        unless no row at all matches a volume.
    """
    root = Path(root)
    if on_missing_row not in ("error", "drop"):
        raise ValueError(f"on_missing_row must be 'error' or 'drop', got {on_missing_row!r}")
    if not root.is_dir():
        raise InputError("not a folder; pass the CT-RATE-layout dataset folder", path=root)
    volumes, others, dupes = ctrate.find_volumes(root)
    if dupes:
        key, paths = next(iter(dupes.items()))
        where = _few([str(p) for p in paths], 2)
        raise InputError(f"{len(dupes)} volume names occur twice, e.g. {key} at {where}; keep one copy", path=root)
    if split is not None:
        volumes = {k: p for k, p in volumes.items() if k.split("_", 1)[0] == split}
    if not volumes:
        hint = f"; {len(others)} other NIfTI files, e.g. {others[0].name}" if others else ""
        where = f" of split {split!r}" if split else ""
        raise InputError(f"no CT-RATE-layout volumes{where} ({PATTERN}) found{hint}", path=root)
    csvs, ignored = ctrate.find_csvs(root)
    absent = [k for k in require if not csvs.get(k)]
    if absent:
        wanted = "; ".join(_kind_columns(k) for k in absent)
        raise InputError(f"no {' or '.join(absent)} CSV found (looked for VolumeName + {wanted})", path=root)
    tables: dict[str, dict[str, dict[str, str]]] = {}
    unmatched: dict[str, int] = {}
    keep = set(volumes)
    for kind, files in csvs.items():
        if not files:
            continue
        rows, _ = ctrate.read_rows(files)
        if split is not None:
            rows = {k: v for k, v in rows.items() if k.split("_", 1)[0] == split}
        matched = set(rows) & set(volumes)
        if rows and not matched:
            raise InputError(
                f"no {kind} CSV row matches a volume: rows name e.g. {_few(sorted(rows), 3)}, volumes are e.g. "
                f"{_few(sorted(volumes), 3)} ({', '.join(p.name for p in files)})",
                path=root,
            )
        lacking = sorted(set(volumes) - set(rows))
        if lacking and on_missing_row == "error":
            raise InputError(
                f"{len(lacking)} volumes have no row in the {kind} CSV ({', '.join(p.name for p in files)}): "
                f"{_few(lacking)}; "
                "fix the CSV or pass on_missing_row='drop'",
                path=root,
            )
        if on_missing_row == "drop":
            keep &= set(rows)
        tables[kind] = rows
        unmatched[kind] = len(set(rows) - set(volumes))
    records = [_record(key, volumes[key], tables) for key in sorted(keep, key=_natural)]
    if not records:
        raise InputError("no volume has a row in every CSV found", path=root)
    return CTRateIndex(root, records, csvs, ignored, others, unmatched)


def _natural(key: str) -> tuple:
    """Sort key: ``train_2_a_1`` before ``train_10_a_1``."""
    return tuple(int(t) if t.isdigit() else t for t in key.split("_"))


def _record(key: str, path: Path, tables: dict[str, dict[str, dict[str, str]]]) -> CTRateRecord:
    parts = ctrate.parse_volume_name(path.name)
    if parts is None:
        raise InputError(f"{path.name} is not a CT-RATE volume name (split_patient_scan_recon.nii.gz)", path=path)
    rec = CTRateRecord(
        volume_name=path.name,
        path=path,
        split=parts["split"],
        patient=f"{parts['split']}_{parts['pid']}",
        scan=parts["scan"],
        recon=int(parts["recon"]),
    )
    if (row := tables.get("reports", {}).get(key)) is not None:
        rec.findings = row.get("Findings_EN", "").strip()
        rec.impression = row.get("Impressions_EN", "").strip()
    if (row := tables.get("labels", {}).get(key)) is not None:
        rec.labels = ctrate.labels_from_row(row)
    if (row := tables.get("metadata", {}).get(key)) is not None:
        rec.metadata = ctrate.parse_metadata(row)
    return rec


def load_record_volume(record: CTRateRecord, reader: Reader | None = None) -> Volume:
    """Read a record's volume in HU, then apply the CT-RATE slope/spacing rules.

    The default reader is ``ctvl.io.read_volume(path, metadata=row)``: it applies the metadata CSV's
    slope/intercept only when the header has none and the stored values are not HU yet (CT-RATE v2 is
    already HU). A custom ``reader(path)`` gets the same rule afterwards from
    :func:`ctvl.data.ctrate.resolve_rescale`. The CSV spacing is used only when the header has none.
    """
    if reader is None:
        slope, inter = record.metadata.get("RescaleSlope"), record.metadata.get("RescaleIntercept")
        row = {"RescaleSlope": slope, "RescaleIntercept": inter} if slope is not None and inter is not None else None
        volume = read_volume(record.path, metadata=row)
    else:
        volume = reader(record.path)
    volume = ctrate.resolve_rescale(volume, record.metadata)
    return ctrate.resolve_spacing(volume, record.metadata)


class CTRateDataset(Dataset):
    """Preprocessed CT-RATE-layout volumes with their labels and reports.

    Args:
        source: a folder (scanned with :func:`scan_ctrate`) or a :class:`CTRateIndex`.
        spec: preprocessing; every item's image has the spec's model layout.
        split: keep only this split (when ``source`` is a folder or an index).
        cache_dir: where preprocessed volumes are cached (safetensors keyed by file path, mtime and
            ``spec.hash()``); None disables the cache.
        reader: volume reader (default ``ctvl.io.read_volume``).
        require: CSV kinds that must exist (passed to :func:`scan_ctrate`).

    Items are dicts: ``image`` float32 (1, T, H, W) in ``spec.out_range``; ``labels`` float32 (18,)
    (NaN without a labels CSV); ``findings``, ``impression``, ``volume_name``, ``path`` strings.
    """

    def __init__(
        self,
        *,
        source: str | Path | CTRateIndex,
        spec: PreprocessSpec,
        split: str | None = None,
        cache_dir: str | Path | None = None,
        reader: Reader | None = None,
        require: Sequence[str] = (),
    ) -> None:
        index = source if isinstance(source, CTRateIndex) else scan_ctrate(source, split=split, require=require)
        if isinstance(source, CTRateIndex) and split is not None:
            index = index.split(split)
        self.index = index
        self.spec = spec
        self.reader = reader
        self.cache = TensorCache(root=cache_dir) if cache_dir is not None else None

    @property
    def records(self) -> list[CTRateRecord]:
        return self.index.records

    def __len__(self) -> int:
        return len(self.index.records)

    def image(self, i: int) -> torch.Tensor:
        """Preprocessed volume ``i``: (1, T, H, W) float32, from the cache when possible."""
        record = self.index.records[i]
        if self.cache is None:
            return self.spec.apply(load_record_volume(record, self.reader))
        key = file_key(record.path, "preprocess", self.spec.hash())
        tensors = self.cache.get_or_create(
            key,
            lambda: {"image": self.spec.apply(load_record_volume(record, self.reader))},
            metadata={"source": str(record.path), "spec": self.spec.to_json()},
        )
        return tensors["image"]

    def __getitem__(self, i: int) -> dict[str, object]:
        if not -len(self) <= i < len(self):
            raise IndexError(i)
        record = self.index.records[i]
        return {
            "image": self.image(i),  # (1, T, H, W)
            "labels": torch.from_numpy(record.labels.copy()),  # (18,)
            "findings": record.findings,
            "impression": record.impression,
            "volume_name": record.volume_name,
            "path": str(record.path),
        }
