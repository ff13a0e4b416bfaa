"""Small synthetic CT files for the io tests (written with pydicom, nibabel and SimpleITK into tmp_path)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import SimpleITK as sitk
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid


def chest_hu(shape: tuple[int, int, int] = (24, 20, 6), seed: int = 0) -> np.ndarray:
    """A tiny chest-like volume in HU, (I, J, K) int16: air, a body ellipse, two lungs, noise."""
    rng = np.random.default_rng(seed)
    i, j = np.meshgrid(np.linspace(-1, 1, shape[0]), np.linspace(-1, 1, shape[1]), indexing="ij")
    plane = np.full(shape[:2], -1000.0)
    plane[(i / 0.85) ** 2 + (j / 0.7) ** 2 < 1] = 40.0
    plane[((i - 0.38) / 0.28) ** 2 + (j / 0.45) ** 2 < 1] = -850.0
    plane[((i + 0.38) / 0.28) ** 2 + (j / 0.45) ** 2 < 1] = -850.0
    vol = np.repeat(plane[:, :, None], shape[2], axis=2) + rng.normal(0, 15, shape)
    return np.rint(vol).astype(np.int16)


def write_slice(
    path: Path,
    pixels_ij: np.ndarray,
    *,
    position: Sequence[float],
    orientation: Sequence[float] = (1, 0, 0, 0, 1, 0),
    pixel_spacing: Sequence[float] = (0.7, 0.6),
    thickness: float = 2.0,
    slope: float | None = 1.0,
    intercept: float | None = -1024.0,
    modality: str | None = "CT",
    series_uid: str = "1.2.826.0.1.3680043.8.498.1",
    series_description: str = "AXIAL",
    instance: int = 1,
    tilt: float | None = None,
    sop_class: str = CTImageStorage,
    bits: int = 16,
    extra: dict | None = None,
) -> Path:
    """Write one single-frame DICOM slice; ``pixels_ij`` is (I, J) = (columns, rows) stored values."""
    pixels_ij = np.asarray(pixels_ij)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    if modality is not None:
        ds.Modality = modality
    ds.Manufacturer = "ctvl-test"
    ds.StudyInstanceUID = "1.2.826.0.1.3680043.8.498.2"
    ds.SeriesInstanceUID = series_uid
    ds.SeriesDescription = series_description
    ds.SeriesNumber = 1
    ds.InstanceNumber = instance
    ds.ImagePositionPatient = [float(v) for v in position]
    ds.ImageOrientationPatient = [float(v) for v in orientation]
    ds.PixelSpacing = [float(v) for v in pixel_spacing]
    ds.SliceThickness = thickness
    if tilt is not None:
        ds.GantryDetectorTilt = tilt
    rows_cols = pixels_ij.T  # DICOM stores (rows, columns) = (J, I)
    ds.Rows, ds.Columns = rows_cols.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = bits
    ds.BitsStored = bits
    ds.HighBit = bits - 1
    ds.PixelRepresentation = 0 if bits == 8 else 1
    if slope is not None:
        ds.RescaleSlope = slope
    if intercept is not None:
        ds.RescaleIntercept = intercept
    dtype = np.uint8 if bits == 8 else np.int16
    ds.PixelData = np.ascontiguousarray(rows_cols, dtype=dtype).tobytes()
    for key, value in (extra or {}).items():
        setattr(ds, key, value)
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def write_series(
    folder: Path,
    hu: np.ndarray,
    *,
    positions: Sequence[Sequence[float]] | None = None,
    spacing_z: float = 2.0,
    names: Sequence[str] | None = None,
    as_stored: bool = False,
    **kwargs,
) -> list[Path]:
    """Write (I, J, K) HU as K slice files, stored = (hu - intercept) / slope (``as_stored``: as given).

    Positions default to (0, 0, k * spacing_z); other keywords go to :func:`write_slice`.
    """
    slope = kwargs.get("slope", 1.0) or 1.0
    intercept = kwargs.get("intercept", -1024.0) or 0.0
    stored = hu if as_stored else np.rint((hu.astype(np.float64) - intercept) / slope)
    k_count = stored.shape[2]
    if positions is None:
        positions = [(0.0, 0.0, k * spacing_z) for k in range(k_count)]
    names = names or [f"slice_{k:03d}.dcm" for k in range(k_count)]
    return [
        write_slice(folder / names[k], stored[:, :, k], position=positions[k], instance=k + 1, **kwargs)
        for k in range(k_count)
    ]


def write_nifti_file(
    path: Path,
    data: np.ndarray,
    affine: np.ndarray | None = None,
    *,
    slope: float | None = None,
    inter: float | None = None,
) -> Path:
    """Write ``data`` as stored values (qform = sform = ``affine``); optional scl_slope/scl_inter.

    nibabel chooses its own scaling on save, so the scaling is patched into the header bytes
    afterwards (scl_slope at byte 112, scl_inter at 116 of a NIfTI-1 header).
    """
    import gzip
    import struct

    affine = np.diag([0.8, 0.8, 2.0, 1.0]) if affine is None else affine
    img = nib.Nifti1Image(data, affine)
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    img.set_data_dtype(data.dtype)
    plain = path.with_name(path.name.removesuffix(".gz"))
    nib.save(img, plain)
    if slope is not None:
        raw = bytearray(plain.read_bytes())
        raw[112:120] = struct.pack("<ff", slope, 0.0 if inter is None else inter)
        plain.write_bytes(bytes(raw))
    if path.name.endswith(".gz"):
        path.write_bytes(gzip.compress(plain.read_bytes()))
        plain.unlink()
    return path


def read_raw_pixels(path: Path) -> np.ndarray:
    """pydicom's stored values of one file as (I, J)."""
    return pydicom.dcmread(path).pixel_array.T


def sitk_image(data: np.ndarray, affine: np.ndarray) -> sitk.Image:
    """A SimpleITK image of ``data`` (I, J, K) placed by the RAS+ ``affine`` (converted to ITK's LPS here,
    independently of ctvl's reader)."""
    lps = np.diag([-1.0, -1.0, 1.0, 1.0]) @ affine  # RAS+ -> LPS (the flip is its own inverse)
    spacing = np.linalg.norm(lps[:3, :3], axis=0)
    img = sitk.GetImageFromArray(np.ascontiguousarray(data.transpose(2, 1, 0)))  # ITK arrays are (K, J, I)
    img.SetSpacing([float(s) for s in spacing])
    img.SetDirection([float(v) for v in (lps[:3, :3] / spacing).ravel()])
    img.SetOrigin([float(v) for v in lps[:3, 3]])
    return img


def write_itk_file(path: Path, data: np.ndarray, affine: np.ndarray | None = None, *, compress: bool = False) -> Path:
    """Write ``data`` (I, J, K) stored values as NRRD or MetaImage (by the suffix) with SimpleITK.

    The default affine is an axial LPS grid (0.7 x 0.8 x 2 mm), as a DICOM series reads.
    """
    affine = np.diag([-0.7, -0.8, 2.0, 1.0]) if affine is None else affine
    sitk.WriteImage(sitk_image(data, affine), str(path), useCompression=compress)
    return path
