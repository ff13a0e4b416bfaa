"""Report BPE: lossless round trip, fixed special tokens, prompt template, serialisation, determinism."""

from __future__ import annotations

import pytest

from ctvl.errors import ConfigError, InputError
from ctvl.report.text_tokenizer import (
    BOS,
    EOS,
    FINDINGS,
    IMAGE_END,
    IMAGE_START,
    IMPRESSION,
    SPECIAL_TOKENS,
    ReportTextTokenizer,
    drop_repeated_sentences,
    format_report,
)

REPORTS = [
    ("Heart size is within normal limits. No pleural effusion was detected.", "No acute findings."),
    ("Cardiomegaly is present; the cardiothoracic ratio is increased to 0.58.", "Cardiomegaly."),
    ("There is an area of consolidation in the left lower lobe, measuring about 110 mm.", "Consolidation."),
    ("Bilateral pleural effusions are present, up to 36 mm deep.", "Bilateral pleural effusion."),
] * 5


@pytest.fixture(scope="module")
def tok() -> ReportTextTokenizer:
    return ReportTextTokenizer.train([t for pair in REPORTS for t in pair], vocab_size=400)


def test_round_trip_is_lossless_even_for_unseen_text(tok):
    for text in ("Consolidation in the left lower lobe.", "Größe 3 mm — naïve ünseen ±0.5 HU", "  two  spaces"):
        assert tok.decode(tok.encode(text)) == text


def test_special_tokens_have_the_first_ids_and_never_come_from_plain_text(tok):
    assert [tok.special[t] for t in SPECIAL_TOKENS] == list(range(len(SPECIAL_TOKENS)))
    ids = tok.encode("<findings> <eos> <bos>")
    assert not set(ids) & set(tok.special.values())


def test_prompt_and_target_template(tok):
    p = tok.prompt()
    assert p.before == [tok.special[BOS], tok.special[IMAGE_START]]
    assert p.after == [tok.special[IMAGE_END], tok.special[FINDINGS]]
    target = tok.target(" Heart is normal. ", "Normal.")
    assert target[-1] == tok.special[EOS] and tok.special[IMPRESSION] in target
    assert tok.split_report(target) == ("Heart is normal.", "Normal.")


def test_split_report_stops_at_eos_and_handles_a_missing_impression(tok):
    ids = tok.encode("Findings only.") + [tok.eos_id] + tok.encode("garbage after eos")
    assert tok.split_report(ids) == ("Findings only.", "")


def test_serialisation_round_trip_gives_identical_ids(tok):
    again = ReportTextTokenizer.from_dict(tok.to_dict())
    text = REPORTS[1][0]
    assert again.encode(text) == tok.encode(text) and again.vocab_size == tok.vocab_size


def test_training_is_deterministic(tok):
    other = ReportTextTokenizer.train([t for pair in REPORTS for t in pair], vocab_size=400)
    assert other.to_dict() == tok.to_dict()


def test_bad_inputs():
    with pytest.raises(InputError):
        ReportTextTokenizer.train(["", "   "])
    with pytest.raises(ConfigError):
        ReportTextTokenizer.from_dict({"kind": "wordpiece"})


def test_format_report():
    assert format_report("A.", "B.") == "Findings: A.\n\nImpression: B."
    assert format_report("A.", "") == "Findings: A."


def test_drop_repeated_sentences_keeps_the_first_and_the_order():
    text = (
        "A port catheter is present. Lungs are clear.  a port  catheter is present. "
        "The nodule measures 8.5 mm. Lungs are clear!"
    )
    assert drop_repeated_sentences(text) == (
        "A port catheter is present. Lungs are clear. The nodule measures 8.5 mm. Lungs are clear!"
    )  # "clear." and "clear!" differ in their end mark: both kept
    assert drop_repeated_sentences("") == ""
    assert drop_repeated_sentences("No effusion. No effusion.") == "No effusion."
    once = "Cardiac size is normal. No effusion."
    assert drop_repeated_sentences(once) == once
