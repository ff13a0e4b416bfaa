"""Label sampling: prevalences close to CT-RATE's, plausible co-occurrences, determinism (labels only: fast)."""

from __future__ import annotations

import numpy as np
import pytest

from ctvl.data.labels import CTRATE_LABELS
from ctvl.data.phantom import TARGET_PREVALENCE, sample_labels
from ctvl.data.phantom.prevalence import ORDER, WEIGHTS, intercepts

N = 4000


@pytest.fixture(scope="module")
def drawn():
    return sample_labels(123, N)


def test_shapes_and_values(drawn):
    labels, latents = drawn
    assert labels.shape == (N, 18) and labels.dtype == np.int8 and set(np.unique(labels)) <= {0, 1}
    assert latents["age_years"].shape == (N,) and 20 <= latents["age_years"].min() and latents["age_years"].max() <= 90
    assert set(latents["sex"]) == {"M", "F"}


def test_prevalences_match_targets(drawn):
    labels, _ = drawn
    for j, name in enumerate(CTRATE_LABELS):
        assert abs(labels[:, j].mean() - TARGET_PREVALENCE[name]) < 0.03, name
    assert all(0.05 <= p <= 0.46 for p in TARGET_PREVALENCE.values())


def _conditional(labels: np.ndarray, given: str, then: str) -> float:
    return labels[labels[:, CTRATE_LABELS.index(given)] == 1][:, CTRATE_LABELS.index(then)].mean()


@pytest.mark.parametrize(
    "given, then",
    [
        ("Arterial wall calcification", "Coronary artery wall calcification"),
        ("Consolidation", "Lung opacity"),
        ("Pleural effusion", "Atelectasis"),
        ("Cardiomegaly", "Pericardial effusion"),
        ("Bronchiectasis", "Peribronchial thickening"),
    ],
)
def test_clinical_co_occurrences(drawn, given, then):
    labels, _ = drawn
    base = labels[:, CTRATE_LABELS.index(then)].mean()
    assert _conditional(labels, given, then) > 1.8 * base  # at least 1.8 times more likely together


def test_calcification_grows_with_age(drawn):
    labels, latents = drawn
    calc = labels[:, CTRATE_LABELS.index("Arterial wall calcification")]
    assert calc[latents["age_years"] > 70].mean() > 2 * calc[latents["age_years"] < 45].mean()


def test_deterministic_by_seed():
    a, _ = sample_labels(5, 50)
    b, _ = sample_labels(np.random.default_rng(5), 50)
    c, _ = sample_labels(6, 50)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_model_is_well_formed():
    assert set(ORDER) == set(CTRATE_LABELS)
    assert all(-12.0 < b < 6.0 for b in intercepts().values())
    assert all(isinstance(w, float) for weights in WEIGHTS.values() for w in weights.values())
