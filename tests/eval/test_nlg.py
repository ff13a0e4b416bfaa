"""BLEU / ROUGE-L / CIDEr / METEOR through pycocoevalcap, with ctvl's tokeniser."""

import pytest

from ctvl.errors import InputError
from ctvl.eval.nlg import java_available, nlg_metrics, tokenize

REFS = [
    "There is a 5 mm nodule in the right upper lobe of the lung.",
    "Heart contour and size are normal and no pleural effusion was detected.",
    "Emphysematous changes are observed in both lungs with subsegmental atelectasis.",
]


def test_tokenize() -> None:
    assert tokenize("Nodule, 2.5 mm; 3x4 cm (RUL)!") == "nodule 2.5 mm 3x4 cm rul"
    assert tokenize("Pleural effusion-thickening wasn't seen.") == "pleural effusion thickening wasn't seen"
    assert tokenize("") == ""


def test_identical_reports_score_maximum() -> None:
    m = nlg_metrics(REFS, REFS, meteor=False)
    for n in range(1, 5):
        assert m[f"bleu_{n}"] == pytest.approx(1.0)
    assert m["rouge_l"] == pytest.approx(1.0)
    assert m["cider"] == pytest.approx(10.0)
    assert m["meteor"] is None and m["meteor_status"] == "skipped: disabled"


def test_worse_predictions_score_lower_and_bleu_orders() -> None:
    preds = ["There is a nodule in the left lower lobe.", "The heart is normal.", "No emphysema."]
    m = nlg_metrics(preds, REFS, meteor=False)
    best = nlg_metrics(REFS, REFS, meteor=False)
    assert 0.0 < m["bleu_1"] < best["bleu_1"]
    assert m["bleu_1"] >= m["bleu_2"] >= m["bleu_3"] >= m["bleu_4"]
    assert m["rouge_l"] < 1.0 and m["cider"] < best["cider"]


def test_several_references_and_errors() -> None:
    m = nlg_metrics(["no pleural effusion"], [["pleural effusion is absent", "no pleural effusion"]], meteor=False)
    assert m["bleu_1"] == pytest.approx(1.0)
    with pytest.raises(InputError):
        nlg_metrics(["a"], ["a", "b"], meteor=False)
    with pytest.raises(InputError):
        nlg_metrics([], [], meteor=False)


@pytest.mark.slow
@pytest.mark.skipif(not java_available(), reason="METEOR needs Java")
def test_meteor_with_java() -> None:
    preds = [REFS[0], "The heart is normal.", REFS[2]]
    m = nlg_metrics(preds, REFS)
    assert m["meteor_status"] == "ok"
    assert 0.3 < m["meteor"] < 1.0
