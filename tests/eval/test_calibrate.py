"""Choosing the diagnosis-prompt threshold on the training scans."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import f1_score

from ctvl.eval.calibrate import GRID, calibrate_on_split, choose_threshold, macro_f1
from tests.report.factory import shared, tiny_config


def test_macro_f1_matches_scikit_learn():
    rng = np.random.default_rng(0)
    y = (rng.random((40, 18)) < 0.2).astype(int)
    p = (rng.random((40, 18)) < 0.3).astype(int)
    y[:, 5] = p[:, 5] = 0  # a label nobody has nor predicts counts as 0, as in scikit-learn's zero_division=0
    assert macro_f1(y, p) == pytest.approx(f1_score(y, p, average="macro", zero_division=0))


def test_choose_threshold_is_the_grid_argmax():
    rng = np.random.default_rng(1)
    y = (rng.random((200, 18)) < 0.15).astype(int)
    probs = np.clip(0.25 * y + rng.random((200, 18)) * 0.3, 0, 1)  # positives sit 0.25 higher
    best, scores = choose_threshold(probs, y)
    assert set(scores) == set(GRID)
    brute = {t: f1_score(y, probs > t, average="macro", zero_division=0) for t in GRID}
    assert best == max(brute, key=lambda t: (round(brute[t], 4), -abs(t - 0.5)))
    assert scores[best] == pytest.approx(brute[best], abs=1e-4)
    assert 0.25 <= best <= 0.3  # between the two clouds: negatives in [0, 0.3], positives in [0.25, 0.55]
    with pytest.raises(ValueError):
        choose_threshold(probs[:, :3], y[:, :3])


def test_calibrate_a_trained_model_with_a_diagnosis_prompt(tmp_path):
    from ctvl.report.bundle import export_report_bundle, load_report_model
    from ctvl.report.task import ReportTask
    from ctvl.train import train

    art = shared()
    result = train(
        ReportTask(),
        tiny_config(tmp_path / "run", art["data"], art["tokenizer"], art["root"] / "cache", label_prompt=True),
    )
    found = calibrate_on_split(result.run_dir, art["data"], split="train", cache_dir=art["root"] / "cache")
    assert found["n_scans"] == 6 and found["split"] == "train" and found["threshold"] in GRID
    assert found["scores"][found["threshold"]] == max(found["scores"].values())
    out = export_report_bundle(
        result.run_dir, tmp_path / "bundle", model_overrides={"label_threshold": found["threshold"]}
    )
    loaded = load_report_model(out)
    assert loaded.model.config.label_prompt and loaded.model.config.label_threshold == found["threshold"]
    with pytest.raises(ValueError, match="text-only"):
        calibrate_on_split(art["textonly"], art["data"])
