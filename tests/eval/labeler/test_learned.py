"""The learned layer: trains on rule candidates, explains its decisions, keeps weights out of the package."""

import json
from pathlib import Path

import numpy as np
import pytest

from ctvl.data.labels import CTRATE_LABELS
from ctvl.errors import InputError
from ctvl.eval.labeler.encoder import DIM
from ctvl.eval.labeler.learned import LearnedLabeler, load_weights, save_weights

J = CTRATE_LABELS.index("Lymphadenopathy")


class WordEncoder:
    """A fake sentence encoder: one dimension says whether the sentence says 'millimetric'."""

    def encode(self, sentences):
        out = np.zeros((len(sentences), DIM), np.float32)
        for i, s in enumerate(sentences):
            out[i, 0] = 3.0 if "millimetric" in s else -3.0
        return out


def _data():
    texts, truth = [], []
    for i in range(20):  # convention to learn: millimetric nodes are not lymphadenopathy
        size = "millimetric" if i % 2 else "enlarged"
        texts.append(f"There are {size} lymph nodes in the mediastinum. Heart size is normal.")
        row = [0] * 18
        row[J] = int(size == "enlarged")
        truth.append(row)
    return texts, np.array(truth)


def test_layer_learns_a_convention_the_rules_miss_and_explains_it() -> None:
    texts, truth = _data()
    model = LearnedLabeler.fit(texts, truth, C=10.0, encoder=WordEncoder(), mode="hybrid")
    assert model.rules.label_many(texts)[:, J].tolist() == [1] * 20  # the rules call every node positive
    assert model.label_many(texts)[:, J].tolist() == truth[:, J].tolist()
    lines = model.explain("There are millimetric lymph nodes in the mediastinum.")["Lymphadenopathy"]
    assert lines[0].startswith("+ [lymph nodes]") and lines[-1].startswith("learned: 0 (score 0.")
    assert "rules 1" in lines[-1] and "millimetric lymph nodes" in lines[-1]
    assert model.label("")["Lymphadenopathy"] == 0  # no candidate sentence: 0, as with the rules


def test_unsure_scores_are_marked_and_hybrid_keeps_the_rules_there() -> None:
    texts, truth = _data()
    model = LearnedLabeler.fit(texts, truth, C=10.0, encoder=WordEncoder(), mode="hybrid")
    model.coef[:] = 0.0
    model.intercept[:] = 0.0  # every score 0.5: unsure
    assert model.label(texts[1])["Lymphadenopathy"] == 1  # the rules' decision
    assert "unsure" in model.explain(texts[1])["Lymphadenopathy"][-1]


def test_weights_round_trip_outside_the_package_only(tmp_path: Path) -> None:
    texts, truth = _data()
    model = LearnedLabeler.fit(texts, truth, encoder=WordEncoder())
    save_weights(model, tmp_path / "w", licence="CC BY-NC-SA 4.0")
    assert "CC BY-NC-SA 4.0" in (tmp_path / "w" / "LICENSE.txt").read_text()
    again = load_weights(tmp_path / "w", encoder=WordEncoder())
    assert np.array_equal(again.label_many(texts), model.label_many(texts))
    import ctvl

    with pytest.raises(InputError, match="outside the ctvl package"):
        save_weights(model, Path(ctvl.__file__).parent / "weights", licence="x")
    with pytest.raises(InputError, match="not a learned labeler folder"):
        load_weights(tmp_path)


def test_a_failed_save_leaves_the_previous_weights_whole(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    texts, truth = _data()
    model = LearnedLabeler.fit(texts, truth, encoder=WordEncoder())
    save_weights(model, tmp_path / "w", licence="old licence")
    real = Path.write_text

    def fail_on_licence(self: Path, *args, **kwargs):  # weights and meta are written, the licence fails
        if self.name == "LICENSE.txt":
            raise OSError("disk full")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", fail_on_licence)
    with pytest.raises(OSError, match="disk full"):
        save_weights(model, tmp_path / "w", licence="new licence")
    monkeypatch.undo()
    assert "old licence" in (tmp_path / "w" / "LICENSE.txt").read_text()
    assert json.loads((tmp_path / "w" / "meta.json").read_text())["licence"] == "old licence"
    load_weights(tmp_path / "w", encoder=WordEncoder())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w"]
