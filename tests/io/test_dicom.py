"""Reading DICOM stacks: geometry (LPS -> RAS), rescale exactly once, tilt, spacing, 4D, size cap."""

import numpy as np
import pytest
import SimpleITK as sitk

import ctvl.io.dicom as dicom_mod
from ctvl.errors import InputError
from ctvl.io import read_volume
from ctvl.io.geometry import LPS_TO_RAS
from tests.io.factory import chest_hu, read_raw_pixels, write_series, write_slice


def _sitk_ras_affine(folder) -> np.ndarray:
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
    img = reader.Execute()
    lps = np.eye(4)
    lps[:3, :3] = np.array(img.GetDirection()).reshape(3, 3) @ np.diag(img.GetSpacing())
    lps[:3, 3] = img.GetOrigin()
    return LPS_TO_RAS @ lps


def test_axial_series_geometry_and_values(tmp_path):
    hu = chest_hu()
    names = [f"IM{n}" for n in (5, 2, 9, 1, 7, 3)]  # file order says nothing about slice order
    write_series(tmp_path / "s", hu, positions=[(-80.0, -60.5, 40.0 + 2.5 * k) for k in range(6)], names=names)
    vol = read_volume(tmp_path / "s")
    assert vol.shape == (24, 20, 6) and vol.axcodes == "LPS"
    assert vol.spacing == pytest.approx((0.6, 0.7, 2.5))
    np.testing.assert_array_equal(vol.data, hu.astype(np.float32))
    expected = np.array([[-0.6, 0, 0, 80.0], [0, -0.7, 0, 60.5], [0, 0, 2.5, 40.0], [0, 0, 0, 1]])
    np.testing.assert_allclose(vol.affine, expected, atol=1e-9)
    np.testing.assert_allclose(vol.affine, _sitk_ras_affine(tmp_path / "s"), atol=1e-6)
    assert (vol.meta.modality, vol.meta.manufacturer, vol.meta.rescale_intercept) == ("CT", "ctvl-test", -1024.0)
    assert vol.meta.warnings == []


def test_oblique_orientation_is_kept_exactly(tmp_path):
    a, b = np.radians(20.0), np.radians(-10.0)
    row = np.array([np.cos(a), np.sin(a), 0.0])
    col = np.array([-np.sin(a) * np.cos(b), np.cos(a) * np.cos(b), np.sin(b)])
    normal = np.cross(row, col)
    iop = [round(v, 6) for v in (*row, *col)]
    origin = np.array([-100.0, 20.0, 5.0])
    positions = [origin + k * 1.25 * normal for k in range(6)]
    write_series(tmp_path / "o", chest_hu(), positions=positions, orientation=iop)
    vol = read_volume(tmp_path / "o")
    r, c = np.array(iop[:3]), np.array(iop[3:])
    lps = np.eye(4)
    lps[:3, 0], lps[:3, 1] = r * 0.6, c * 0.7
    lps[:3, 2] = (positions[-1] - positions[0]) / 5
    lps[:3, 3] = origin
    np.testing.assert_allclose(vol.affine, LPS_TO_RAS @ lps, rtol=0, atol=1e-9)
    np.testing.assert_allclose(vol.affine, _sitk_ras_affine(tmp_path / "o"), atol=1e-5)


def test_fractional_slope_applied_once(tmp_path):
    hu = chest_hu().astype(np.float64)
    files = write_series(tmp_path / "s", hu, slope=0.5, intercept=-1024.0)
    vol = read_volume(tmp_path / "s")
    raw = np.stack([read_raw_pixels(f) for f in files], axis=2)
    np.testing.assert_array_equal(vol.data, (raw * 0.5 - 1024.0).astype(np.float32))
    assert vol.meta.rescale_slope == 0.5


def test_rescale_applied_by_ctvl_when_the_decoder_did_not(tmp_path, monkeypatch):
    files = write_series(tmp_path / "s", chest_hu(), slope=1.0, intercept=-1024.0)
    raw = np.stack([read_raw_pixels(f) for f in files], axis=2).astype(np.float32)
    monkeypatch.setattr(dicom_mod, "_read_pixels", lambda paths, shape, where: raw.copy())
    vol = read_volume(tmp_path / "s")
    np.testing.assert_array_equal(vol.data, chest_hu().astype(np.float32))


def test_header_double_rescale_refused_and_none_reads(tmp_path):
    write_series(tmp_path / "s", chest_hu(), as_stored=True, intercept=-1024.0)  # HU stored, intercept kept
    with pytest.raises(InputError, match="rescaled twice: the lowest voxels sit at -2"):
        read_volume(tmp_path / "s")
    vol = read_volume(tmp_path / "s", rescale="none")
    np.testing.assert_array_equal(vol.data, chest_hu().astype(np.float32))


def test_metadata_row_only_without_rescale_tags(tmp_path):
    write_series(tmp_path / "raw", chest_hu() + 1024, as_stored=True, slope=None, intercept=None)
    vol = read_volume(tmp_path / "raw", metadata={"RescaleSlope": 1, "RescaleIntercept": -1024})
    np.testing.assert_array_equal(vol.data, chest_hu().astype(np.float32))
    assert vol.meta.extra["rescale_source"] == "metadata"
    write_series(tmp_path / "tagged", chest_hu())
    vol = read_volume(tmp_path / "tagged", metadata={"RescaleSlope": 1, "RescaleIntercept": -8192})
    np.testing.assert_array_equal(vol.data, chest_hu().astype(np.float32))
    assert any("-8192) ignored" in w for w in vol.meta.warnings)


def test_mr_refused_strict_reported_lenient(tmp_path):
    write_series(tmp_path / "mr", chest_hu(), modality="MR")
    with pytest.raises(InputError, match="Modality is MR, not CT"):
        read_volume(tmp_path / "mr")
    vol = read_volume(tmp_path / "mr", strict=False)
    assert vol.meta.modality == "MR" and any("MR" in w for w in vol.meta.warnings)


def test_missing_modality_falls_back_to_sop_class(tmp_path):
    write_series(tmp_path / "s", chest_hu(), modality=None)
    vol = read_volume(tmp_path / "s")
    assert vol.meta.modality == "CT" and vol.meta.warnings == [
        "Modality tag missing; CT assumed from the SOP Class (CT Image Storage)"
    ]


def _world_lps(vol, i, j, k):
    ras = vol.affine @ np.array([i, j, k, 1.0])
    return -ras[0], -ras[1], ras[2]


def test_gantry_tilt_resampled_onto_orthogonal_grid(tmp_path):
    # stored slice k starts 0.5 mm further along the column direction per slice (tilt atan(0.5/2))
    f = lambda x, y, z: -1000.0 + 10 * x + 20 * y + 30 * z  # noqa: E731  linear: interpolation is exact
    ii, jj = np.meshgrid(np.arange(16) * 1.0, np.arange(14) * 1.0, indexing="ij")
    stored = np.stack([f(ii, jj + 0.5 * k, 2.0 * k) for k in range(5)], axis=2)
    write_series(
        tmp_path / "t",
        stored + 1024,
        as_stored=True,
        pixel_spacing=(1.0, 1.0),
        tilt=14.0362,
        positions=[(0.0, 0.5 * k, 2.0 * k) for k in range(5)],
    )
    vol = read_volume(tmp_path / "t")
    assert np.allclose(vol.affine[:3, :3], np.diag([-1.0, -1.0, 2.0]))  # orthogonal now
    (msg,) = [w for w in vol.meta.warnings if "gantry tilt" in w]
    assert "14.04 deg" in msg and "GantryDetectorTilt 14.0362" in msg and "resampled onto an orthogonal grid" in msg
    for i, j, k in [(3, 2, 0), (7, 5, 2), (15, 10, 4), (0, 6, 3)]:
        assert vol.data[i, j, k] == pytest.approx(f(*_world_lps(vol, i, j, k)), abs=1e-3)
    stored_view = read_volume(tmp_path / "t", resample=False)
    assert stored_view.affine[1, 2] == pytest.approx(-0.5)
    assert any("sheared affine" in w for w in stored_view.meta.warnings)


def test_missing_slice_is_interpolated(tmp_path):
    hu = chest_hu((12, 10, 5)).astype(np.float64)
    z = [0.0, 2.0, 4.0, 8.0, 10.0]
    write_series(tmp_path / "m", hu, positions=[(0.0, 0.0, v) for v in z])
    vol = read_volume(tmp_path / "m")
    assert vol.shape == (12, 10, 6) and vol.spacing[2] == pytest.approx(2.0)
    np.testing.assert_allclose(vol.data[:, :, 3], (hu[:, :, 2] + hu[:, :, 3]) / 2, atol=1e-4)
    np.testing.assert_array_equal(vol.data[:, :, 4], hu[:, :, 3])
    assert any("gaps from 2.00 to 4.00 mm" in w and "5 -> 6 slices" in w for w in vol.meta.warnings)


def test_big_gap_refused_with_positions(tmp_path):
    write_series(tmp_path / "g", chest_hu((8, 6, 4)), positions=[(0, 0, v) for v in (-99.48, 103.02, 104.27, 105.52)])
    with pytest.raises(InputError, match=r"202\.50 mm gap between slices at -99\.48 and 103\.02 mm"):
        read_volume(tmp_path / "g")


def test_same_position_twice_is_4d(tmp_path):
    hu = chest_hu((8, 6, 4))
    write_series(
        tmp_path / "d",
        hu,
        positions=[(0, 0, 0), (0, 0, 2), (0, 0, 0), (0, 0, 2)],
        names=["a1.dcm", "a2.dcm", "b1.dcm", "b2.dcm"],
    )
    with pytest.raises(InputError, match=r"2 slices share the position 0\.00 mm.*\(4D\)"):
        read_volume(tmp_path / "d")


def test_voxel_cap_checked_before_pixels_are_decoded(tmp_path, monkeypatch):
    write_series(tmp_path / "s", chest_hu())
    monkeypatch.setattr(dicom_mod, "_read_pixels", lambda *a: pytest.fail("pixels were decoded"))
    with pytest.raises(InputError, match=r"24 x 20 x 6 grid \(2,880 voxels.*over the cap of 1,000 voxels"):
        read_volume(tmp_path / "s", max_voxels=1000)


def test_single_file_and_copied_slices(tmp_path):
    pixels = chest_hu((8, 6, 1))[:, :, 0] + 1024
    path = write_slice(tmp_path / "one.dcm", pixels, position=(1.0, 2.0, 3.0), thickness=5.0)
    vol = read_volume(path)
    assert vol.shape == (8, 6, 1) and vol.spacing[2] == 5.0 and vol.meta.warnings == []
    hu = chest_hu((8, 6, 2))
    hu[:, :, 1] = hu[:, :, 0]
    write_series(tmp_path / "copy", hu, spacing_z=1.0)
    (msg,) = read_volume(tmp_path / "copy").meta.warnings
    assert "identical voxels (slices 0-1)" in msg and "0.00, 1.00" in msg
