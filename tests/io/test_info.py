"""info(): the stored grid plus warnings; checked on real files against nibabel / SimpleITK."""

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from ctvl.errors import InputError
from ctvl.io import info, read_volume
from ctvl.io.geometry import LPS_TO_RAS
from tests.io.factory import chest_hu, write_series

SHARED = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "volumes"
needs_shared = pytest.mark.skipif(not SHARED.is_dir(), reason=f"shared real data not found at {SHARED}")
KEYS = {"shape", "spacing", "orientation", "hu_range", "modality", "warnings"}


def test_info_keys_and_values(tmp_path):
    write_series(tmp_path / "s", chest_hu(), spacing_z=2.5)
    got = info(tmp_path / "s")
    assert KEYS <= set(got) and json.loads(json.dumps(got)) == got
    assert got["shape"] == [24, 20, 6] and got["spacing"] == pytest.approx([0.6, 0.7, 2.5])
    assert got["orientation"] == "LPS" and got["modality"] == "CT" and got["warnings"] == []
    assert got["hu_range"] == [float(chest_hu().min()), float(chest_hu().max())]


def test_info_reports_what_read_volume_refuses_or_resamples(tmp_path):
    write_series(tmp_path / "mr", chest_hu(), modality="MR")
    got = info(tmp_path / "mr")
    assert got["modality"] == "MR" and "refuses" in got["warnings"][0]
    write_series(tmp_path / "gap", chest_hu((8, 6, 5)), positions=[(0, 0, z) for z in (0, 2, 4, 8, 10)])
    got = info(tmp_path / "gap")
    assert got["shape"] == [8, 6, 5]  # stored grid, not the resampled one
    assert "read_volume resamples it to a regular 2.00 mm grid" in got["warnings"][0]


def test_info_still_raises_for_unreadable_input(tmp_path):
    with pytest.raises(InputError, match="4D"):
        nib.save(nib.Nifti1Image(np.zeros((4, 4, 4, 2), np.int16), np.eye(4)), tmp_path / "t.nii.gz")
        info(tmp_path / "t.nii.gz")


def _sitk_dicom(path: Path) -> sitk.Image:
    if path.is_dir():
        reader = sitk.ImageSeriesReader()
        reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(path)))
        return reader.Execute()
    return sitk.ReadImage(str(path))


@needs_shared
def test_real_nifti_matches_nibabel():
    path = SHARED / "totalseg_abdomen_example_ct_sm.nii.gz"
    img = nib.load(path)
    got = info(path)
    data = img.get_fdata()
    assert got["shape"] == list(img.shape) == [122, 101, 30]
    assert got["spacing"] == pytest.approx(img.header.get_zooms()[:3])
    assert got["orientation"] == "".join(nib.aff2axcodes(img.affine)) == "RAS"
    assert got["hu_range"] == [data.min(), data.max()] == [-1100.0, 1207.0]
    assert got["warnings"] == [] and got["modality"] == "unknown"
    vol = read_volume(path)
    assert np.array_equal(vol.data, data.astype(np.float32)) and np.array_equal(vol.affine, img.affine)


@needs_shared
@pytest.mark.parametrize("name", ["dicom_tiny_head_irregular_monai", "dicom_chest_lungmask", "pydicom_CT_small.dcm"])
def test_real_dicom_matches_simpleitk(name):
    path = SHARED / name
    img = _sitk_dicom(path)
    arr = sitk.GetArrayFromImage(img)
    lps = np.eye(4)
    lps[:3, :3] = np.array(img.GetDirection()).reshape(3, 3) @ np.diag(img.GetSpacing())
    got = info(path)
    assert got["shape"] == list(img.GetSize())
    assert got["spacing"] == pytest.approx(img.GetSpacing(), abs=1e-5)  # k: SimpleITK's mean step, as stored
    assert got["orientation"] == "".join(nib.aff2axcodes(LPS_TO_RAS @ lps)) == "LPS"
    assert got["hu_range"] == [float(arr.min()), float(arr.max())]
    assert got["modality"] == "CT"
    vol = read_volume(path, strict=False, resample=False)
    np.testing.assert_array_equal(vol.data, arr.transpose(2, 1, 0).astype(np.float32))


@needs_shared
def test_real_dicom_quirks_are_reported():
    irregular = info(SHARED / "dicom_tiny_head_irregular_monai")
    (msg,) = irregular["warnings"]
    assert "202.50 mm gap" in msg and "-99.48, 103.02, 104.27, 105.52" in msg and "refuses" in msg
    with pytest.raises(InputError, match="irregular slice spacing"):
        read_volume(SHARED / "dicom_tiny_head_irregular_monai")
    lung = info(SHARED / "dicom_chest_lungmask")
    assert lung["hu_range"][0] == -2048.0  # padding, yet no "not HU" warning
    assert lung["warnings"] == [
        "Modality tag missing; CT assumed from the SOP Class (CT Image Storage)",
        "1 pair(s) of adjacent slices hold identical voxels (slices 0-1) (slice positions 0.00, 1.00 mm): "
        "copied slices, not a real 3D acquisition",
    ]
    assert read_volume(SHARED / "dicom_chest_lungmask").shape == (512, 512, 2)  # readable, with warnings
    small = info(SHARED / "pydicom_CT_small.dcm")
    assert small["warnings"] == [] and small["rescale"] == {"slope": 1.0, "intercept": -1024.0, "source": "header"}
