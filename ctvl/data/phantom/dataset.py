"""Write a phantom dataset in CT-RATE's layout, with reports, labels, metadata and a data card.

Layout of ``out_dir`` (one call writes one split; train and valid can share a folder)::

    {split}/{split}_{pid}/{split}_{pid}_a/{split}_{pid}_a_1.nii.gz   int16 HU volumes
    {split}_reports.csv      VolumeName, Findings_EN, Impressions_EN
    {split}_labels.csv       VolumeName + the 18 CT-RATE labels (0/1), like *_predicted_labels.csv
    {split}_metadata.csv     VolumeName, RescaleSlope, RescaleIntercept, XYSpacing "[sx, sy]", ZSpacing, ...
    phantom_{split}.json     manifest (generator version, seed, n, shape, spacing); written last
    DATA_CARD.md             generated card for the splits present

Everything is written to a hidden staging folder first and moved into place only when the whole
split is done, and the manifest is written last: a crash never leaves a half dataset looking
complete, and an older dataset in the same folder is replaced in one step.
"""

from __future__ import annotations

import csv
import os
import shutil
import time
import zlib
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from ctvl.atomic import atomic_file, replace_dir, write_json
from ctvl.data.labels import CTRATE_LABELS
from ctvl.data.phantom.card import write_card
from ctvl.data.phantom.raster import default_spacing
from ctvl.data.phantom.render import GENERATOR_VERSION, render_case
from ctvl.errors import ConfigError, InputError
from ctvl.io.nifti import write_nifti

SPLITS = ("train", "valid")
METADATA_COLUMNS = (
    "VolumeName",
    "Manufacturer",
    "ManufacturerModelName",
    "SeriesDescription",
    "PatientSex",
    "PatientAge",
    "PatientPosition",
    "ConvolutionKernel",
    "KVP",
    "Rows",
    "Columns",
    "NumberofSlices",
    "XYSpacing",
    "ZSpacing",
    "SliceThickness",
    "RescaleSlope",
    "RescaleIntercept",
    "RescaleType",
    "ImagePositionPatient",
    "ImageOrientationPatient",
    "PhantomSeed",
    "GeneratorVersion",
)


def case_seed(seed: int, split: str, index: int) -> int:
    """Patient seed of case ``index`` (0-based) of ``split`` in a dataset made with ``seed``."""
    ss = np.random.SeedSequence([int(seed), zlib.crc32(split.encode()), int(index)])
    return int(ss.generate_state(1, np.uint32)[0])


def volume_name(split: str, pid: int) -> str:
    """CT-RATE file name of patient ``pid`` (1-based), scan "a", reconstruction 1."""
    return f"{split}_{pid}_a_1.nii.gz"


def volume_path(split: str, pid: int) -> Path:
    """Path of a volume relative to the dataset root."""
    return Path(split) / f"{split}_{pid}" / f"{split}_{pid}_a" / volume_name(split, pid)


def _render_one(task: tuple) -> dict:
    """Worker: render one case, write its NIfTI under the staging root, return its CSV rows."""

    root, split, pid, cseed, shape, spacing = task
    case = render_case(cseed, shape, spacing)
    rel = volume_path(split, pid)
    write_nifti(case.volume, Path(root) / rel, dtype="int16")
    vol = case.volume
    sx, sy, sz = (round(v, 6) for v in vol.spacing)
    first = vol.affine[:3, 3]
    meta = {
        "VolumeName": rel.name,
        "Manufacturer": "ctvl phantom",
        "ManufacturerModelName": f"procedural chest CT v{GENERATOR_VERSION}",
        "SeriesDescription": "CHEST PHANTOM",
        "PatientSex": case.sex,
        "PatientAge": f"{int(case.age):03d}Y",
        "PatientPosition": "HFS",
        "ConvolutionKernel": "STANDARD",
        "KVP": 120,
        "Rows": vol.shape[1],
        "Columns": vol.shape[0],
        "NumberofSlices": vol.shape[2],
        "XYSpacing": f"[{sx}, {sy}]",
        "ZSpacing": sz,
        "SliceThickness": sz,
        "RescaleSlope": 1.0,
        "RescaleIntercept": 0.0,
        "RescaleType": "HU",
        "ImagePositionPatient": f"[{-first[0]:.4f}, {-first[1]:.4f}, {first[2]:.4f}]",  # LPS, as in DICOM
        "ImageOrientationPatient": "[1.0, 0.0, 0.0, 0.0, 1.0, 0.0]",
        "PhantomSeed": cseed,
        "GeneratorVersion": GENERATOR_VERSION,
    }
    return {
        "pid": pid,
        "report": {"VolumeName": rel.name, "Findings_EN": case.findings, "Impressions_EN": case.impression},
        "labels": {"VolumeName": rel.name, **case.labels},
        "metadata": meta,
    }


def _write_csv(path: Path, columns: tuple[str, ...], rows: list[dict]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(columns))
        writer.writeheader()
        writer.writerows(rows)


def _check(
    n: int, split: str, shape, spacing, workers: int
) -> tuple[tuple[int, int, int], tuple[float, float, float] | None]:
    if int(n) < 1:
        raise ConfigError(f"phantom dataset size must be at least 1, got n={n}")
    if split not in SPLITS:
        raise ConfigError(f"unknown split {split!r}; use one of: {', '.join(SPLITS)}")
    shape_t = tuple(int(s) for s in shape)
    if len(shape_t) != 3 or min(shape_t) < 1:
        raise ConfigError(f"phantom shape must be three positive integers, got {tuple(shape)}")
    if spacing is not None:
        spacing = tuple(float(s) for s in spacing)
        if len(spacing) != 3 or min(spacing) <= 0:
            raise ConfigError(f"phantom spacing must be three positive numbers (mm), got {spacing}")
    if workers < 0:
        raise ConfigError(f"--workers must be 0 (auto) or positive, got {workers}")
    return shape_t, spacing  # type: ignore[return-value]


def _iterate(tasks: list[tuple], workers: int):
    if workers <= 1 or len(tasks) == 1:
        for task in tasks:
            yield _render_one(task)
        return
    with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
        yield from pool.map(_render_one, tasks, chunksize=max(1, min(8, len(tasks) // (4 * workers))))


def write_dataset(
    out_dir: str | Path,
    n: int,
    seed: int,
    split: str = "train",
    shape: tuple[int, int, int] = (64, 64, 33),
    spacing: tuple[float, float, float] | None = None,
    workers: int = 1,
    progress: bool = False,
) -> Path:
    """Generate ``n`` phantom scans of one split into ``out_dir`` (CT-RATE layout, see module doc).

    Args:
        out_dir: dataset root (created if missing). An existing split of the same name is replaced.
        n: number of patients (one scan, one reconstruction each).
        seed: dataset seed; patient seeds derive from (seed, split, index).
        split: "train" or "valid".
        shape: (I, J, K) voxels per volume.
        spacing: (sx, sy, sz) mm, or None for the default field of view.
        workers: processes (0 = one per CPU core, at most 8).
        progress: show a rich progress bar on stderr.

    Returns:
        ``out_dir`` as a Path.
    """
    shape, spacing = _check(n, split, shape, spacing, workers)
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise InputError("the phantom output path exists and is not a folder; choose another --out", path=out)
    out.mkdir(parents=True, exist_ok=True)
    workers = workers or min(8, os.cpu_count() or 1)
    staging = out / f".staging-{split}-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    started = time.time()
    tasks = [(str(staging), split, i + 1, case_seed(seed, split, i), shape, spacing) for i in range(int(n))]
    rows: list[dict] = []
    try:
        if progress:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            columns = (TextColumn(f"phantom {split}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
            with Progress(*columns, transient=False) as bar:
                job = bar.add_task("render", total=len(tasks))
                for row in _iterate(tasks, workers):
                    rows.append(row)
                    bar.advance(job)
        else:
            rows = list(_iterate(tasks, workers))
        rows.sort(key=lambda r: r["pid"])
        _write_csv(
            staging / f"{split}_reports.csv",
            ("VolumeName", "Findings_EN", "Impressions_EN"),
            [r["report"] for r in rows],
        )
        _write_csv(staging / f"{split}_labels.csv", ("VolumeName", *CTRATE_LABELS), [r["labels"] for r in rows])
        _write_csv(staging / f"{split}_metadata.csv", METADATA_COLUMNS, [r["metadata"] for r in rows])
        _commit(out, staging, split)
    finally:
        shutil.rmtree(staging, ignore_errors=True)

    labels = np.array([[r["labels"][name] for name in CTRATE_LABELS] for r in rows])
    manifest = {
        "generator": "ctvl.data.phantom",
        "generator_version": GENERATOR_VERSION,
        "split": split,
        "n": int(n),
        "seed": int(seed),
        "shape": list(shape),
        "spacing": [round(v, 6) for v in (spacing or default_spacing(shape))],
        "prevalence": {name: round(float(v), 4) for name, v in zip(CTRATE_LABELS, labels.mean(axis=0))},
        "seconds": round(time.time() - started, 1),
        "complete": True,
    }
    write_json(out / f"phantom_{split}.json", manifest)  # last: the manifest says the split is complete

    write_card(out)
    return out


def _commit(out: Path, staging: Path, split: str) -> None:
    """Swap the finished split into place (old manifest first, so an interrupted swap looks incomplete)."""
    (out / f"phantom_{split}.json").unlink(missing_ok=True)
    names = [f"{split}_reports.csv", f"{split}_labels.csv", f"{split}_metadata.csv"]
    for name in names:
        (out / name).unlink(missing_ok=True)
    replace_dir(staging / split, out / split)  # fsynced; the old folder goes only once the new one is in
    for name in names:
        with atomic_file(out / name) as tmp:
            os.replace(staging / name, tmp)  # fsynced, then renamed over the old CSV
