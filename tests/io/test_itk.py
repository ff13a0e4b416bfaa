"""NRRD and MetaImage reading: the NIfTI contract (same data, same RAS+ affine), HU checks, refusals, real files."""

import zipfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
from scipy.spatial.transform import Rotation

from ctvl.errors import InputError
from ctvl.io import Volume, info, read_volume, write_nifti
from ctvl.io.itk import lps_affine
from tests.io.factory import chest_hu, write_itk_file

SHARED = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "volumes"
COPD = SHARED / "real_chest_copdgene_cip"
HEADSQ = SHARED / "real_head_headsq_nrrd_not_hu" / "quarter.nhdr"
SUFFIXES = [".nrrd", ".nhdr", ".mha", ".mhd"]


def _affine(kind: str) -> np.ndarray:
    """RAS+ affines: axial LPS (DICOM-like), RAS (NIfTI-like), and oblique with a flipped axis."""
    aff = np.eye(4)
    if kind == "lps":
        aff[:3, :3] = np.diag([-0.7, -0.8, 2.0])
    elif kind == "ras":
        aff[:3, :3] = np.diag([0.7, 0.8, 2.0])
    else:
        rot = Rotation.from_euler("xyz", [12.0, -25.0, 37.0], degrees=True).as_matrix()
        aff[:3, :3] = rot @ np.diag([0.71, -0.83, 1.5])
    aff[:3, 3] = [-123.456, 21.5, 33.25]
    return aff.astype(np.float32).astype(np.float64)  # what NIfTI-1 can hold exactly


@pytest.mark.parametrize("suffix", SUFFIXES)
@pytest.mark.parametrize("kind", ["lps", "ras", "oblique"])
def test_same_array_and_affine_read_the_same_as_nifti(tmp_path, suffix, kind):
    data, aff = chest_hu(), _affine(kind)
    nifti = read_volume(write_nifti(Volume(data.astype(np.float32), aff), tmp_path / "v.nii.gz", dtype="int16"))
    other = read_volume(write_itk_file(tmp_path / f"v{suffix}", data, aff))
    assert np.array_equal(other.data, nifti.data) and other.data.dtype == np.float32 and other.shape == data.shape
    np.testing.assert_allclose(other.affine, nifti.affine, rtol=0, atol=1e-5)
    assert other.axcodes == nifti.axcodes == "".join(nib.aff2axcodes(aff))
    assert other.meta.warnings == nifti.meta.warnings == []
    assert other.meta.extra["format"] == ("nrrd" if suffix in (".nrrd", ".nhdr") else "metaimage")
    assert other.meta.extra["stored_dtype"] == "int16" and other.meta.source == str(tmp_path / f"v{suffix}")


@pytest.mark.parametrize("suffix", [".nrrd", ".mha"])
def test_itk_written_nifti_and_nrrd_agree(tmp_path, suffix):
    """ITK's own NIfTI writer makes the LPS -> RAS flip: ctvl's NIfTI and NRRD/MHA readers must agree with it."""
    img = sitk.GetImageFromArray(chest_hu().transpose(2, 1, 0).copy())
    img.SetDirection(Rotation.from_euler("z", 30, degrees=True).as_matrix().ravel().tolist())
    img.SetSpacing((0.6, 0.7, 2.5))
    img.SetOrigin((10.0, -20.0, 30.0))
    sitk.WriteImage(img, str(tmp_path / "itk.nii.gz"))
    sitk.WriteImage(img, str(tmp_path / f"itk{suffix}"))
    a, b = read_volume(tmp_path / "itk.nii.gz"), read_volume(tmp_path / f"itk{suffix}")
    assert np.array_equal(a.data, b.data)
    np.testing.assert_allclose(a.affine, b.affine, rtol=0, atol=1e-4)


def test_nrrd_in_ras_space_keeps_its_directions(tmp_path):
    """A hand-written header in right-anterior-superior: its directions are already RAS+, so no flip."""
    data = chest_hu((6, 5, 4))
    np.ascontiguousarray(data.transpose(2, 1, 0)).tofile(tmp_path / "d.raw")
    (tmp_path / "ras.nhdr").write_text(
        "NRRD0004\ntype: short\ndimension: 3\nspace: right-anterior-superior\nsizes: 6 5 4\n"
        "space directions: (0,0.7,0) (-0.8,0,0) (0,0,2)\nendian: little\nencoding: raw\n"
        "space origin: (1,2,3)\ndata file: d.raw\n"
    )
    vol = read_volume(tmp_path / "ras.nhdr")
    expect = np.array([[0, -0.8, 0, 1], [0.7, 0, 0, 2], [0, 0, 2, 3], [0, 0, 0, 1]], dtype=np.float64)
    np.testing.assert_allclose(vol.affine, expect, atol=1e-12)
    assert np.array_equal(vol.data, data) and vol.axcodes == "ALS"


def test_lps_affine_matches_dicom_convention():
    aff = lps_affine((1, 0, 0, 0, 1, 0, 0, 0, 1), (0.5, 0.6, 2.0), (-10.0, 20.0, 30.0))
    np.testing.assert_array_equal(
        aff,
        np.diag([-1.0, -1.0, 1.0, 1.0])
        @ np.array([[0.5, 0, 0, -10.0], [0, 0.6, 0, 20.0], [0, 0, 2.0, 30.0], [0, 0, 0, 1]]),
    )
    four_d = lps_affine(tuple(np.eye(4).ravel()), (0.5, 0.6, 2.0, 1.0), (0, 0, 0, 0))
    assert four_d.shape == (4, 4) and np.allclose(np.diag(four_d), [-0.5, -0.6, 2.0, 1.0])


@pytest.mark.parametrize("suffix", [".nrrd", ".mha"])
def test_compressed_files_and_one_slice(tmp_path, suffix):
    data = chest_hu((24, 20, 1))
    vol = read_volume(write_itk_file(tmp_path / f"z{suffix}", data, compress=True))
    assert vol.shape == (24, 20, 1) and np.array_equal(vol.data, data)


def test_not_hu_values_warn_through_the_common_checks(tmp_path):
    raw = write_itk_file(tmp_path / "raw.nrrd", (chest_hu() + 1024).astype(np.int16))
    vol = read_volume(raw)
    assert any("no air near -1000 HU" in w and "-1024 intercept" in w for w in vol.meta.warnings)
    fixed = read_volume(raw, metadata={"RescaleSlope": 1, "RescaleIntercept": -1024})
    assert np.array_equal(fixed.data, chest_hu().astype(np.float32))
    assert fixed.meta.extra["rescale_source"] == "metadata"
    hu = write_itk_file(tmp_path / "hu.mha", chest_hu())
    kept = read_volume(hu, metadata={"RescaleSlope": 1, "RescaleIntercept": -1024})  # already HU: never twice
    assert np.array_equal(kept.data, chest_hu().astype(np.float32)) and "double rescaling" in kept.meta.warnings[0]


def test_8bit_and_nan_images_are_refused_by_the_common_checks(tmp_path):
    with pytest.raises(InputError, match="8-bit uint8"):
        read_volume(write_itk_file(tmp_path / "u8.nrrd", np.full((8, 8, 3), 200, np.uint8)))
    data = chest_hu().astype(np.float32)
    data[0, 0, 0] = np.nan
    with pytest.raises(InputError, match="NaN"):
        read_volume(write_itk_file(tmp_path / "nan.mha", data))


def test_mr_metaimage_is_refused(tmp_path):
    path = write_itk_file(tmp_path / "mr.mha", chest_hu())
    path.write_bytes(path.read_bytes().replace(b"ObjectType = Image\n", b"ObjectType = Image\nModality = MET_MOD_MR\n"))
    with pytest.raises(InputError, match="MET_MOD_MR, not CT"):
        read_volume(path)
    assert read_volume(path, strict=False).meta.modality == "MR"


def test_2d_vector_and_4d_images_are_refused(tmp_path):
    with pytest.raises(InputError, match=r"a 2D image \(24 x 20\): ctvl reads 3D CT volumes; save the slice"):
        read_volume(_write_2d(tmp_path / "two.nrrd"))
    vec = sitk.GetImageFromArray(np.zeros((3, 5, 4, 3), np.int16), isVector=True)
    for name in ("vec.nrrd", "vec.mha"):
        sitk.WriteImage(vec, str(tmp_path / name))
        with pytest.raises(InputError, match="3 components per voxel .*extract one scalar component"):
            read_volume(tmp_path / name)
    np.zeros((2, 3, 5, 4), np.int16).tofile(tmp_path / "f.raw")
    header = "NRRD0004\ntype: short\ndimension: 4\nsizes: 4 5 3 {t}\nendian: little\nencoding: raw\ndata file: f.raw\n"
    (tmp_path / "four.nhdr").write_text(header.format(t=2))
    with pytest.raises(InputError, match=r"4D data \(4 x 5 x 3 x 2\): ctvl reads one 3D volume"):
        read_volume(tmp_path / "four.nhdr")
    (tmp_path / "one.nhdr").write_text(header.format(t=1))  # one time point: a 3D volume
    assert read_volume(tmp_path / "one.nhdr", strict=False).shape == (4, 5, 3)


def _write_2d(path: Path) -> Path:
    sitk.WriteImage(sitk.GetImageFromArray(chest_hu()[:, :, 0].T.copy()), str(path))
    return path


def test_zip_and_info(tmp_path):
    mhd = write_itk_file(tmp_path / "scan.mhd", chest_hu())
    with zipfile.ZipFile(tmp_path / "scan.zip", "w") as zf:
        zf.write(mhd, "study/scan.mhd")
        zf.write(tmp_path / "scan.raw", "study/scan.raw")
    assert np.array_equal(read_volume(tmp_path / "scan.zip").data, chest_hu())
    got = info(mhd)
    assert got["format"] == "metaimage" and got["shape"] == [24, 20, 6] and got["orientation"] == "LPS"
    assert got["spacing"] == pytest.approx([0.7, 0.8, 2.0]) and got["warnings"] == []


def test_max_voxels_is_checked_before_reading(tmp_path):
    path = write_itk_file(tmp_path / "big.nrrd", chest_hu())
    with pytest.raises(InputError, match="the NRRD header declares a 24 x 20 x 6 grid"):
        read_volume(path, max_voxels=1000)


needs_shared = pytest.mark.skipif(not COPD.is_dir(), reason=f"shared real data not found at {COPD}")


@needs_shared
def test_real_nrrd_matches_its_dicom_series():
    nrrd, dicom = read_volume(COPD / "ct-64.nrrd"), read_volume(COPD / "ct-64Dicom")
    assert nrrd.shape == dicom.shape == (64, 64, 79) and nrrd.axcodes == dicom.axcodes == "LPS"
    np.testing.assert_allclose(nrrd.affine, dicom.affine, rtol=0, atol=1e-3)  # the NRRD's origin is rounded
    assert np.abs(nrrd.data - dicom.data).max() <= 1.0 and nrrd.meta.warnings == []
    assert nrrd.spacing == pytest.approx((4.171872, 4.171872, 3.98734), abs=1e-5)


@needs_shared
@pytest.mark.parametrize("name, shape", [("crop_ct_2slices.nrrd", (443, 349, 2)), ("TestInput.nrrd", (64, 64, 50))])
def test_real_nrrds_read_as_hu(name, shape):
    vol = read_volume(COPD / name)
    assert vol.shape == shape and vol.axcodes == "LPS" and vol.meta.warnings == []
    assert -1200 < vol.data.min() < -900 and vol.data.max() > 1000


@pytest.mark.skipif(not HEADSQ.is_file(), reason=f"shared real data not found at {HEADSQ}")
def test_real_headsq_nhdr_warns_not_hu():
    vol = read_volume(HEADSQ)
    assert vol.shape == (64, 64, 93) and vol.spacing == pytest.approx((3.2, 3.2, 1.5))
    assert vol.data.min() == 0 and vol.data.max() == 3926
    assert any("no air near -1000 HU" in w for w in vol.meta.warnings)
    assert any("forbids this" in w for w in vol.meta.warnings)
