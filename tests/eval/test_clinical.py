"""Clinical precision/recall/F1 against hand-computed values and scikit-learn."""

import numpy as np
import pytest
from sklearn.metrics import f1_score, precision_score, recall_score

from ctvl.errors import InputError
from ctvl.eval.clinical import clinical_metrics

LABELS = ("A", "B", "C")


def test_hand_computed_three_labels() -> None:
    # label A: tp 2, fp 1, fn 0 -> P 2/3, R 1, F1 0.8; label B: tp 1, fp 0, fn 1 -> P 1, R 1/2, F1 2/3
    # label C: never true, predicted once -> P 0, R 0 (0/0), F1 0
    truth = np.array([[1, 1, 0], [1, 1, 0], [0, 0, 0], [0, 0, 0]])
    pred = np.array([[1, 1, 0], [1, 0, 0], [1, 0, 1], [0, 0, 0]])
    m = clinical_metrics(truth, pred, labels=LABELS)
    a, b, c = (m["per_label"][k] for k in LABELS)
    assert (a["tp"], a["fp"], a["fn"], a["support"], a["predicted"]) == (2, 1, 0, 2, 3)
    assert a["precision"] == pytest.approx(2 / 3) and a["recall"] == 1.0 and a["f1"] == pytest.approx(0.8)
    assert b["precision"] == 1.0 and b["recall"] == 0.5 and b["f1"] == pytest.approx(2 / 3)
    assert c["f1"] == 0.0 and c["support"] == 0
    assert m["macro_f1"] == pytest.approx((0.8 + 2 / 3 + 0) / 3)
    # micro: tp 3, fp 2, fn 1 -> P 3/5, R 3/4, F1 2/3
    assert m["micro_precision"] == pytest.approx(0.6) and m["micro_recall"] == pytest.approx(0.75)
    assert m["micro_f1"] == pytest.approx(2 / 3)
    # weighted by support (2, 2, 0)
    assert m["weighted_f1"] == pytest.approx((0.8 * 2 + 2 / 3 * 2) / 4)
    assert m["labels_without_support"] == ["C"] and m["n_reports"] == 4


def test_matches_sklearn_on_random_labels() -> None:
    rng = np.random.default_rng(0)
    truth = (rng.random((200, 18)) < 0.3).astype(int)
    pred = np.where(rng.random((200, 18)) < 0.8, truth, 1 - truth)
    m = clinical_metrics(truth, pred)
    for avg in ("macro", "micro", "weighted"):
        assert m[f"{avg}_f1"] == pytest.approx(f1_score(truth, pred, average=avg))
        assert m[f"{avg}_precision"] == pytest.approx(precision_score(truth, pred, average=avg))
        assert m[f"{avg}_recall"] == pytest.approx(recall_score(truth, pred, average=avg))
    per = f1_score(truth, pred, average=None)
    assert [v["f1"] for v in m["per_label"].values()] == pytest.approx(per.tolist())


def test_perfect_prediction_and_bad_input() -> None:
    truth = np.eye(18, dtype=int)
    assert clinical_metrics(truth, truth)["macro_f1"] == 1.0
    with pytest.raises(InputError, match="shape"):
        clinical_metrics(np.zeros((2, 3)), np.zeros((2, 3)))
    with pytest.raises(InputError, match="different numbers"):
        clinical_metrics(np.zeros((2, 18)), np.zeros((3, 18)))
    with pytest.raises(InputError, match="0/1"):
        clinical_metrics(np.full((1, 18), 2), np.zeros((1, 18)))
