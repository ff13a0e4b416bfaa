"""CT-RATE-style agreement metrics, bootstrap intervals, disagreement lists and k-fold cross-validation."""

import numpy as np
import pytest

from ctvl.errors import InputError
from ctvl.eval.labeler import ReportLabeler
from ctvl.eval.labeler.agreement import agreement_metrics, agreement_summary, bootstrap_agreement, disagreements
from ctvl.eval.labeler.crossval import fold_of, folds, out_of_fold


def test_cell_and_report_disagreement_count_what_they_say() -> None:
    truth = np.zeros((4, 3), int)
    pred = truth.copy()
    pred[0, 1] = 1
    pred[0, 2] = 1  # two cells in one report
    pred[3, 0] = 1
    m = agreement_metrics(truth, pred)
    assert m["cell_disagreement"] == pytest.approx(3 / 12)
    assert m["report_disagreement"] == pytest.approx(2 / 4)
    assert m["macro_f1"] == 0.0 and m["micro_f1"] == 0.0
    assert agreement_metrics(truth + 1, truth + 1)["macro_f1"] == 1.0


def test_bootstrap_interval_brackets_the_value_and_is_deterministic() -> None:
    rng = np.random.default_rng(1)
    truth = rng.integers(0, 2, (200, 18))
    pred = np.where(rng.random((200, 18)) < 0.05, 1 - truth, truth)
    ci = bootstrap_agreement(truth, pred, n_boot=300)
    m = agreement_metrics(truth, pred)
    for key, (lo, hi) in ci.items():
        assert lo <= m[key] <= hi
    assert ci == bootstrap_agreement(truth, pred, n_boot=300)
    summary = agreement_summary(truth, pred, n_boot=100)
    assert summary["cell_disagreement_pct"] == round(100 * m["cell_disagreement"], 2)
    assert sum(summary["per_label_errors"].values()) == int((truth != pred).sum())


def test_shapes_are_checked_in_one_line() -> None:
    with pytest.raises(InputError, match="one shape"):
        agreement_metrics(np.zeros((2, 18)), np.zeros((3, 18)))


def test_disagreements_carry_the_deciding_sentence() -> None:
    lab = ReportLabeler()
    texts = ["Pleural effusion is observed on the right.", "Heart size is normal."]
    truth = np.zeros((2, 18), int)
    pred = lab.label_many(texts)
    rows = disagreements(["a", "b"], texts, truth, pred, lab.explain)
    assert [(r["id"], r["label"], r["pred"]) for r in rows] == [("a", "Pleural effusion", 1)]
    assert "pleural effusion is observed" in rows[0]["evidence"][0]


def test_folds_are_fixed_by_id_and_cover_all() -> None:
    ids = [f"r{i}" for i in range(100)]
    f = folds(ids, 5)
    assert set(f) == {0, 1, 2, 3, 4} and all(fold_of(i, 5) == x for i, x in zip(ids, f))
    with pytest.raises(InputError):
        fold_of("x", 1)


def test_out_of_fold_never_predicts_a_report_it_trained_on() -> None:
    ids = [f"r{i}" for i in range(30)]
    texts = [f"text {i}" for i in range(30)]
    truth = np.zeros((30, 18), int)

    class Memo:  # predicts 1 on texts it was trained on, 0 otherwise
        def __init__(self, seen: set) -> None:
            self.seen = seen

        def label_many(self, xs):
            return np.array([[int(x in self.seen)] * 18 for x in xs])

    pred, models = out_of_fold(ids, texts, truth, lambda x, y: Memo(set(x)), k=3)
    assert len(models) == 3 and pred.sum() == 0
