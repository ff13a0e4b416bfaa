"""NIfTI reading and writing with nibabel.

Reading checks what nibabel would happily do wrong: a 4D file, a header whose grid would not fit
in memory (checked before any voxel is read), an uncompressed file shorter than its header says,
a truncated gzip stream, a missing or contradictory orientation. The affine is nibabel's
(``img.affine``: sform when set, else qform), kept exactly, oblique or not. The header's
``scl_slope``/``scl_inter`` are applied once; a CT-RATE metadata row is used only when the header
carries no scaling, and not when the stored values are already HU (double rescaling).
"""

from __future__ import annotations

import logging
import os
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import nibabel as nib
import numpy as np

from ctvl.atomic import atomic_file
from ctvl.errors import InputError
from ctvl.io.checks import Issue, IssueLog, check_voxels, decide_metadata_rescale
from ctvl.io.volume import Volume, VolumeMeta

QFORM_SFORM_TOL = 1e-3  # mm / direction-cosine units; larger differences are reported


def read_nifti(
    path: Path,
    *,
    log: IssueLog,
    max_voxels: int,
    metadata: tuple[float, float] | None = None,
    rescale: str = "header",
) -> Volume:
    """Read a .nii or .nii.gz file.

    Args:
        path: the file.
        log: collects warnings; raises refusals when strict.
        max_voxels: cap on the grid size, checked from the header before reading data.
        metadata: (slope, intercept) from a CT-RATE metadata row, used only when the header has no
            scaling (scl_slope unset, or 1 with intercept 0).
        rescale: "header" (apply the scaling once) or "none" (keep stored values).
    Returns:
        Volume with data (I, J, K) float32 in the file's voxel order and ``img.affine``.
    """
    with _nibabel_log() as repairs:
        volume = _read(path, log, max_voxels, metadata, rescale)
    for message in dict.fromkeys(repairs):
        log.add(Issue(f"nibabel repaired the header: {message}"))
    return volume


def _read(path: Path, log: IssueLog, max_voxels: int, metadata: tuple[float, float] | None, rescale: str) -> Volume:
    try:
        img = nib.load(str(path))
    except Exception as exc:
        raise InputError(
            f"not a readable NIfTI file ({_reason(exc)}); check that it is a complete .nii/.nii.gz", path=path
        ) from exc
    if not isinstance(img, (nib.Nifti1Image, nib.Nifti2Image)):
        raise InputError(f"{type(img).__name__} is not NIfTI; convert it to .nii.gz", path=path)
    shape = tuple(int(s) for s in img.shape)
    if len(shape) > 3 and any(s > 1 for s in shape[3:]):
        dims = " x ".join(map(str, shape))
        raise InputError(
            f"{len(shape)}D data ({dims}): ctvl reads one 3D volume; extract one volume first "
            "(e.g. nibabel img.slicer[..., 0] or fslroi)",
            path=path,
        )
    if len(shape) < 2 or min(shape) < 1:
        raise InputError(f"header declares an unusable grid {shape}", path=path)
    grid = (shape + (1,))[:3]
    issue = check_voxels(grid, max_voxels, "the NIfTI header")
    if issue is not None:
        raise InputError(issue.message, path=path)
    dtype = img.get_data_dtype()
    if dtype.fields is not None or dtype.kind == "c":
        raise InputError(f"voxel type {dtype} (RGB or complex) is not CT intensity data", path=path)
    if not str(path).endswith(".gz"):
        need = int(img.dataobj.offset) + int(np.prod(shape)) * dtype.itemsize
        size = os.path.getsize(path)
        if size < need:
            raise InputError(
                f"file is truncated: {size} bytes on disk, the header needs {need}; re-export or re-download it",
                path=path,
            )
    try:
        affine = np.array(img.affine, dtype=np.float64)
        _check_orientation(img, log)
    except (ValueError, nib.spatialimages.HeaderDataError) as exc:
        raise InputError(f"the header's orientation is corrupt ({_reason(exc)}); fix the header", path=path) from exc
    if not np.all(np.isfinite(affine)) or abs(np.linalg.det(affine[:3, :3])) < 1e-12:
        raise InputError("the header's affine is singular or not finite (zero voxel size?); fix the header", path=path)
    try:
        stored = _gz_voxels(path, img, grid, dtype) if str(path).endswith(".gz") else None
        if stored is None:
            stored = np.asanyarray(img.dataobj.get_unscaled()).reshape(grid)
    except (EOFError, OSError, ValueError, zlib.error) as exc:
        raise InputError(
            f"truncated or corrupt image data ({_reason(exc)}); re-export or re-download it", path=path
        ) from exc
    data = stored.astype(np.float32)  # a copy: (I, J, K)
    slope, inter, source = _rescale(img, data, log, metadata, rescale)
    meta = VolumeMeta(
        modality="unknown",
        rescale_slope=slope,
        rescale_intercept=inter,
        rescale_applied=True,
        warnings=log.warnings,
        extra={
            "format": "nifti",
            "stored_dtype": str(dtype),
            "rescale_source": source,
            "padding_hu": None,
            "description": _descrip(img),
        },
    )
    return Volume(data=data, affine=affine, meta=meta)


def _gz_voxels(path: Path, img: nib.Nifti1Image, grid: tuple[int, ...], dtype: np.dtype) -> np.ndarray | None:
    """The stored voxels (I, J, K) of a .nii.gz, inflated with ISA-L (isal): about 2x faster than zlib.

    None when isal is missing (nibabel's reader is used then). Truncated or corrupt streams raise what
    nibabel's would (EOFError / OSError).
    """
    try:
        from isal import igzip
    except ImportError:  # pragma: no cover - isal is a dependency; keep working without it
        return None
    offset = int(img.dataobj.offset)
    count = int(np.prod(grid))
    with igzip.open(path, "rb") as fh:
        raw = fh.read(offset + count * dtype.itemsize)
    if len(raw) < offset + count * dtype.itemsize:
        raise EOFError(
            f"compressed stream ended after {len(raw)} bytes, the header needs {offset + count * dtype.itemsize}"
        )
    return np.frombuffer(raw, dtype=dtype, count=count, offset=offset).reshape(grid, order="F")


@contextmanager
def _nibabel_log() -> Iterator[list[str]]:
    """Collect what nibabel logs while loading (header repairs) instead of printing it to stderr."""
    logger = nib.imageglobals.logger
    messages: list[str] = []

    class _Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            messages.append(" ".join(record.getMessage().split()))

    saved = list(logger.handlers)
    for handler in saved:
        logger.removeHandler(handler)
    collector = _Collect()
    logger.addHandler(collector)
    try:
        yield messages
    finally:
        logger.removeHandler(collector)
        for handler in saved:
            logger.addHandler(handler)


def _reason(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {' '.join(str(exc).split())}".rstrip(": ")


def _descrip(img: nib.Nifti1Image) -> str:
    raw = img.header["descrip"]
    return (raw.item().decode("latin-1", "replace") if hasattr(raw, "item") else str(raw)).strip("\x00 ")


def _check_orientation(img: nib.Nifti1Image, log: IssueLog) -> None:
    qcode, scode = int(img.header["qform_code"]), int(img.header["sform_code"])
    if qcode == 0 and scode == 0:
        log.add(
            Issue(
                "no orientation in the header (qform and sform codes are 0): nibabel's default axes are used, "
                "left/right may be wrong"
            )
        )
    elif qcode > 0 and scode > 0:
        diff = float(np.abs(img.get_qform() - img.get_sform()).max())
        if diff > QFORM_SFORM_TOL:
            log.add(
                Issue(
                    f"sform and qform disagree (up to {diff:.3g}): the sform is used (nibabel's rule); "
                    "ITK-based viewers may place the image differently"
                )
            )


def _rescale(
    img: nib.Nifti1Image, data: np.ndarray, log: IssueLog, metadata: tuple[float, float] | None, rescale: str
) -> tuple[float, float, str]:
    """Apply the header scaling (or the metadata row) to ``data`` in place, exactly once."""
    # nibabel moves scl_slope/scl_inter from the header into the array proxy on load (1 and 0 when unset)
    slope = float(np.asarray(getattr(img.dataobj, "slope", 1.0)))
    inter = float(np.asarray(getattr(img.dataobj, "inter", 0.0)))
    scaled = not (slope == 1.0 and inter == 0.0)
    if rescale == "none":
        if scaled:
            log.add(Issue(f"header scaling (slope {slope:g}, intercept {inter:g}) ignored (rescale='none')"))
        return 1.0, 0.0, "none"
    if scaled:
        if metadata is not None and metadata != (slope, inter):
            log.add(
                Issue(
                    f"metadata rescale (slope {metadata[0]:g}, intercept {metadata[1]:g}) ignored: the header "
                    f"carries its own (slope {slope:g}, intercept {inter:g})"
                )
            )
        _apply(data, slope, inter)
        return slope, inter, "header"
    if metadata is not None:
        apply, issue = decide_metadata_rescale(data, *metadata)
        log.add(issue)
        if apply:
            _apply(data, *metadata)
            return float(metadata[0]), float(metadata[1]), "metadata"
    return 1.0, 0.0, "none"


def _apply(data: np.ndarray, slope: float, inter: float) -> None:
    if slope != 1.0:
        data *= np.float32(slope)
    if inter != 0.0:
        data += np.float32(inter)


def write_nifti(volume: Volume, path: str | Path, dtype: str = "float32", description: str = "") -> Path:
    """Write ``volume`` to ``path`` (.nii or .nii.gz) atomically.

    The affine is written to the sform (and to the qform when it has no shear, which a qform cannot
    hold). NIfTI-1 stores the sform as float32, so the affine read back is ``affine`` rounded to
    float32: bit-exact for any volume read from NIfTI, within ~1e-7 relative for others. Values are
    stored unscaled (slope 1, intercept 0) as ``dtype`` ("float32" keeps every value; "int16"
    rounds HU).

    Args:
        volume: the volume; ``volume.data`` is (I, J, K) HU.
        path: destination file.
        dtype: on-disk voxel type.
        description: text for the header's ``descrip`` field (NIfTI keeps 79 bytes; longer text is cut).
    Returns:
        The written path.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = np.asarray(volume.data)
    if dtype == "int16":
        data = np.clip(np.rint(data), -32768, 32767).astype(np.int16)
    else:
        data = data.astype(np.dtype(dtype), copy=False)
    img = nib.Nifti1Image(data, np.asarray(volume.affine, dtype=np.float64))
    img.header.set_xyzt_units("mm")
    affine = np.asarray(volume.affine, dtype=np.float64)
    cols = affine[:3, :3] / np.linalg.norm(affine[:3, :3], axis=0)
    if np.allclose(cols.T @ cols, np.eye(3), atol=1e-6):
        img.set_qform(affine, code=1)
    else:  # sheared grid: only the sform can describe it
        img.set_qform(None, code=0)
    img.set_sform(affine, code=1)
    img.header["scl_slope"] = 1.0
    img.header["scl_inter"] = 0.0
    if description:
        img.header["descrip"] = description.encode("ascii", "replace")[:79]
    suffix = ".nii.gz" if path.name.endswith(".nii.gz") else path.suffix
    with atomic_file(path, suffix=suffix) as tmp:  # nibabel picks the format from the suffix
        nib.save(img, str(tmp))
    return path
