"""Duplicate fraction, distinct-n and length statistics."""

import pytest

from ctvl.errors import InputError
from ctvl.eval.degenerate import degenerate_metrics, distinct_n


def test_distinct_n_hand_computed() -> None:
    texts = ["the heart is normal", "The heart is enlarged."]
    # unigrams: the heart is normal the heart is enlarged -> 5 distinct of 8
    assert distinct_n(texts, 1) == pytest.approx(5 / 8)
    # bigrams: (the heart) (heart is) (is normal) (the heart) (heart is) (is enlarged) -> 4 of 6
    assert distinct_n(texts, 2) == pytest.approx(4 / 6)
    assert distinct_n(["one"], 2) == 0.0


def test_duplicates_and_lengths() -> None:
    preds = ["No nodule.", "no nodule", "Emphysema in both lungs.", ""]
    refs = ["a b c d", "a b", "a b c d e f", "a b"]
    m = degenerate_metrics(preds, refs)
    assert m["duplicate_fraction"] == pytest.approx(1 - 3 / 4)
    assert m["most_common_fraction"] == pytest.approx(0.5)
    assert m["empty_fraction"] == pytest.approx(0.25)
    assert m["mean_length"] == pytest.approx((2 + 2 + 4 + 0) / 4)
    assert m["ref_mean_length"] == pytest.approx(14 / 4)
    assert m["length_ratio"] == pytest.approx(2.0 / 3.5)


def test_all_identical_reports() -> None:
    m = degenerate_metrics(["Normal chest CT."] * 10)
    assert m["duplicate_fraction"] == pytest.approx(0.9) and m["most_common_fraction"] == 1.0
    assert m["ref_mean_length"] is None and m["length_ratio"] is None


def test_errors() -> None:
    with pytest.raises(InputError):
        degenerate_metrics([])
    with pytest.raises(InputError):
        degenerate_metrics(["a"], ["a", "b"])
