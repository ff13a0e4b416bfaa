"""DICOM headers (pydicom): find the image files of a folder, check them, group them into stacks.

Only headers are read here (pixel data is deferred, so a folder of a thousand slices is scanned in
seconds). Each file is checked before SimpleITK touches it: truncated pixel data, multi-frame and
colour images are refused with the file named. Files are grouped into *stacks* — one series,
one orientation, one matrix size — and a folder holding several stacks is refused with the stacks
listed unless the caller picks one.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from ctvl.errors import InputError

PIXEL_DATA = 0x7FE00010
UNDEFINED_LENGTH = 0xFFFFFFFF
DEFLATED = "1.2.840.10008.1.2.1.99"  # the whole dataset is zlib-compressed: file offsets do not apply


@dataclass
class SliceHeader:
    """The header facts ctvl needs from one DICOM image file.

    Attributes:
        path: the file.
        sop_uid / series_uid / series_number / series_description: identity and series.
        modality / sop_class / manufacturer: what made it ("" or None when absent).
        rows / cols: matrix size (J, I).
        iop: ImageOrientationPatient (6 floats, LPS) or None.
        ipp: ImagePositionPatient (3 floats, LPS mm) or None.
        pixel_spacing: PixelSpacing (row spacing, column spacing) in mm, or None.
        thickness: SpacingBetweenSlices, else SliceThickness, or None.
        slope / intercept: RescaleSlope / RescaleIntercept, None when the tag is absent.
        tilt: GantryDetectorTilt in degrees, or None.
        padding: PixelPaddingValue (stored units), or None.
        bits: BitsAllocated. instance: InstanceNumber or None.
        image_type: ImageType values (upper case). acquisition: AcquisitionNumber or None.
    """

    path: Path
    sop_uid: str = ""
    series_uid: str = ""
    series_number: str = ""
    series_description: str = ""
    modality: str | None = None
    sop_class: str | None = None
    manufacturer: str = ""
    rows: int = 0
    cols: int = 0
    iop: tuple[float, ...] | None = None
    ipp: tuple[float, ...] | None = None
    pixel_spacing: tuple[float, ...] | None = None
    thickness: float | None = None
    slope: float | None = None
    intercept: float | None = None
    tilt: float | None = None
    padding: float | None = None
    bits: int = 16
    instance: int | None = None
    image_type: tuple[str, ...] = ()
    acquisition: str | None = None


@dataclass
class Stack:
    """Files of one series with one orientation and matrix size (unsorted)."""

    headers: list[SliceHeader] = field(default_factory=list)

    @property
    def first(self) -> SliceHeader:
        return self.headers[0]

    def describe(self) -> str:
        h = self.first
        desc = f' "{h.series_description}"' if h.series_description else ""
        num = f" #{h.series_number}" if h.series_number else ""
        return f"{h.series_uid}{num}{desc} {h.modality or '?'} {len(self.headers)} slices {h.cols}x{h.rows}"


def _get(ds: object, name: str) -> object:
    """A tag's value, or None when absent or malformed (pydicom converts lazily and may raise)."""
    try:
        return getattr(ds, name, None)
    except Exception:
        return None


def _floats(ds: object, name: str) -> tuple[float, ...] | None:
    value = _get(ds, name)
    if value is None or value == "":
        return None
    items = [value] if isinstance(value, (str, bytes, int, float)) else list(value)
    try:
        return tuple(float(v) for v in items)
    except (TypeError, ValueError):
        return None


def _float(ds: object, name: str) -> float | None:
    vals = _floats(ds, name)
    return vals[0] if vals else None


def _text(ds: object, name: str) -> str:
    value = _get(ds, name)
    return "" if value is None else str(value).strip()


def _is_image_sop(ds: object) -> bool:
    meta = getattr(ds, "file_meta", None)
    uid = getattr(ds, "SOPClassUID", None) or getattr(meta, "MediaStorageSOPClassUID", None)
    return uid is not None and "Image Storage" in getattr(uid, "name", "")


def read_header(path: Path) -> SliceHeader | None:
    """Parse one file's header; None when it is not a DICOM image (text, DICOMDIR, report, ...).

    Raises:
        InputError: the file is a DICOM image but is truncated, multi-frame or colour.
    """
    with warnings.catch_warnings():  # pydicom warns about malformed values while converting lazily
        warnings.simplefilter("ignore")
        return _read_header(path)


def _read_header(path: Path) -> SliceHeader | None:
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        ds = pydicom.dcmread(path, defer_size="64 KB")
    except InvalidDicomError:
        try:  # some exports omit the 128-byte preamble and 'DICM'
            ds = pydicom.dcmread(path, defer_size="64 KB", force=True)
        except Exception:
            return None
        if "PixelData" not in ds or "Rows" not in ds:
            return None
    except Exception as exc:
        reason = f"{type(exc).__name__}: {exc}"
        raise InputError(f"corrupt DICOM file ({reason}); re-export the series", path=path) from exc
    if "PixelData" not in ds or "Rows" not in ds or "Columns" not in ds:
        if _is_image_sop(ds):
            raise InputError(
                "DICOM image file without pixel data or matrix size (truncated or stripped); re-export the series",
                path=path,
            )
        return None
    frames = _float(ds, "NumberOfFrames") or 1
    if frames > 1:
        raise InputError(
            f"multi-frame (enhanced) DICOM with {int(frames)} frames is not supported; convert it to NIfTI "
            "with dcm2niix and read that",
            path=path,
        )
    if (_float(ds, "SamplesPerPixel") or 1) != 1:
        raise InputError(
            f"colour DICOM ({_text(ds, 'PhotometricInterpretation') or '?'}): a screenshot or display image, not "
            "CT values in HU; export the original CT series",
            path=path,
        )
    rows, cols = int(_float(ds, "Rows") or 0), int(_float(ds, "Columns") or 0)
    bits = int(_float(ds, "BitsAllocated") or 16)
    if rows < 1 or cols < 1:
        raise InputError(f"DICOM image with an empty matrix ({rows} x {cols})", path=path)
    raw = ds.get_item("PixelData", keep_deferred=True)
    length = getattr(raw, "length", None)
    tell = getattr(raw, "value_tell", None)
    syntax = str(getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", "") or "")
    if length is not None and tell is not None and length != UNDEFINED_LENGTH and syntax != DEFLATED:
        expected = rows * cols * bits // 8
        if tell + length > os.path.getsize(path) or length < expected:
            have = min(length, os.path.getsize(path) - tell)
            raise InputError(
                f"truncated DICOM pixel data: {have} of {expected} bytes present; re-export the series", path=path
            )
    thickness = _float(ds, "SpacingBetweenSlices") or _float(ds, "SliceThickness")
    instance = _float(ds, "InstanceNumber")
    return SliceHeader(
        path=path,
        sop_uid=_text(ds, "SOPInstanceUID"),
        series_uid=_text(ds, "SeriesInstanceUID"),
        series_number=_text(ds, "SeriesNumber"),
        series_description=_text(ds, "SeriesDescription"),
        modality=_text(ds, "Modality") or None,
        sop_class=_text(ds, "SOPClassUID") or None,
        manufacturer=_text(ds, "Manufacturer"),
        rows=rows,
        cols=cols,
        iop=_floats(ds, "ImageOrientationPatient"),
        ipp=_floats(ds, "ImagePositionPatient"),
        pixel_spacing=_floats(ds, "PixelSpacing") or _floats(ds, "ImagerPixelSpacing"),
        thickness=thickness if thickness and thickness > 0 else None,
        slope=_float(ds, "RescaleSlope"),
        intercept=_float(ds, "RescaleIntercept"),
        tilt=_float(ds, "GantryDetectorTilt"),
        padding=_float(ds, "PixelPaddingValue"),
        bits=bits,
        instance=None if instance is None else int(instance),
        image_type=tuple(v.upper() for v in _strings(ds, "ImageType")),
        acquisition=_text(ds, "AcquisitionNumber") or None,
    )


def _strings(ds: object, name: str) -> list[str]:
    value = _get(ds, name)
    if value is None:
        return []
    return [str(v) for v in value] if not isinstance(value, str) else [value]


def scan_folder(folder: Path) -> tuple[list[SliceHeader], int]:
    """Headers of every DICOM image under ``folder`` (recursively).

    Returns:
        (headers, skipped): image headers, and how many files were not DICOM images.
    """
    headers: list[SliceHeader] = []
    skipped = 0
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".")):
        header = None if path.name.upper() == "DICOMDIR" else read_header(path)
        if header is None:
            skipped += 1
        else:
            headers.append(header)
    return headers, skipped


def group_stacks(headers: list[SliceHeader]) -> tuple[list[Stack], int]:
    """Group headers by (series UID, orientation, matrix size); drop localizers when other images exist.

    Returns:
        (stacks, localizers_dropped), stacks ordered by series number then UID.
    """
    images = [h for h in headers if "LOCALIZER" not in h.image_type]
    dropped = len(headers) - len(images) if images else 0
    images = images or headers
    groups: dict[tuple, Stack] = {}
    for h in images:
        iop = tuple(round(v, 3) for v in h.iop) if h.iop else None
        groups.setdefault((h.series_uid, iop, h.rows, h.cols), Stack()).headers.append(h)
    stacks = sorted(groups.values(), key=lambda s: (_num(s.first.series_number), s.first.series_uid, -len(s.headers)))
    return stacks, dropped


def _num(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return float("inf")


def select_stack(stacks: list[Stack], series: str | int | None, path: Path) -> Stack:
    """Pick one stack: the only one, or the one ``series`` names (1-based number or series UID).

    Raises:
        InputError: several stacks and no (valid) choice; the message lists them.
    """
    listing = "; ".join(f"{i}) {s.describe()}" for i, s in enumerate(stacks, 1))
    if series is None:
        if len(stacks) == 1:
            return stacks[0]
        raise InputError(
            f"{len(stacks)} image series in this folder, refusing to guess; choose one with series=N "
            f"(CLI: --series N): {listing}",
            path=path,
        )
    text = str(series).strip()
    if text.isdigit() and 1 <= int(text) <= len(stacks):
        return stacks[int(text) - 1]
    matches = [s for s in stacks if s.first.series_uid == text]
    if len(matches) == 1:
        return matches[0]
    why = "matches several stacks, pick by number" if matches else "matches no series"
    raise InputError(f"series {text!r} {why}: {listing}", path=path)
