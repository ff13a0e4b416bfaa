"""Read a DICOM series (a folder or one ``.dcm``) into a :class:`Volume`.

Headers come from pydicom (:mod:`ctvl.io.dicom_headers`), pixel data from SimpleITK's
``ImageSeriesReader`` given the files in ctvl's own slice order. The geometry is built from the
headers, not from SimpleITK, because ITK silently averages irregular spacing and ignores gantry
tilt: the affine is the LPS one DICOM defines, flipped to RAS+ (nibabel's convention), so an
axial series reads as axis codes "LPS" and oblique orientations are kept exactly.

Rescale: SimpleITK (GDCM) applies each file's RescaleSlope/RescaleIntercept while decoding. ctvl
checks that on the first slice against pydicom's raw values times the header scaling and applies
the scaling itself if GDCM did not, so it happens exactly once. A CT-RATE metadata row is used
only when no file carries the rescale tags.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from ctvl.errors import InputError
from ctvl.io.checks import Issue, IssueLog, check_modality, check_voxels, decide_metadata_rescale
from ctvl.io.dicom_headers import SliceHeader, Stack, group_stacks, read_header, scan_folder, select_stack
from ctvl.io.geometry import StackGeometry, deskew, plan_regular_grid, resample_slices
from ctvl.io.volume import Volume, VolumeMeta

_STORED_DTYPE = {8: "uint8", 16: "int16", 32: "int32"}


def read_dicom(
    path: Path,
    *,
    log: IssueLog,
    max_voxels: int,
    metadata: tuple[float, float] | None = None,
    series: str | int | None = None,
    rescale: str = "header",
    resample: bool = True,
) -> Volume:
    """Read a DICOM folder (recursively) or a single DICOM file.

    Args:
        path: folder or file.
        log: collects warnings; raises refusals when strict.
        max_voxels: cap on the grid size, checked from the headers before any pixel is read.
        metadata: (slope, intercept) from a CT-RATE metadata row, used only without rescale tags.
        series: which stack to read when the folder holds several (1-based number or series UID).
        rescale: "header" (apply the header scaling once) or "none" (keep stored values).
        resample: correct gantry tilt and irregular spacing onto a regular orthogonal grid; False
            keeps the stored slices (geometry then approximate, reported in the warnings).
    Returns:
        Volume with data (I, J, K) float32: I columns, J rows, K slices along the slice normal.
    """
    if path.is_dir():
        headers, skipped = scan_folder(path)
        if not headers:
            raise InputError(f"no DICOM images in this folder ({skipped} files looked at)", path=path)
    else:
        header = read_header(path)
        if header is None:
            if path.name.upper() == "DICOMDIR":
                raise InputError("a DICOMDIR is an index, not an image; pass the folder that holds it", path=path)
            raise InputError("not a DICOM image file (no pixel data); pass a CT series", path=path)
        headers = [header]
    stacks, localizers = group_stacks(headers)
    stack = select_stack(stacks, series, path)
    if localizers:
        log.add(Issue(f"skipped {localizers} localizer image(s) in the folder"))
    return _read_stack(stack, path, log, max_voxels, metadata, rescale, resample)


def _unique(headers: list[SliceHeader], log: IssueLog) -> list[SliceHeader]:
    seen: dict[str, SliceHeader] = {}
    for h in headers:
        seen.setdefault(h.sop_uid or str(h.path), h)
    if len(seen) < len(headers):
        log.add(Issue(f"{len(headers) - len(seen)} duplicate file(s) of the same SOP instance ignored"))
    return list(seen.values())


def _geometry(hs: list[SliceHeader], path: Path, log: IssueLog) -> tuple[list[SliceHeader], StackGeometry]:
    first = hs[0]
    iop = first.iop if first.iop and len(first.iop) == 6 else None
    if iop is None:
        log.add(Issue("no ImageOrientationPatient: axial orientation assumed"))
        iop = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
    row, col = np.array(iop[:3], dtype=np.float64), np.array(iop[3:], dtype=np.float64)
    normal = np.cross(row, col)
    if np.linalg.norm(normal) < 1e-3:
        raise InputError(f"ImageOrientationPatient {list(iop)} has parallel row and column directions", path=path)
    normal = normal / np.linalg.norm(normal)
    ps = first.pixel_spacing
    if not ps or len(ps) < 2 or min(ps) <= 0:
        log.add(Issue("no PixelSpacing: 1 mm pixels assumed"))
        ps = (1.0, 1.0)
    thickness = first.thickness
    if thickness is None:
        thickness = 1.0
        if len(hs) == 1:
            log.add(Issue("single slice without SliceThickness: 1 mm assumed"))
    if all(h.ipp is not None and len(h.ipp) == 3 for h in hs):
        hs = sorted(hs, key=lambda h: (float(np.dot(h.ipp, normal)), h.instance or 0))
        positions = np.array([h.ipp for h in hs], dtype=np.float64)
    else:
        hs = sorted(hs, key=lambda h: (h.instance is None, h.instance or 0, str(h.path)))
        positions = np.outer(np.arange(len(hs)) * thickness, normal)
        if len(hs) > 1:
            log.add(
                Issue(
                    f"no ImagePositionPatient: slices ordered by InstanceNumber, {thickness:g} mm apart (approximate)"
                )
            )
    geom = StackGeometry(row, col, normal, np.array([ps[1], ps[0]], dtype=np.float64), positions, float(thickness))
    gaps = geom.gaps
    if gaps.size and float(gaps.min()) <= 1e-3:
        z = geom.z
        k = int(np.argmin(gaps))
        same = int(np.sum(np.abs(z - z[k]) <= 1e-3))
        acq = sorted({h.acquisition for h in hs if h.acquisition})
        acq_text = f" (AcquisitionNumber {', '.join(acq[:6])})" if len(acq) > 1 else ""
        raise InputError(
            f"{same} slices share the position {z[k]:.2f} mm{acq_text}: several acquisitions or time points in one "
            "series (4D); ctvl reads one 3D volume: split the series and read one part",
            path=path,
        )
    return hs, geom


def _read_pixels(paths: list[Path], shape: tuple[int, int, int], where: Path) -> np.ndarray:
    """Decode the files in order with SimpleITK; (I, J, K) float32 with GDCM's rescale applied."""
    import SimpleITK as sitk

    reader = sitk.ImageSeriesReader()
    reader.SetFileNames([str(p) for p in paths])
    reader.SetOutputPixelType(sitk.sitkFloat32)
    shown = sitk.ProcessObject.GetGlobalWarningDisplay()
    sitk.ProcessObject.SetGlobalWarningDisplay(False)  # ITK prints spacing warnings we report ourselves
    try:
        image = reader.Execute()
    except RuntimeError as exc:
        lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
        reason = lines[-1] if lines else exc
        raise InputError(f"SimpleITK could not decode the pixel data ({reason})", path=where) from exc
    finally:
        sitk.ProcessObject.SetGlobalWarningDisplay(shown)
    arr = sitk.GetArrayFromImage(image)  # (K, J, I)
    del image
    if arr.ndim == 2:
        arr = arr[None]
    data = arr.transpose(2, 1, 0)  # (I, J, K), each slice contiguous
    if data.shape != shape:
        raise InputError(f"decoded grid {data.shape} differs from the headers' {shape}", path=where)
    return data


def _gdcm_rescaled(first: SliceHeader, decoded: np.ndarray, slope: float, intercept: float) -> bool | None:
    """True if SimpleITK applied the rescale to slice 0, False if it gave raw values, None if unknown."""
    import pydicom

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            raw = pydicom.dcmread(first.path).pixel_array.astype(np.float32).T  # (I, J)
    except Exception:  # no pydicom decoder for this transfer syntax: trust GDCM
        return None
    if raw.shape != decoded.shape:
        return None
    tol = 1e-3 * max(1.0, abs(slope))
    if np.allclose(decoded, raw * slope + intercept, atol=tol):
        return True
    if np.allclose(decoded, raw, atol=tol):
        return False
    return None


def _rescale(
    data: np.ndarray, hs: list[SliceHeader], log: IssueLog, metadata: tuple[float, float] | None, rescale: str
) -> tuple[float, float, str]:
    """Make sure the header scaling is applied exactly once (or not at all for rescale="none")."""
    tagged = any(h.slope is not None or h.intercept is not None for h in hs)
    sb = [(h.slope if h.slope is not None else 1.0, h.intercept if h.intercept is not None else 0.0) for h in hs]
    identity = all(s == 1.0 and b == 0.0 for s, b in sb)
    if any(s == 0.0 for s, _ in sb):
        raise InputError("RescaleSlope is 0: the header scaling is invalid; fix the header", path=hs[0].path)
    if not identity:
        if len(set(sb)) > 1:
            ss, bb = zip(*sb)
            log.add(
                Issue(
                    f"rescale varies across slices (slope {min(ss):g}..{max(ss):g}, intercept "
                    f"{min(bb):g}..{max(bb):g}): applied per slice from each header"
                )
            )
        applied = _gdcm_rescaled(hs[0], data[:, :, 0], *sb[0])
        if applied is False:  # GDCM left raw values: apply here, once
            for k, (s, b) in enumerate(sb):
                data[:, :, k] = data[:, :, k] * s + b
        if rescale == "none":
            for k, (s, b) in enumerate(sb):
                data[:, :, k] = (data[:, :, k] - b) / s
            log.add(Issue(f"header rescale (slope {sb[0][0]:g}, intercept {sb[0][1]:g}) ignored (rescale='none')"))
            return 1.0, 0.0, "none"
    if metadata is not None:
        if tagged:
            if metadata != sb[0]:
                log.add(
                    Issue(
                        f"metadata rescale (slope {metadata[0]:g}, intercept {metadata[1]:g}) ignored: the "
                        f"header carries its own (slope {sb[0][0]:g}, intercept {sb[0][1]:g})"
                    )
                )
        elif rescale == "header":
            apply, issue = decide_metadata_rescale(data, *metadata)
            log.add(issue)
            if apply:
                data *= np.float32(metadata[0])
                data += np.float32(metadata[1])
                return metadata[0], metadata[1], "metadata"
    if identity:
        return 1.0, 0.0, "header" if tagged else "none"
    return sb[0][0], sb[0][1], "header"


def _read_stack(
    stack: Stack,
    path: Path,
    log: IssueLog,
    max_voxels: int,
    metadata: tuple[float, float] | None,
    rescale: str,
    resample: bool,
) -> Volume:
    hs = _unique(stack.headers, log)
    first = hs[0]
    modality, issues = check_modality(first.modality, first.sop_class)
    log.extend(issues)
    hs, geom = _geometry(hs, path, log)
    shape = (first.cols, first.rows, len(hs))
    _refuse(check_voxels(shape, max_voxels, "the DICOM headers"), path)

    tilt_tag = first.tilt or 0.0
    sheared = geom.sheared
    if sheared:
        drift = float(np.abs(geom.offsets).max() * geom.spacing_ij.min())
        done = "resampled onto an orthogonal grid (each slice shifted back in-plane, linear interpolation)"
        kept = "kept as stored with a sheared affine; read_volume resamples it onto an orthogonal grid"
        log.add(
            Issue(
                f"gantry tilt: slices sheared by {geom.tilt_deg:.2f} deg (GantryDetectorTilt {tilt_tag:g} deg), "
                f"origins drift up to {drift:.2f} mm in-plane; {done if resample else kept}"
            )
        )
    elif abs(tilt_tag) > 0.01 and len(hs) > 1:
        log.add(
            Issue(
                f"GantryDetectorTilt is {tilt_tag:g} deg but the slice positions are not sheared: no correction needed"
            )
        )
    refused_before = log.refused
    new_z, spacing_issue = plan_regular_grid(geom, resampling=resample)
    log.add(spacing_issue)
    regrid = resample and log.refused == refused_before  # a lenient refusal keeps the stored slices
    if new_z is not None and regrid:
        _refuse(check_voxels((first.cols, first.rows, len(new_z)), max_voxels, "the regular grid"), path)

    data = _read_pixels([h.path for h in hs], shape, path)
    slope, intercept, source = _rescale(data, hs, log, metadata, rescale)
    affine = geom.stored_affine()
    resampled = ""
    if regrid and sheared:
        data = deskew(data, geom.offsets, fill=float(data.min()))
        affine = geom.orthogonal_affine(float(geom.gaps.mean()))
        resampled = "deskewed"
    if regrid and new_z is not None:
        data = resample_slices(data, geom.z, new_z)
        affine = geom.orthogonal_affine(float(geom.gaps.min()))
        resampled = (resampled + "+" if resampled else "") + "regular-z"
    padding = None if first.padding is None else first.padding * slope + intercept
    meta = VolumeMeta(
        modality=modality,
        manufacturer=first.manufacturer,
        rescale_slope=float(slope),
        rescale_intercept=float(intercept),
        rescale_applied=True,
        warnings=log.warnings,
        extra={
            "format": "dicom",
            "modality_tag": first.modality,
            "stored_dtype": _STORED_DTYPE.get(first.bits, "int16"),
            "rescale_source": source,
            "padding_hu": padding,
            "series_uid": first.series_uid,
            "series_description": first.series_description,
            "n_files": len(hs),
            "slice_positions_mm": [round(float(v), 4) for v in geom.z],
            "gantry_tilt_deg": round(geom.tilt_deg, 4),
            "resampled": resampled,
        },
    )
    return Volume(data=data, affine=affine, meta=meta)


def _refuse(issue: Issue | None, path: Path) -> None:
    if issue is not None:
        raise InputError(issue.message, path=path)
