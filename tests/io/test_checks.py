"""HU / modality / size checks and the issue policy."""

import numpy as np
import pytest

from ctvl.errors import InputError
from ctvl.io.checks import (
    Issue,
    IssueLog,
    check_hu,
    check_modality,
    check_voxels,
    decide_metadata_rescale,
    duplicate_slices,
    padding_values,
    parse_metadata_row,
)
from tests.io.factory import chest_hu


def _hu(data, *, dtype="int16", slope=1.0, intercept=0.0, pad=()):
    return check_hu(data.astype(np.float32), stored_dtype=dtype, slope=slope, intercept=intercept, declared_padding=pad)


def test_real_looking_ct_passes():
    assert _hu(chest_hu()) == []


@pytest.mark.parametrize("pad", [-2048.0, -3024.0, -2000.0])
def test_padding_outside_the_fov_is_not_mistaken_for_non_hu(pad):
    vol = chest_hu().astype(np.float32)
    vol[:4] = pad  # a band outside the reconstruction circle
    assert _hu(vol) == []
    assert pad in padding_values(vol.ravel())


def test_declared_padding_is_excluded_even_when_not_the_minimum():
    vol = chest_hu().astype(np.float32)
    vol[:12] = -1400.0  # more than half the grid
    assert _hu(vol, pad=(-1400.0,)) == []
    assert "far below air" in _hu(vol)[0].message


def test_raw_values_without_intercept_warn_and_hint():
    raw = chest_hu().astype(np.float32) + 1024.0
    (issue,) = _hu(raw)
    assert not issue.refuse
    assert "no air near -1000 HU" in issue.message and "-1024 intercept" in issue.message


@pytest.mark.parametrize("intercept", [-1024.0, -8192.0])
def test_double_rescale_is_refused_and_says_so(intercept):
    twice = chest_hu().astype(np.float32) + intercept
    (issue,) = _hu(twice, intercept=intercept)
    assert issue.refuse and "rescaled twice" in issue.message
    assert f"{intercept:g}" in issue.message and "rescale='none'" in issue.message


def test_windowed_uint8_is_refused():
    img = np.clip((chest_hu().astype(np.float32) + 160) / 400 * 255, 0, 255).astype(np.uint8)
    (issue,) = _hu(img, dtype="uint8")
    assert issue.refuse and "8-bit" in issue.message and "windowed" in issue.message


def test_nan_voxels_are_refused():
    vol = chest_hu().astype(np.float32)
    vol[3, 4, 2] = np.nan
    (issue,) = _hu(vol, dtype="float32")
    assert issue.refuse and "1 voxels are NaN" in issue.message


@pytest.mark.parametrize(
    "modality, sop, expected, refuse",
    [
        ("CT", None, "CT", None),
        ("MR", None, "MR", True),
        ("PT", None, "unknown", True),
        (None, "1.2.840.10008.5.1.4.1.1.2", "CT", False),
        (None, "1.2.840.10008.5.1.4.1.1.4", "MR", True),
        (None, "1.2.840.10008.5.1.4.1.1.7", "unknown", False),
    ],
)
def test_modality_table(modality, sop, expected, refuse):
    got, issues = check_modality(modality, sop)
    assert got == expected
    assert [i.refuse for i in issues] == ([] if refuse is None else [refuse])


def test_voxel_cap_message_names_grid_and_cap():
    assert check_voxels((10, 10, 10), 1000) is None
    issue = check_voxels((4000, 4000, 4000), 2**31)
    assert issue.refuse and "4000 x 4000 x 4000" in issue.message and "238.4 GiB" in issue.message


def test_metadata_rescale_skipped_on_hu_data_applied_on_raw():
    hu = chest_hu().astype(np.float32)
    apply, issue = decide_metadata_rescale(hu, 1.0, -1024.0)
    assert not apply and "double rescaling" in issue.message and "-2" in issue.message
    apply, issue = decide_metadata_rescale(hu + 1024.0, 1.0, -1024.0)
    assert apply and issue is None
    apply, issue = decide_metadata_rescale(hu, 1.0, -8192.0)
    assert not apply and "-8192" in issue.message


def test_parse_metadata_row_accepts_ctrate_names():
    assert parse_metadata_row({"VolumeName": "x", "RescaleSlope": "1.0", "RescaleIntercept": "-8192"}) == (1.0, -8192.0)
    assert parse_metadata_row({"slope": 2, "intercept": 0}) == (2.0, 0.0)
    assert parse_metadata_row({"RescaleSlope": float("nan"), "RescaleIntercept": 0}) is None
    assert parse_metadata_row(None) is None


def test_duplicate_slices_found():
    vol = chest_hu()
    vol[:, :, 3] = vol[:, :, 2]
    assert duplicate_slices(vol) == [2]


def test_issue_log_strict_raises_lenient_records():
    strict = IssueLog(path="/x/scan.nii", strict=True)
    strict.add(Issue("just a note"))
    with pytest.raises(InputError, match=r"^/x/scan.nii: bad thing$"):
        strict.add(Issue("bad thing", refuse=True))
    lenient = IssueLog(path="/x/scan.nii", strict=False)
    lenient.extend([Issue("bad thing", refuse=True), Issue("note"), Issue("note"), None])
    assert lenient.warnings == ["bad thing (read_volume refuses this input)", "note"] and lenient.refused
