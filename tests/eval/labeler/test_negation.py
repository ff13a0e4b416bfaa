"""NegEx-style negation and uncertainty scopes."""

import pytest

from ctvl.eval.labeler.negation import sentence_scopes
from ctvl.eval.labeler.text import split_sentences


def _negated(sentence: str, word: str) -> bool:
    (norm,) = split_sentences(sentence)
    return sentence_scopes(norm).is_negated(norm.index(word))


@pytest.mark.parametrize(
    ("sentence", "word"),
    [
        ("No pleural effusion was detected.", "effusion"),
        ("Pleural effusion was not observed.", "effusion"),
        ("Pleural effusion-thickening was not detected in both hemithorax.", "effusion"),
        ("No enlarged lymph nodes in prevascular, pre-paratracheal or hilar regions were detected.", "lymph"),
        ("Aeration is normal and no nodular or infiltrative lesion is detected.", "infiltrative"),
        ("The heart is normal in size without pericardial effusion.", "pericardial"),
        ("Pericardial, pleural effusion was not detected.", "pericardial"),
        ("There is no consolidation in the lungs.", "consolidation"),
        ("The nodule seen in the previous examination has disappeared.", "nodule"),
        ("The catheter described before was removed.", "catheter"),
        ("Ground glass areas in the left lung have completely regressed.", "ground"),
        ("The pleural effusion on the left, which was observed in the previous study, was not detected.", "effusion"),
    ],
)
def test_negated(sentence: str, word: str) -> None:
    assert _negated(sentence, word)


@pytest.mark.parametrize(
    ("sentence", "word"),
    [
        ("Emphysema is observed in both lungs.", "emphysema"),
        ("No mass was detected, atelectasis is observed in the left lower lobe.", "atelectasis"),
        ("Emphysema is seen and a nodule was not detected.", "emphysema"),
        ("No pleural effusion, but there is consolidation in the right lower lobe.", "consolidation"),
        ("Lymph nodes that do not reach pathological size are observed.", "lymph"),
        ("Malignancy cannot be excluded for the nodule in the right upper lobe.", "nodule"),
        ("The nodule shows no significant change compared to the previous examination.", "nodule"),
        ("There are emphysema areas in the chest wall, pleural extension is not observed.", "emphysema"),
        ("Apart from atelectasis, no finding was detected.", "atelectasis"),
    ],
)
def test_affirmed(sentence: str, word: str) -> None:
    assert not _negated(sentence, word)


def test_uncertainty_is_marked_sentence_wide_but_not_negated() -> None:
    (norm,) = split_sentences("Possible consolidation in the right lower lobe.")
    scopes = sentence_scopes(norm)
    start = norm.index("consolidation")
    assert scopes.is_uncertain(start) and not scopes.is_negated(start)
    (plain,) = split_sentences("Consolidation in the right lower lobe.")
    assert not sentence_scopes(plain).is_uncertain(0)
