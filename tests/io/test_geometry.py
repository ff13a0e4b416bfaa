"""Slice-stack geometry: LPS -> RAS affines, tilt (shear) and irregular spacing corrections."""

import nibabel as nib
import numpy as np
import pytest

from ctvl.io.geometry import StackGeometry, deskew, plan_regular_grid, resample_slices


def _stack(z, shift_per_mm=0.0, row=(1, 0, 0), col=(0, 1, 0)):
    row, col = np.array(row, float), np.array(col, float)
    normal = np.cross(row, col)
    pos = np.array([zk * normal + zk * shift_per_mm * col for zk in z])
    return StackGeometry(row, col, normal, np.array([0.5, 0.8]), pos, 2.0)


def test_axial_stack_affine_is_lps_flipped_to_ras():
    geom = _stack([10.0, 12.0, 14.0])
    aff = geom.stored_affine()
    np.testing.assert_allclose(aff, [[-0.5, 0, 0, 0], [0, -0.8, 0, 0], [0, 0, 2, 10], [0, 0, 0, 1]], atol=1e-12)
    assert "".join(nib.aff2axcodes(aff)) == "LPS"
    assert not geom.irregular and not geom.sheared and geom.tilt_deg == 0.0


def test_single_slice_uses_thickness_along_the_normal():
    geom = _stack([5.0])
    assert geom.stored_affine()[2, 2] == 2.0 and geom.gaps.size == 0


def test_tilt_is_measured_from_positions():
    geom = _stack([0.0, 2.0, 4.0, 6.0], shift_per_mm=np.tan(np.radians(15.0)))
    assert geom.sheared
    assert geom.tilt_deg == pytest.approx(15.0, abs=1e-9)
    np.testing.assert_allclose(geom.offsets[:, 1], np.arange(4) * 2.0 * np.tan(np.radians(15.0)) / 0.8)


def test_small_jitter_is_regular_missing_slice_is_resampled():
    assert plan_regular_grid(_stack([0.0, 1.25, 2.51, 3.75])) == (None, None)
    new_z, issue = plan_regular_grid(_stack([0.0, 2.0, 4.0, 8.0, 10.0]))
    np.testing.assert_allclose(new_z, [0, 2, 4, 6, 8, 10])
    assert not issue.refuse and "gaps from 2.00 to 4.00 mm" in issue.message and "5 -> 6 slices" in issue.message


def test_big_gap_is_refused_with_the_values():
    new_z, issue = plan_regular_grid(_stack([-99.48, 103.02, 104.27, 105.52]))
    assert new_z is None and issue.refuse
    assert "202.50 mm gap" in issue.message and "-99.48" in issue.message and "1.25 mm" in issue.message


def test_resample_slices_is_exact_for_linear_data():
    z = np.array([0.0, 2.0, 4.0, 8.0, 10.0])
    data = np.ones((3, 2, 5), np.float32) * (z * 10.0 - 500.0)
    out = resample_slices(data, z, np.arange(6) * 2.0)
    np.testing.assert_allclose(out[0, 0], np.arange(6) * 20.0 - 500.0)
    assert out.dtype == np.float32 and out.shape == (3, 2, 6)


def test_deskew_moves_each_slice_back_onto_the_normal_line():
    # a bright column at stored j = 5 in slice 0 drifting by one voxel per slice
    data = np.full((4, 12, 3), -1000.0, np.float32)
    for k in range(3):
        data[:, 5 - k, k] = 100.0
    offsets = np.array([[0.0, 0.0], [0.0, 1.0], [0.0, 2.0]])
    out = deskew(data, offsets, fill=-1000.0)
    for k in range(3):
        assert np.all(out[:, 5, k] == 100.0)
        assert np.count_nonzero(out[:, :, k] == 100.0) == 4
