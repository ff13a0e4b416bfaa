"""NRRD (``.nrrd``/``.nhdr``) and MetaImage (``.mha``/``.mhd``) volumes, read with SimpleITK.

SimpleITK reports geometry in DICOM's LPS world: voxel (i, j, k) lies at
``origin + direction @ diag(spacing) @ (i, j, k)``. ctvl flips that to RAS+ with
:data:`~ctvl.io.geometry.LPS_TO_RAS`, the same flip the DICOM reader makes, so an image written as
NIfTI and as NRRD/MetaImage reads back with the same ``data`` and the same affine (ITK itself turns
an NRRD ``space: right-anterior-superior`` header into LPS).

Before ITK reads the voxels, ctvl reads the text header itself (:mod:`ctvl.io.itk_header`): a
missing detached data file, an uncompressed file shorter than its header says, a compressed stream
that is cut short or fails its checksum, and a header without orientation are each said in one
sentence. An NRRD header that combines ``space`` with per-axis ``spacings`` (the format forbids it
and ITK refuses it; the classic VTK ``headsq`` volume does this) is read through a corrected copy,
with a warning. These formats carry no rescale slope/intercept: the stored values are taken as they
are (a CT-RATE metadata row is used as for an unscaled NIfTI), and :func:`ctvl.io.read_volume`'s
common HU checks follow.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import numpy as np

from ctvl.errors import InputError
from ctvl.io.checks import Issue, IssueLog, check_voxels, decide_metadata_rescale
from ctvl.io.geometry import LPS_TO_RAS
from ctvl.io.itk_header import (
    ITK_SUFFIXES,
    check_compressed,
    check_data_files,
    check_length,
    fixed_nrrd_header,
    orientation_issue,
    parse_header,
)
from ctvl.io.volume import Volume, VolumeMeta

__all__ = ["ITK_SUFFIXES", "lps_affine", "read_itk"]
_T = TypeVar("_T")
_STDERR_LOCK = threading.Lock()
_FORMAT = {"nrrd": "NRRD", "metaimage": "MetaImage"}


def read_itk(
    path: Path,
    *,
    log: IssueLog,
    max_voxels: int,
    metadata: tuple[float, float] | None = None,
    rescale: str = "header",
) -> Volume:
    """Read a .nrrd, .nhdr, .mha or .mhd file.

    Args:
        path: the file (for .nhdr/.mhd, the header; its data file(s) must lie where it says).
        log: collects warnings; raises refusals when strict.
        max_voxels: cap on the grid size, checked from the header before reading data.
        metadata: (slope, intercept) from a CT-RATE metadata row (these formats have no scaling).
        rescale: "header" or "none"; the same here, as there is no header scaling to apply.
    Returns:
        Volume with data (I, J, K) float32 in the file's voxel order (ITK's x, y, z) and a RAS+ affine.
    """
    import SimpleITK as sitk

    header = parse_header(path)
    check_data_files(header, path)
    with tempfile.TemporaryDirectory(prefix="ctvl-nrrd-") as tmp:
        source, fixed = fixed_nrrd_header(header, path, Path(tmp))
        log.add(fixed)
        reader = sitk.ImageFileReader()
        reader.SetFileName(str(source))
        fmt = _FORMAT[header.kind]
        _itk(
            reader.ReadImageInformation, path, fmt, f"not a readable {fmt} file ({{reason}}); check that it is complete"
        )
        dim, size, comps = reader.GetDimension(), tuple(reader.GetSize()), reader.GetNumberOfComponents()
        grid = _grid(dim, size, comps, path)
        _refuse(check_voxels(grid, max_voxels, f"the {fmt} header"), path)
        stored = _stored_dtype(reader.GetPixelID(), dim)
        check_length(header, path, int(np.prod(size)) * np.dtype(stored).itemsize)
        check_compressed(header, path)
        reader.SetOutputPixelType(sitk.sitkFloat32)
        image = _itk(
            reader.Execute, path, fmt, "truncated or corrupt image data ({reason}); re-export or re-download it"
        )
    affine = lps_affine(image.GetDirection(), image.GetSpacing(), image.GetOrigin())
    tags = {k: image.GetMetaData(k) for k in image.GetMetaDataKeys() if k in ("Modality",)}
    data = sitk.GetArrayFromImage(image).reshape(grid[::-1]).transpose(2, 1, 0)  # (K, J, I) -> (I, J, K)
    del image
    if not np.all(np.isfinite(affine)) or abs(np.linalg.det(affine[:3, :3])) < 1e-12:
        raise InputError(
            "the header's geometry is singular or not finite (zero voxel size?); fix the header", path=path
        )
    log.add(orientation_issue(header))
    modality = _modality(tags.get("Modality", ""), log)
    slope, inter, source_tag = 1.0, 0.0, "none"
    if metadata is not None and rescale == "header":
        apply, issue = decide_metadata_rescale(data, *metadata)
        log.add(issue)
        if apply:
            data *= np.float32(metadata[0])
            data += np.float32(metadata[1])
            slope, inter, source_tag = float(metadata[0]), float(metadata[1]), "metadata"
    meta = VolumeMeta(
        modality=modality,
        rescale_slope=slope,
        rescale_intercept=inter,
        rescale_applied=True,
        warnings=log.warnings,
        extra={
            "format": header.kind,
            "stored_dtype": stored,
            "rescale_source": source_tag,
            "padding_hu": None,
            "data_files": [str(p) for p in header.data_files[:3]] + (["..."] if len(header.data_files) > 3 else []),
        },
    )
    return Volume(data=data, affine=affine, meta=meta)


def lps_affine(direction: tuple[float, ...], spacing: tuple[float, ...], origin: tuple[float, ...]) -> np.ndarray:
    """(4, 4) RAS+ affine of an ITK image from its LPS ``direction`` (row-major, n x n), ``spacing`` and ``origin``.

    Only the first three axes are used (a 4D image with one time point keeps its 3D geometry).
    """
    n = int(round(len(direction) ** 0.5))
    lps = np.eye(4)
    lps[:3, :3] = np.asarray(direction, dtype=np.float64).reshape(n, n)[:3, :3] * np.asarray(spacing[:3], np.float64)
    lps[:3, 3] = np.asarray(origin[:3], dtype=np.float64)
    return LPS_TO_RAS @ lps


def _stored_dtype(pixel_id: int, dim: int) -> str:
    """numpy dtype name of a scalar SimpleITK pixel type (from a one-voxel image of that type)."""
    import SimpleITK as sitk

    return str(sitk.GetArrayViewFromImage(sitk.Image([1] * dim, pixel_id)).dtype)


def _grid(dim: int, size: tuple[int, ...], comps: int, path: Path) -> tuple[int, int, int]:
    dims = " x ".join(map(str, size))
    if comps > 1:
        raise InputError(
            f"{comps} components per voxel ({dims} grid of vectors, RGB or complex values): ctvl reads one CT "
            "intensity per voxel; extract one scalar component first (e.g. SimpleITK VectorIndexSelectionCast)",
            path=path,
        )
    if dim == 2:
        raise InputError(
            f"a 2D image ({dims}): ctvl reads 3D CT volumes; save the slice as a 3D image with one slice "
            f"(sizes {dims} 1, with its slice thickness as the third spacing) or pass the DICOM series",
            path=path,
        )
    if dim < 2 or dim > 4 or (dim == 4 and size[3] > 1):
        raise InputError(
            f"{dim}D data ({dims}): ctvl reads one 3D volume; extract one volume first "
            "(e.g. SimpleITK image[:, :, :, 0])",
            path=path,
        )
    if min(size) < 1:
        raise InputError(f"header declares an unusable grid ({dims})", path=path)
    return int(size[0]), int(size[1]), int(size[2])


def _modality(tag: str, log: IssueLog) -> str:
    """MetaImage's optional Modality field (MET_MOD_CT, MET_MOD_MR, ...) -> "CT", "MR" or "unknown"."""
    tag = tag.strip().upper()
    if tag == "MET_MOD_CT":
        return "CT"
    if tag == "MET_MOD_MR":
        log.add(Issue("MetaImage Modality is MET_MOD_MR, not CT: MR intensities are not HU", refuse=True))
        return "MR"
    return "unknown"


def _itk(call: Callable[[], _T], path: Path, fmt: str, template: str) -> _T:
    """Run one SimpleITK read; its failure (and what ITK printed on stderr) becomes one InputError line.

    Args:
        call: the read.
        path: the file, named in the error.
        fmt: "NRRD" or "MetaImage" (only MetaIO prints to stderr, so only it is captured).
        template: the error message, with ``{reason}`` where ITK's reason goes.
    """
    import SimpleITK as sitk

    shown = sitk.ProcessObject.GetGlobalWarningDisplay()
    sitk.ProcessObject.SetGlobalWarningDisplay(False)
    failure: RuntimeError | None = None
    try:
        with _stderr_captured(fmt == "MetaImage") as printed:
            try:
                return call()
            except RuntimeError as exc:
                failure = exc
    finally:
        sitk.ProcessObject.SetGlobalWarningDisplay(shown)
    raise InputError(template.format(reason=_reason(failure, printed)), path=path) from failure


def _reason(exc: BaseException | None, printed: list[str]) -> str:
    """The informative line of an ITK error: MetaIO prints its reason on stderr (first line most specific),
    teem's is the exception's last line."""
    if printed and printed[0]:
        return re.sub(r"^Meta\w+: ", "", printed[0]).rstrip(".")
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip() and not ln.strip().startswith("Exception thrown")]
    text = lines[-1] if lines else type(exc).__name__
    text = re.sub(r"^(ITK ERROR: \w+\(0x[0-9a-f]+\): |sitk::ERROR: |\[nrrd\] \w+: )", "", text)
    return text.rstrip(".")


@contextmanager
def _stderr_captured(active: bool) -> Iterator[list[str]]:
    """Collect what C++ code writes to file descriptor 2 instead of showing it (MetaIO prints its errors
    there with std::cerr). One capture at a time (the viewer reads uploads in threads)."""
    lines: list[str] = []
    if not active:
        yield lines
        return
    with _STDERR_LOCK:
        try:
            sys.stderr.flush()
            saved = os.dup(2)
        except (OSError, ValueError, AttributeError):  # no real stderr (embedded): nothing to capture
            yield lines
            return
        with tempfile.TemporaryFile() as sink:
            os.dup2(sink.fileno(), 2)
            try:
                yield lines
            finally:
                os.dup2(saved, 2)
                os.close(saved)
                sink.seek(0)
                text = sink.read(1 << 16).decode("utf-8", "replace")
                lines.extend(" ".join(ln.split()) for ln in text.splitlines() if ln.strip())


def _refuse(issue: Issue | None, path: Path) -> None:
    if issue is not None:
        raise InputError(issue.message, path=path)
