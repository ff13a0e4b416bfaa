"""Each of the 18 abnormalities changes voxels in the right region, in the right direction and HU range.

For every label the same patient is rendered with only that finding forced on and with every finding
forced off (64 x 64 x 33, noise off); the difference must lie in the expected anatomical region.
Then a 1 mm region of interest around the finding checks the HU of the lesion itself.
"""

from __future__ import annotations

import numpy as np
import pytest

from ctvl.data.labels import CTRATE_LABELS
from ctvl.data.phantom import build_patient, render_case
from ctvl.data.phantom.anatomy import SIDES

SEED = 7
SHAPE = (64, 64, 33)
NONE = {name: 0 for name in CTRATE_LABELS}
LUNG_LABELS = {
    "Emphysema",
    "Atelectasis",
    "Lung nodule",
    "Lung opacity",
    "Pulmonary fibrotic sequela",
    "Pleural effusion",
    "Mosaic attenuation pattern",
    "Peribronchial thickening",
    "Consolidation",
    "Bronchiectasis",
    "Interlobular septal thickening",
}
MEDIASTINAL_LABELS = {
    "Arterial wall calcification",
    "Coronary artery wall calcification",
    "Cardiomegaly",
    "Pericardial effusion",
    "Hiatal hernia",
    "Lymphadenopathy",
}
RAISES_HU = LUNG_LABELS - {"Emphysema", "Mosaic attenuation pattern", "Bronchiectasis"} | {
    "Cardiomegaly",
    "Lymphadenopathy",
}


def _roi_check(label: str, v: np.ndarray) -> None:
    """HU of the lesion core (occupancy > 0.9 at 1 mm voxels)."""
    med = float(np.median(v))
    checks = {
        "Medical material": lambda: v.max() >= 2000,
        "Arterial wall calcification": lambda: v.max() >= 400,
        "Cardiomegaly": lambda: 30 <= med <= 60,
        "Pericardial effusion": lambda: 0 <= med <= 25,
        "Coronary artery wall calcification": lambda: v.max() >= 400,
        "Hiatal hernia": lambda: v.min() <= -900 and 0 <= np.median(v[v > -500]) <= 50,
        "Lymphadenopathy": lambda: 20 <= med <= 50,
        "Emphysema": lambda: med <= -950,
        "Atelectasis": lambda: 0 <= med <= 60,
        "Lung nodule": lambda: 20 <= med <= 50,
        "Lung opacity": lambda: -700 <= med <= -350,
        "Pulmonary fibrotic sequela": lambda: -150 <= med <= 40,
        "Pleural effusion": lambda: 0 <= med <= 25,
        "Mosaic attenuation pattern": lambda: np.percentile(v, 5) < -880 and np.percentile(v, 95) > -820,
        "Peribronchial thickening": lambda: -100 <= med <= 60,
        "Consolidation": lambda: 0 <= med <= 60,
        "Bronchiectasis": lambda: med <= -900,
        "Interlobular septal thickening": lambda: -250 <= med <= 0,
    }
    assert checks[label](), f"{label}: core HU median {med:.0f}, min {v.min():.0f}, max {v.max():.0f}"


@pytest.fixture(scope="module")
def baseline():
    case = render_case(SEED, SHAPE, force=NONE, with_masks=True, noise=False)
    patient = build_patient(SEED, force=NONE)
    aff = case.volume.affine
    i, j, k = np.meshgrid(*(np.arange(n) for n in SHAPE), indexing="ij")
    world = [aff[d, 0] * i + aff[d, 1] * j + aff[d, 2] * k + aff[d, 3] for d in range(3)]
    geo = patient.geometry
    lung = np.zeros(SHAPE, dtype=bool)
    for side in SIDES:
        lung |= geo.lung(side).sdf(*world, 1.0) < 6.0
    cavity = geo.cavity.sdf(*world, 1.0) < 6.0
    return {"case": case, "patient": patient, "world": world, "lung": lung, "cavity": cavity}


def test_baseline_has_no_findings(baseline):
    case = baseline["case"]
    assert sum(case.labels.values()) == 0 and case.details == {}
    assert not any(name in case.masks for name in CTRATE_LABELS if name != "Cardiomegaly")


@pytest.mark.parametrize("label", CTRATE_LABELS)
def test_finding_changes_the_right_voxels(baseline, label):
    force = {**NONE, label: 1}
    on = render_case(SEED, SHAPE, force=force, with_masks=True, noise=False)
    off = baseline["case"]
    assert on.labels == force
    diff = on.volume.data - off.volume.data
    changed = np.abs(diff) > 25.0
    assert changed.sum() >= 3, f"{label} changed only {changed.sum()} voxels"
    x = baseline["world"][0]
    if label in LUNG_LABELS:
        assert baseline["lung"][changed].mean() >= 0.85, f"{label}: changes outside the lungs"
    if label in MEDIASTINAL_LABELS:
        dx = baseline["patient"].anatomy.dx
        central = baseline["cavity"] & (np.abs(x - dx) < 110.0)
        assert central[changed].mean() >= 0.9, f"{label}: changes outside the mediastinum"
    if label in RAISES_HU:
        assert (diff[changed] > 0).mean() >= 0.9, f"{label} should raise HU"
    if label == "Emphysema":
        assert (diff[changed] < 0).mean() >= 0.9
        assert (on.volume.data[baseline["lung"]] < -950).sum() > (off.volume.data[baseline["lung"]] < -950).sum() + 20
    if label == "Mosaic attenuation pattern":
        assert 0.2 <= (diff[changed] > 0).mean() <= 0.8  # both denser and more lucent patches
    if label == "Medical material":
        hot = on.volume.data >= 2000
        assert hot.any() and not baseline["lung"][hot].all()
    # the lesion itself, at 1 mm, centred on its most-covered voxel
    mask = on.masks[label]
    centre = on.volume.affine @ np.array([*np.unravel_index(np.argmax(mask), SHAPE), 1.0])
    shape, spacing = (
        ((60, 60, 30), (3.0, 3.0, 3.0)) if label == "Mosaic attenuation pattern" else ((40, 40, 40), (1.0, 1.0, 1.0))
    )
    roi = render_case(SEED, shape, spacing, force=force, with_masks=True, noise=False, center=centre[:3])
    core = roi.masks[label] > 0.9
    assert core.sum() >= 5, f"{label}: lesion core not found in the region of interest"
    _roi_check(label, roi.volume.data[core])


def test_pleural_effusion_is_dependent_and_on_its_side(baseline):
    case = render_case(SEED, SHAPE, force={**NONE, "Pleural effusion": 1}, with_masks=True, noise=False)
    finding = case.details["Pleural effusion"]
    mask = case.masks["Pleural effusion"] > 0.5
    x, y = baseline["world"][0], baseline["world"][1]
    dx = baseline["patient"].anatomy.dx
    right, left = (mask & (x > dx)).sum(), (mask & (x < dx)).sum()
    assert {"R": right > 0 and left == 0, "L": left > 0 and right == 0, "B": right > 0 and left > 0}[finding.side]
    assert y[mask].mean() < y[baseline["lung"]].mean() - 20.0  # fluid lies at the back of a supine patient


def test_cardiomegaly_raises_the_cardiothoracic_ratio():
    normal = build_patient(SEED, force=NONE).geometry
    big = build_patient(SEED, force={**NONE, "Cardiomegaly": 1})
    ctr = big.details["Cardiomegaly"].params["ctr"]
    assert normal.cardiothoracic_ratio() < 0.5 <= 0.55 <= ctr
    assert big.geometry.cardiothoracic_ratio() == pytest.approx(ctr, abs=0.02)
    assert f"{ctr:.2f}" in big.findings


def test_bronchiectatic_bronchi_are_wider_than_their_arteries():
    patient = build_patient(SEED, force={**NONE, "Bronchiectasis": 1})
    finding = patient.details["Bronchiectasis"]
    tree, arteries = patient.anatomy.airways, patient.anatomy.arteries
    lumen = tree.radius[tree.gen > 0] * finding.params["dilation"]
    assert np.all(lumen > arteries.radius)  # the signet-ring sign: lumen larger than the companion artery
    assert np.all(tree.radius[tree.gen > 0] < arteries.radius)  # while normal bronchi are not


def test_forcing_one_finding_keeps_the_rest_of_the_patient():
    a = build_patient(SEED, force={"Lung nodule": 1})
    b = build_patient(SEED, force={"Lung nodule": 0})
    assert {k: v for k, v in a.labels.items() if k != "Lung nodule"} == {
        k: v for k, v in b.labels.items() if k != "Lung nodule"
    }
    np.testing.assert_array_equal(a.anatomy.airways.p1, b.anatomy.airways.p1)
    for label in set(a.details) - {"Lung nodule"}:
        assert a.details[label].lobes == b.details[label].lobes and a.details[label].kind == b.details[label].kind
