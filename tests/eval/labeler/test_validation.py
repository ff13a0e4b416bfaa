"""Labeler accuracy on real manually labelled CT-RATE reports (held-out split) and on phantom reports."""

from pathlib import Path

import pytest

from ctvl.eval.labeler.validation import is_held_out, measure_on_csv, measure_on_phantoms

SHARED = Path(__file__).resolve().parents[3] / ".." / "shared" / "data"
MANUAL_CSV = SHARED / "reports" / "ctrate_manual_train.csv"


def test_held_out_split_is_fixed_and_about_a_quarter() -> None:
    ids = [f"train_{i}" for i in range(1, 801)]
    held = [i for i in ids if is_held_out(i)]
    assert held == [i for i in ids if is_held_out(i)]
    assert 160 < len(held) < 240
    assert is_held_out("train_4") is False and is_held_out(held[0]) is True


@pytest.mark.skipif(not MANUAL_CSV.is_file(), reason=f"shared data absent: {MANUAL_CSV}")
def test_real_reports_held_out_accuracy() -> None:
    result = measure_on_csv(MANUAL_CSV)
    held = result["held_out"]
    assert held["n_reports"] == 213
    # measured on the held-out split (docs/labeler.md): macro 0.948, micro 0.953, lowest label
    # Peribronchial thickening 0.79 (support 15). The target (macro >= 0.95, no label < 0.85)
    # is not reached yet; these floors guard against regressions.
    assert held["macro_f1"] >= 0.945
    assert held["micro_f1"] >= 0.95
    assert held["min_label_f1"] >= 0.75
    assert result["development"]["macro_f1"] >= 0.96


@pytest.mark.slow
def test_phantom_reports() -> None:
    pytest.importorskip("ctvl.data.phantom", reason="phantom generator not available")
    result = measure_on_phantoms(list(range(200)))
    assert result["macro_f1"] >= 0.99, result["errors"]


@pytest.mark.skipif(not MANUAL_CSV.is_file(), reason=f"shared data absent: {MANUAL_CSV}")
def test_ctrate_style_agreement_on_real_reports() -> None:
    from ctvl.eval.labeler.validation import measure_agreement

    res = measure_agreement(MANUAL_CSV, n_boot=50)
    held = res["rules"]["held_out"]
    # measured (docs/labeler.md): held-out 1.80 % cells, 23.9 % reports; guards against regressions
    assert held["n_reports"] == 213 and held["cell_disagreement_pct"] <= 1.9 and held["report_disagreement_pct"] <= 25
    lo, hi = held["cell_disagreement_pct_95ci"]
    assert lo <= held["cell_disagreement_pct"] <= hi
    assert res["rules"]["speed"]["cold_reports_per_second"] >= 100  # shared CPU; 347 measured
    assert len(res["disagreements"]["rules"]) == sum(res["rules"]["all"]["per_label_errors"].values())
