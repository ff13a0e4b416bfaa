"""``read_volume``: one entry point for every CT input ctvl accepts.

Dispatch: a folder is a DICOM series (searched recursively), ``.nii``/``.nii.gz`` is NIfTI,
``.nrrd``/``.nhdr`` (NRRD) and ``.mha``/``.mhd`` (MetaImage) are read with SimpleITK
(:mod:`ctvl.io.itk`), a ``.zip`` is extracted safely (:mod:`ctvl.io.archive`) and read as a folder
(or as the one NIfTI/NRRD/MetaImage file it holds), any other file with the DICOM magic (or a
``.dcm``/``.ima`` name) is a single DICOM slice. After reading, the same
checks run for every format (:mod:`ctvl.io.checks`): HU plausibility, double rescaling, copied
slices.

Policy (``strict=True``, the default) — what is refused and what only warns:

* always refused: unreadable, truncated or corrupt files; unsafe archives; 4D data; a grid over
  ``max_voxels``; several series in one folder without ``series=``; multi-frame or colour DICOM;
  several slices at one position.
* refused when strict, a warning otherwise: non-CT DICOM Modality (MR, PT, ...), 8-bit windowed
  images, NaN voxels, double rescaling, slice gaps over 3x the smallest.
* warnings: no air near -1000 HU, missing Modality, gantry tilt and irregular spacing (both
  *resampled* onto a regular orthogonal grid, see :mod:`ctvl.io.geometry`), copied slices,
  qform/sform disagreement, a metadata rescale that was not applied.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from ctvl.errors import ConfigError, InputError
from ctvl.io.archive import extract_zip
from ctvl.io.checks import Issue, IssueLog, check_hu, duplicate_slices, parse_metadata_row
from ctvl.io.dicom import read_dicom
from ctvl.io.geometry import describe_positions
from ctvl.io.itk import ITK_SUFFIXES, read_itk
from ctvl.io.nifti import read_nifti
from ctvl.io.volume import Volume

DEFAULT_MAX_VOXELS = 2**31  # 8 GiB as float32; CT-RATE's largest (1024 x 1024 x 1617) fits
ARCHIVE_SLACK_BYTES = 64 << 20  # DICOM headers on top of 4 bytes per voxel
NIFTI_SUFFIXES = (".nii", ".nii.gz")
DICOM_SUFFIXES = (".dcm", ".dicom", ".ima")
VOLUME_SUFFIXES = NIFTI_SUFFIXES + ITK_SUFFIXES  # one file, one volume
DETACHED_DATA_SUFFIXES = (".raw", ".zraw", ".raw.gz")  # what .mhd/.nhdr headers point to


def detect_format(path: Path) -> str:
    """ "dicom-folder", "nifti", "itk" (NRRD/MetaImage), "zip" or "dicom-file" for ``path``.

    Raises:
        InputError: a file of any other kind.
    """
    if path.is_dir():
        return "dicom-folder"
    name = path.name.lower()
    if name.endswith(NIFTI_SUFFIXES):
        return "nifti"
    if name.endswith(ITK_SUFFIXES):
        return "itk"
    try:
        with open(path, "rb") as fh:
            head = fh.read(132)
    except OSError as exc:
        raise InputError(f"cannot open the file ({exc.strerror or exc})", path=path) from exc
    if head[128:132] == b"DICM" or name.endswith(DICOM_SUFFIXES):
        return "dicom-file"
    if name.endswith(".zip") or head[:4] == b"PK\x03\x04":
        return "zip"
    if name.endswith(DETACHED_DATA_SUFFIXES):
        raise InputError(
            "this looks like the data file of a MetaImage/NRRD image: pass its .mhd or .nhdr header "
            "(kept in the same folder)",
            path=path,
        )
    raise InputError(
        "unsupported file type: pass a .nii/.nii.gz, .nrrd/.nhdr or .mha/.mhd file, a DICOM folder, a .zip of one, "
        "or a single .dcm",
        path=path,
    )


def read_volume(
    path: str | Path,
    *,
    max_voxels: int = DEFAULT_MAX_VOXELS,
    metadata: Mapping[str, object] | None = None,
    series: str | int | None = None,
    rescale: str = "header",
    strict: bool = True,
    resample: bool = True,
) -> Volume:
    """Read a CT volume in HU from NIfTI, NRRD, MetaImage, a DICOM folder, a .zip of DICOM, or a single .dcm.

    Args:
        path: the file or folder (.nii/.nii.gz, .nrrd/.nhdr, .mha/.mhd, DICOM folder, .zip, .dcm).
        max_voxels: refuse grids larger than this (checked from the header before reading data;
            reading needs about 3 x 4 bytes per voxel at peak).
        metadata: a CT-RATE metadata CSV row (``RescaleSlope``, ``RescaleIntercept``); used only
            when the header has no scaling (NRRD and MetaImage never have one), and skipped (with a
            warning) when the stored values are already HU, so data is never rescaled twice.
        series: for a folder holding several series, which one (1-based number as listed in the
            error, or the SeriesInstanceUID).
        rescale: "header" (apply the header's slope/intercept exactly once) or "none" (stored
            values as they are, for files whose header wrongly asks for a second rescale).
        strict: refuse doubtful inputs (see the module docstring); False records them as warnings.
        resample: put gantry-tilted or irregularly spaced DICOM series on a regular orthogonal grid
            (linear interpolation); False keeps the stored slices (what ``info`` reports).
    Returns:
        :class:`Volume` with ``data`` (I, J, K) float32 HU, ``affine`` (4, 4) RAS+ and ``meta``
        (modality, manufacturer, applied slope/intercept, source, warnings, header facts).
    Raises:
        InputError: the input cannot be read, or is refused (one line, naming the file).
    """
    path = Path(path).expanduser()
    if rescale not in ("header", "none"):
        raise ConfigError(f"rescale must be 'header' or 'none', not {rescale!r}")
    row = parse_metadata_row(metadata)
    if metadata is not None and row is None:
        raise ConfigError("metadata row has no usable RescaleSlope/RescaleIntercept")
    if not path.exists():
        raise InputError("no such file or folder", path=path)
    log = IssueLog(path=str(path), strict=strict)
    kind = detect_format(path)
    if kind == "nifti":
        volume = read_nifti(path, log=log, max_voxels=max_voxels, metadata=row, rescale=rescale)
    elif kind == "itk":
        volume = read_itk(path, log=log, max_voxels=max_voxels, metadata=row, rescale=rescale)
    elif kind == "zip":
        volume = _read_zip(path, log, max_voxels, row, series, rescale, resample)
    else:
        volume = read_dicom(
            path, log=log, max_voxels=max_voxels, metadata=row, series=series, rescale=rescale, resample=resample
        )
    _check_values(volume, log)
    volume.meta.source = str(path)
    volume.meta.warnings = log.warnings
    return volume


def _read_zip(
    path: Path,
    log: IssueLog,
    max_voxels: int,
    row: tuple[float, float] | None,
    series: str | int | None,
    rescale: str,
    resample: bool,
) -> Volume:
    with tempfile.TemporaryDirectory(prefix="ctvl-zip-") as tmp:
        root = Path(tmp)
        try:
            files = extract_zip(path, root, max_bytes=4 * max_voxels + ARCHIVE_SLACK_BYTES)
            images = [f for f in files if f.name.lower().endswith(VOLUME_SUFFIXES)]
            if len(images) > 1:
                names = ", ".join(str(f.relative_to(root)) for f in images[:8])
                raise InputError(
                    f"the archive holds {len(images)} image files ({names}); extract and pass one", path=path
                )
            if images:
                reader = read_nifti if images[0].name.lower().endswith(NIFTI_SUFFIXES) else read_itk
                return reader(images[0], log=log, max_voxels=max_voxels, metadata=row, rescale=rescale)
            return read_dicom(
                root, log=log, max_voxels=max_voxels, metadata=row, series=series, rescale=rescale, resample=resample
            )
        except InputError as exc:
            if str(root) not in str(exc):
                raise
            raise InputError(str(exc).replace(str(root), f"{path}!")) from exc


def _check_values(volume: Volume, log: IssueLog) -> None:
    extra = volume.meta.extra
    pad = extra.get("padding_hu")
    tag = str(extra.get("modality_tag") or "CT").upper()
    if volume.meta.modality == "MR" or tag != "CT":
        return  # not CT: already reported; its values were never meant to be HU
    log.extend(
        check_hu(
            volume.data,
            stored_dtype=str(extra.get("stored_dtype", "float32")),
            slope=volume.meta.rescale_slope,
            intercept=volume.meta.rescale_intercept,
            declared_padding=() if pad is None else (float(pad),),
        )
    )
    same = duplicate_slices(volume.data)
    if same:
        z = np.asarray(extra.get("slice_positions_mm") or np.arange(volume.shape[2]), dtype=np.float64)
        where = ", ".join(f"{k}-{k + 1}" for k in same[:6]) + (" ..." if len(same) > 6 else "")
        at = f" (slice positions {describe_positions(z)} mm)" if len(z) == volume.shape[2] else ""
        log.add(
            Issue(
                f"{len(same)} pair(s) of adjacent slices hold identical voxels (slices {where}){at}: "
                "copied slices, not a real 3D acquisition"
            )
        )
