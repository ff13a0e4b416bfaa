"""NIfTI reading (traps) and writing (exact round trips)."""

import gzip

import nibabel as nib
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from ctvl.errors import InputError
from ctvl.io import Volume, VolumeMeta, read_volume, write_nifti
from tests.io.factory import chest_hu, write_nifti_file


def _oblique(f32: bool = True) -> np.ndarray:
    aff = np.eye(4)
    aff[:3, :3] = Rotation.from_euler("xyz", [12.0, -25.0, 37.0], degrees=True).as_matrix() @ np.diag([0.71, 0.83, 1.5])
    aff[:3, 3] = [-123.456789, 21.5, 33.3]
    return aff.astype(np.float32).astype(np.float64) if f32 else aff


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
def test_write_read_round_trip_is_exact_with_oblique_affine(tmp_path, suffix):
    data = chest_hu().astype(np.float32) + np.float32(0.25)
    vol = Volume(data, _oblique(), VolumeMeta(modality="CT"))
    back = read_volume(write_nifti(vol, tmp_path / f"v{suffix}"))
    assert np.array_equal(back.data, data) and back.data.dtype == np.float32
    assert np.array_equal(back.affine, vol.affine)  # bit-exact
    assert back.axcodes == vol.axcodes and back.meta.warnings == []


def test_round_trip_of_a_read_volume_and_float64_affines(tmp_path):
    aff = _oblique(f32=False)
    first = read_volume(write_nifti(Volume(chest_hu().astype(np.float32), aff), tmp_path / "a.nii.gz"))
    np.testing.assert_allclose(first.affine, aff, rtol=0, atol=1e-5)  # NIfTI-1 keeps float32
    assert np.array_equal(first.affine, aff.astype(np.float32).astype(np.float64))
    second = read_volume(write_nifti(first, tmp_path / "b.nii.gz"))
    assert np.array_equal(second.affine, first.affine) and np.array_equal(second.data, first.data)


def test_int16_writing_rounds_hu(tmp_path):
    data = np.full((4, 4, 3), -1000.4, np.float32)
    data[1:3, 1:3] = 40.6
    back = read_volume(write_nifti(Volume(data, np.eye(4)), tmp_path / "i.nii.gz", dtype="int16"), strict=False)
    assert set(np.unique(back.data)) == {-1000.0, 41.0}
    assert nib.load(tmp_path / "i.nii.gz").get_data_dtype() == np.int16


def test_sheared_affine_goes_to_the_sform_only(tmp_path):
    aff = np.diag([0.5, 0.5, 2.0, 1.0])
    aff[1, 2] = 0.5  # gantry-tilt shear
    write_nifti(Volume(chest_hu().astype(np.float32), aff), tmp_path / "s.nii")
    hdr = nib.load(tmp_path / "s.nii").header
    assert int(hdr["qform_code"]) == 0 and int(hdr["sform_code"]) == 1
    assert np.array_equal(nib.load(tmp_path / "s.nii").affine, aff)


def test_header_scaling_applied_exactly_once(tmp_path):
    stored = (chest_hu() + 1024).astype(np.int16)
    path = write_nifti_file(tmp_path / "s.nii.gz", stored, slope=1.0, inter=-1024.0)
    vol = read_volume(path)
    np.testing.assert_array_equal(vol.data, nib.load(path).get_fdata(dtype=np.float32))
    assert vol.data.min() < -900 and (vol.meta.rescale_slope, vol.meta.rescale_intercept) == (1.0, -1024.0)
    assert vol.meta.extra["rescale_source"] == "header"


@pytest.mark.parametrize("intercept", [-1024.0, -8192.0])
def test_header_double_rescale_refused_and_rescale_none_reads(tmp_path, intercept):
    path = write_nifti_file(tmp_path / "d.nii.gz", chest_hu(), slope=1.0, inter=intercept)
    with pytest.raises(InputError, match="rescaled twice") as err:
        read_volume(path)
    assert "\n" not in str(err.value) and str(path) in str(err.value)
    vol = read_volume(path, rescale="none")
    np.testing.assert_array_equal(vol.data, chest_hu())
    assert any("ignored (rescale='none')" in w for w in vol.meta.warnings)


def test_metadata_row_used_only_without_header_scaling(tmp_path):
    hu_path = write_nifti_file(tmp_path / "hu.nii.gz", chest_hu())  # CT-RATE v2: already HU
    vol = read_volume(hu_path, metadata={"RescaleSlope": 1, "RescaleIntercept": -1024})
    np.testing.assert_array_equal(vol.data, chest_hu())
    assert any("not applied" in w and "double rescaling" in w for w in vol.meta.warnings)
    raw_path = write_nifti_file(tmp_path / "raw.nii.gz", (chest_hu() + 1024).astype(np.int16))  # v1: raw values
    vol = read_volume(raw_path, metadata={"RescaleSlope": 1, "RescaleIntercept": -1024})
    np.testing.assert_array_equal(vol.data, chest_hu())
    assert vol.meta.extra["rescale_source"] == "metadata" and vol.meta.warnings == []
    scaled = write_nifti_file(tmp_path / "sc.nii.gz", (chest_hu() + 1024).astype(np.int16), slope=1.0, inter=-1024.0)
    vol = read_volume(scaled, metadata={"RescaleSlope": 1, "RescaleIntercept": -8192})
    np.testing.assert_array_equal(vol.data, chest_hu())
    assert any("metadata rescale" in w and "ignored" in w for w in vol.meta.warnings)


def test_4d_is_an_error_trailing_singleton_is_not(tmp_path):
    data4 = np.zeros((8, 8, 4, 3), np.int16)
    with pytest.raises(InputError, match=r"4D data \(8 x 8 x 4 x 3\).*one 3D volume"):
        read_volume(write_nifti_file(tmp_path / "t.nii.gz", data4))
    one = chest_hu()[..., None]
    assert read_volume(write_nifti_file(tmp_path / "o.nii.gz", one)).shape == chest_hu().shape


def test_2d_image_becomes_one_slice(tmp_path):
    assert read_volume(write_nifti_file(tmp_path / "p.nii", chest_hu()[:, :, 0])).shape == (24, 20, 1)


def test_truncated_files_give_one_line_errors(tmp_path):
    full = write_nifti_file(tmp_path / "f.nii", chest_hu())
    raw = full.read_bytes()
    (tmp_path / "cut.nii").write_bytes(raw[: len(raw) - 200])
    with pytest.raises(InputError, match="file is truncated: .* the header needs") as err:
        read_volume(tmp_path / "cut.nii")
    assert "\n" not in str(err.value)
    gz = gzip.compress(raw)
    (tmp_path / "cut.nii.gz").write_bytes(gz[: len(gz) // 2])
    with pytest.raises(InputError, match="truncated or corrupt image data") as err:
        read_volume(tmp_path / "cut.nii.gz")
    assert "\n" not in str(err.value)
    (tmp_path / "junk.nii.gz").write_bytes(b"this is not gzip at all" * 20)
    with pytest.raises(InputError, match="not a readable NIfTI"):
        read_volume(tmp_path / "junk.nii.gz")


def test_huge_header_refused_before_any_data_is_read(tmp_path, monkeypatch):
    img = nib.Nifti1Image(np.zeros((2, 2, 2), np.int16), np.eye(4))
    img.header.set_data_shape((4096, 4096, 4096))
    path = tmp_path / "huge.nii"
    nib.save(nib.Nifti1Image(np.zeros((2, 2, 2), np.int16), np.eye(4)), path)
    raw = bytearray(path.read_bytes())
    raw[:348] = img.header.binaryblock
    path.write_bytes(bytes(raw))

    def boom(*args, **kwargs):
        raise AssertionError("data was read")

    monkeypatch.setattr(nib.arrayproxy.ArrayProxy, "get_unscaled", boom)
    with pytest.raises(InputError, match=r"4096 x 4096 x 4096 grid .* over the cap"):
        read_volume(path)
    with pytest.raises(InputError, match="over the cap of 100 voxels"):
        read_volume(write_nifti_file(tmp_path / "small.nii", chest_hu()), max_voxels=100)


def test_windowed_uint8_refused_strict_warned_lenient(tmp_path):
    img = np.clip((chest_hu().astype(np.float32) + 160) / 400 * 255, 0, 255).astype(np.uint8)
    path = write_nifti_file(tmp_path / "w.nii.gz", img)
    with pytest.raises(InputError, match="8-bit uint8 .* windowed display image, not HU"):
        read_volume(path)
    vol = read_volume(path, strict=False)
    assert any("windowed" in w and "refuses" in w for w in vol.meta.warnings)


def test_orientation_traps_are_reported(tmp_path):
    img = nib.Nifti1Image(chest_hu(), np.diag([0.8, 0.8, 2.0, 1.0]))
    img.set_qform(np.diag([0.8, 0.8, 2.0, 1.0]), code=1)
    flipped = np.diag([-0.8, 0.8, 2.0, 1.0])
    img.set_sform(flipped, code=2)
    nib.save(img, tmp_path / "qs.nii.gz")
    vol = read_volume(tmp_path / "qs.nii.gz")
    assert np.array_equal(vol.affine, flipped.astype(np.float32))
    assert any("sform and qform disagree" in w for w in vol.meta.warnings)
    bare = nib.Nifti1Image(chest_hu(), np.eye(4))
    bare.set_qform(None, code=0)
    bare.set_sform(None, code=0)
    nib.save(bare, tmp_path / "bare.nii.gz")
    assert any("no orientation" in w for w in read_volume(tmp_path / "bare.nii.gz").meta.warnings)


def test_nibabel_header_repairs_become_warnings_not_stderr(tmp_path, capfd):
    path = write_nifti_file(tmp_path / "q.nii", chest_hu())
    raw = bytearray(path.read_bytes())
    raw[252:254] = (109).to_bytes(2, "little")  # qform_code: not a valid code
    path.write_bytes(bytes(raw))
    vol = read_volume(path)
    assert "nibabel repaired the header: qform_code 109 not valid; setting to 0" in vol.meta.warnings
    assert capfd.readouterr().err == ""
