"""Sentence splitting and normalisation of CT-RATE-style reports."""

from ctvl.eval.labeler.text import normalize, split_sentences


def test_normalize_unifies_punctuation_and_case() -> None:
    assert normalize("  Heart\u2019s SIZE \u2013 normal\u2022 ") == "heart's size - normal."


def test_split_keeps_decimals_and_splits_on_periods_semicolons_quotes_and_bullets() -> None:
    text = (
        "Nodule of 2.3 mm in the right lung. When examined in the lung window; emphysema is seen. "
        '" Emphysema \u2022 Nodule 4.5 mm'
    )
    assert split_sentences(text) == [
        "nodule of 2.3 mm in the right lung",
        "when examined in the lung window",
        "emphysema is seen",
        "emphysema",
        "nodule 4.5 mm",
    ]


def test_split_joins_hyphenated_words_and_rewrites_dash_no() -> None:
    assert split_sentences("Pleural effusion-thickening was not detected.") == [
        "pleural effusion thickening was not detected"
    ]
    assert split_sentences("Pericardial effusion - no thickening was detected.") == [
        "pericardial effusion thickening was not detected"
    ]


def test_split_numbered_lists_and_empty_input() -> None:
    assert split_sentences("1. Emphysema 2. Atelectasis") == ["emphysema", "atelectasis"]
    assert split_sentences("") == []
    assert split_sentences("   ...  ") == []
