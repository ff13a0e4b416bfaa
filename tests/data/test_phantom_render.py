"""render_case: determinism, geometry, realistic HU, resolution independence, forcing, bad arguments."""

from __future__ import annotations

import numpy as np
import pytest

from ctvl.data.labels import CTRATE_LABELS
from ctvl.data.phantom import default_spacing, render_case
from ctvl.errors import ConfigError

SHAPE = (48, 48, 25)


@pytest.fixture(scope="module")
def case():
    return render_case(11, SHAPE, with_masks=True)


def test_same_seed_same_case_other_seed_other_case(case):
    again = render_case(11, SHAPE)
    np.testing.assert_array_equal(case.volume.data, again.volume.data)
    assert (case.findings, case.impression, case.labels) == (again.findings, again.impression, again.labels)
    other = render_case(12, SHAPE)
    assert not np.array_equal(case.volume.data, other.volume.data) and other.findings != case.findings


def test_volume_geometry(case):
    vol = case.volume
    assert vol.data.dtype == np.float32 and vol.shape == SHAPE
    assert vol.spacing == pytest.approx(default_spacing(SHAPE))
    assert default_spacing(SHAPE) == pytest.approx((8.0, 8.0, 15.0))
    assert vol.axcodes == "LPS" and vol.meta.modality == "CT"
    centre = vol.affine @ np.array([(SHAPE[0] - 1) / 2, (SHAPE[1] - 1) / 2, (SHAPE[2] - 1) / 2, 1.0])
    np.testing.assert_allclose(centre[:3], 0.0, atol=1e-9)
    assert default_spacing((512, 512, 241)) == pytest.approx((0.75, 0.75, 1.5))
    assert default_spacing((64, 64, 33)) == pytest.approx((6.0, 6.0, 11.25))


def test_realistic_hu(case):
    v, m = case.volume.data, case.masks
    assert -1024 <= v.min() and v.max() <= 3071
    assert np.median(v[0, 0, :]) == pytest.approx(-1000, abs=15)  # air outside the patient
    lung = (m["lung_R"] > 0.9) | (m["lung_L"] > 0.9)
    assert -900 <= np.median(v[lung]) <= -780
    checks = {"liver": (45, 70), "muscle": (30, 60), "mediastinum": (-110, -60)}
    for tag, (lo, hi) in checks.items():
        assert lo <= np.median(v[m[tag] > 0.9]) <= hi, tag
    assert np.percentile(v[m["bone"] > 0.9], 90) > 200


def test_resolution_independence():
    coarse = render_case(11, SHAPE, noise=False).volume.data
    fine = render_case(11, (96, 96, 49), noise=False).volume.data  # same field of view, half the voxel size
    down = fine.reshape(48, 2, 48, 2, 49).mean(axis=(1, 3))
    padded = np.concatenate([down[:, :, :1], down, down[:, :, -1:]], axis=2)
    down = 0.25 * padded[:, :, 0:-2:2] + 0.5 * padded[:, :, 1:-1:2] + 0.25 * padded[:, :, 2::2]  # 15 mm slab profile
    body = coarse > -900
    err = np.abs(coarse - down)[body]
    assert np.median(err) < 10 and err.mean() < 30
    assert np.corrcoef(coarse.ravel(), down.ravel())[0, 1] > 0.99


def test_region_of_interest_matches_full_grid():
    full = render_case(4, (64, 64, 33), noise=False)
    ijk = np.array([30, 34, 18])
    centre = (full.volume.affine @ np.array([*ijk, 1.0]))[:3]
    roi = render_case(4, (5, 5, 5), (6.0, 6.0, 11.25), noise=False, center=centre)
    np.testing.assert_allclose(roi.volume.data, full.volume.data[28:33, 32:37, 16:21], atol=1e-3)


def test_noise_is_mild_and_seeded(case):
    quiet = render_case(11, SHAPE, noise=False).volume.data
    noise = case.volume.data - quiet
    inside = (quiet > -900) & (quiet < 1000)
    assert 0.5 < noise[inside].std() < 10


def test_force_validation():
    with pytest.raises(ConfigError, match="unknown label"):
        render_case(1, SHAPE, force={"Pneumothorax": 1})
    with pytest.raises(ConfigError, match="shape"):
        render_case(1, (0, 4, 4))
    with pytest.raises(ConfigError, match="spacing"):
        render_case(1, SHAPE, spacing=(1.0, -1.0, 1.0))
    forced = render_case(1, SHAPE, force={name: 1 for name in CTRATE_LABELS})
    assert all(forced.labels.values()) and set(forced.details) == set(CTRATE_LABELS)
