"""Self-consistent decoding: contradictions between findings and impression are re-decoded away."""

from __future__ import annotations

import pytest
import torch

from ctvl.eval.labeler import ReportLabeler
from ctvl.report.bundle import load_report_model
from ctvl.report.consistency import (
    ConsistentReport,
    FirstTokenBan,
    drop_contradicting,
    drop_misplaced,
    follow_prompt,
    make_consistent,
    sentence_starts,
)
from ctvl.report.generate import ReportGenerator
from ctvl.report.model import ReportModel, ReportModelConfig
from ctvl.report.text_tokenizer import IMPRESSION, ReportTextTokenizer
from tests.report.factory import shared

TEXTS = [
    "No lymph node of pathological size was seen. Heart size is normal.",
    "Mediastinal lymphadenopathy. Cardiomegaly.",
    "No pleural effusion. Normal heart.",
    "Bilateral pleural effusion. Emphysema in both upper lobes.",
    "Normal.",
]
LABELER = ReportLabeler()


@pytest.fixture(scope="module")
def text() -> ReportTextTokenizer:
    return ReportTextTokenizer.train(TEXTS, vocab_size=320)


def report_ids(text: ReportTextTokenizer, findings: str, impression: str) -> list[int]:
    return text.target(findings, impression)[:-1]  # generated ids stop before <eos>


def consistent(text: ReportTextTokenizer, ids: list[int], **kwargs) -> ConsistentReport:
    """``make_consistent`` with the text tokenizer's split/decode and the shared labeler; ``kwargs`` the rest."""
    return make_consistent(
        ids,
        split=text.split_report,
        decode=text.decode,
        impression_id=text.special[IMPRESSION],
        labeler=LABELER,
        **kwargs,
    )


def test_first_token_ban_acts_on_the_first_step_only() -> None:
    ban = FirstTokenBan(banned=[2, 5])
    scores = torch.zeros(3, 8)
    first = ban(torch.zeros(3, 4, dtype=torch.long), scores)
    assert torch.isinf(first[:, [2, 5]]).all() and torch.isfinite(first[:, [0, 1, 3, 4, 6, 7]]).all()
    assert torch.isfinite(ban(torch.zeros(3, 5, dtype=torch.long), scores)).all()
    assert torch.isfinite(scores).all()  # the caller's scores are not modified


def test_sentence_starts_point_at_each_sentence(text: ReportTextTokenizer) -> None:
    ids = text.encode("No lymph node of pathological size was seen. Heart size is normal. Normal.")
    starts = sentence_starts(text.decode, ids)
    assert [s for _, s in starts] == [
        "No lymph node of pathological size was seen.",
        "Heart size is normal.",
        "Normal.",
    ]
    for k, sentence in starts:
        assert text.decode(ids[k:]).strip().startswith(sentence)


def test_impression_sentence_is_redecoded_when_the_model_reads_absent(text: ReportTextTokenizer) -> None:
    ids = report_ids(text, TEXTS[0], "Mediastinal lymphadenopathy. Cardiomegaly.")
    impression_at = ids.index(text.special[IMPRESSION]) + 1
    calls = []

    def redecode(prefix: list[int], banned: list[int]) -> list[int]:
        calls.append((len(prefix), banned))
        return prefix + text.encode("Cardiomegaly.")

    out = consistent(
        text,
        ids,
        present=lambda label: False,
        redecode=redecode,
    )
    assert calls == [(impression_at, [ids[impression_at]])]  # restarted at the impression's first sentence
    assert out.redecodes == 1 and out.unresolved == []
    assert text.split_report(out.ids) == (TEXTS[0], "Cardiomegaly.")


def test_findings_sentence_is_redecoded_when_the_model_reads_present(text: ReportTextTokenizer) -> None:
    ids = report_ids(text, TEXTS[0], "Mediastinal lymphadenopathy.")
    seen = []

    def redecode(prefix: list[int], banned: list[int]) -> list[int]:
        seen.append(len(prefix))
        return prefix + report_ids(text, "Mediastinal lymph nodes are enlarged.", "Mediastinal lymphadenopathy.")

    out = consistent(
        text,
        ids,
        present=lambda label: label == "Lymphadenopathy",
        redecode=redecode,
    )
    assert seen == [0] and out.redecodes == 1 and out.unresolved == []  # the findings' first sentence


def test_a_stubborn_contradiction_stops_after_the_limit(text: ReportTextTokenizer) -> None:
    ids = report_ids(text, TEXTS[0], "Mediastinal lymphadenopathy.")
    out = consistent(
        text,
        ids,
        present=lambda label: False,
        redecode=lambda prefix, banned: ids,
        max_redecodes=3,
    )
    assert out.redecodes == 3 and out.unresolved == ["Lymphadenopathy"]
    kept, dropped = drop_contradicting(TEXTS[0], "Mediastinal lymphadenopathy. Cardiomegaly.", LABELER)
    assert kept == "Cardiomegaly." and dropped == ["Mediastinal lymphadenopathy."]


def test_continue_report_keeps_the_prefix_and_honours_the_ban(text: ReportTextTokenizer) -> None:
    torch.manual_seed(0)
    cfg = {
        "visual_dim": 4,
        "lm": {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "max_position_embeddings": 256},
        "max_new_tokens": 12,
    }
    model = ReportModel(config=ReportModelConfig.from_dict(cfg), text=text).eval()
    codes = torch.sign(torch.randn(4, 2, 2, 2))
    prefix = text.encode("No pleural effusion.")
    free = model.continue_report(codes, prefix, [])
    assert free[: len(prefix)] == prefix and len(free) <= 12
    if len(free) > len(prefix):
        banned = model.continue_report(codes, prefix, [free[len(prefix)]])
        assert banned[: len(prefix)] == prefix and (
            len(banned) == len(prefix) or banned[len(prefix)] != free[len(prefix)]
        )
    assert model.continue_report(codes, prefix, [], max_new_tokens=len(prefix)) == prefix  # no room left


def _patched_generator(monkeypatch, continuation: str) -> tuple[ReportGenerator, list]:
    """The tiny shared bundle, its LM replaced by a scripted one: it writes a self-contradicting report."""
    loaded = load_report_model(shared()["bundle"])
    text = loaded.text
    first = report_ids(text, TEXTS[0], "Mediastinal lymphadenopathy. Cardiomegaly.")
    calls: list = []

    def continue_report(codes, prefix, banned, max_new_tokens=None, num_beams=None, states=None):
        calls.append((len(prefix), list(banned)))
        return prefix + text.encode(continuation)

    monkeypatch.setattr(loaded.model, "generate_with_probabilities", lambda *a, **k: ([first], None))
    monkeypatch.setattr(loaded.model, "continue_report", continue_report)
    return ReportGenerator(loaded=loaded, labeler=LABELER), calls


def test_generator_redecodes_the_contradicting_sentence(monkeypatch) -> None:
    gen, calls = _patched_generator(monkeypatch, "Cardiomegaly.")
    codes = torch.zeros(gen.loaded.model.config.visual_dim, 3, 4, 4)
    report = gen.from_codes([codes])[0]
    assert len(calls) == 1 and report.redecodes == 1
    assert report.findings == TEXTS[0] and report.impression == "Cardiomegaly."
    assert not LABELER.contradictions(report.findings, report.impression)
    assert not any("rule out" in w for w in report.warnings) and report.labels["Lymphadenopathy"] == 0


def test_generator_removes_what_redecoding_cannot_fix(monkeypatch) -> None:
    gen, calls = _patched_generator(monkeypatch, "Mediastinal lymphadenopathy. Cardiomegaly.")
    codes = torch.zeros(gen.loaded.model.config.visual_dim, 3, 4, 4)
    report = gen.from_codes([codes])[0]
    assert len(calls) == 4 and report.redecodes == 4
    assert [b for _, b in calls][-1] == sorted(set(b for _, bs in calls for b in bs))  # bans accumulate
    assert report.impression == "Cardiomegaly."
    assert any("were removed after 4 re-decodes: Mediastinal lymphadenopathy." in w for w in report.warnings)


def _impression_at(text: ReportTextTokenizer):
    k = text.special[IMPRESSION]
    return lambda ids: ids.index(k) if k in ids else len(ids)


def test_labeler_names_what_a_text_only_rules_out() -> None:
    assert LABELER.ruled_out("No pleural effusion. Normal heart.") == ["Pleural effusion"]
    assert LABELER.ruled_out("No pleural effusion on the left. Right pleural effusion.") == []
    assert LABELER.ruled_out("Cardiomegaly.") == []


def test_findings_follow_a_prompt_that_states_present(text: ReportTextTokenizer) -> None:
    ids = report_ids(text, "Normal. No pleural effusion. Normal heart.", "Normal.")
    seen = []

    def redecode(prefix: list[int], banned: list[int]) -> list[int]:
        seen.append((len(prefix), banned))
        return prefix + report_ids(text, "Bilateral pleural effusion.", "Bilateral pleural effusion.")[0:]

    out = follow_prompt(
        ConsistentReport(ids=ids, redecodes=1),
        split_ids=_impression_at(text),
        decode=text.decode,
        labeler=LABELER,
        present=["Pleural effusion"],
        redecode=redecode,
    )
    start = sentence_starts(text.decode, ids)[1][0]  # the second sentence rules it out
    assert seen == [(start, [ids[start]])] and out.redecodes == 2 and out.unresolved == []
    assert LABELER.label(text.split_report(out.ids)[0])["Pleural effusion"] == 1


def test_a_prompt_the_lm_will_not_follow_stops_after_the_limit(text: ReportTextTokenizer) -> None:
    ids = report_ids(text, "No pleural effusion. Normal heart.", "Normal.")
    calls = []

    def redecode(prefix: list[int], banned: list[int]) -> list[int]:
        calls.append(list(banned))
        return prefix + report_ids(text, "No pleural effusion.", "Normal.")

    kwargs = dict(split_ids=_impression_at(text), decode=text.decode, labeler=LABELER, redecode=redecode)
    out = follow_prompt(ConsistentReport(ids=ids), present=["Pleural effusion"], max_redecodes=3, **kwargs)
    assert len(calls) == 3 and out.redecodes == 3 and out.unresolved == ["Pleural effusion"]
    assert calls[-1] == sorted(set(calls[-1])) and len(calls[-1]) >= 1  # bans accumulate at that position
    untouched = follow_prompt(ConsistentReport(ids=ids), present=["Cardiomegaly"], **kwargs)
    assert untouched.ids == ids and untouched.redecodes == 0  # nothing rules out what the prompt states


NODULE = "A solid nodule measuring 8 mm is seen in the right lower lobe."


def _location_fix(text: ReportTextTokenizer, impression: str, continuation: str, encode=True):
    ids = report_ids(text, NODULE, impression)
    calls = []

    def redecode(prefix: list[int], banned: list[int]) -> list[int]:
        calls.append((text.decode(prefix), banned))
        return prefix + text.encode(continuation)

    out = consistent(
        text,
        ids,
        present=lambda label: True,
        redecode=redecode,
        encode=text.encode if encode else None,
    )
    return out, calls


def test_a_misplaced_location_is_replaced_by_the_findings_own(text: ReportTextTokenizer) -> None:
    out, calls = _location_fix(
        text, "Pulmonary nodule of 8 mm in the left upper lobe. Cardiomegaly.", ". Cardiomegaly."
    )
    assert len(calls) == 1 and calls[0][1] == []  # forced, nothing banned
    assert calls[0][0].endswith("Pulmonary nodule of 8 mm in the right lower lobe")
    assert text.split_report(out.ids) == (NODULE, "Pulmonary nodule of 8 mm in the right lower lobe. Cardiomegaly.")
    assert out.redecodes == 1 and out.misplaced == []


def test_without_a_location_to_put_there_the_report_is_left_for_dropping(text: ReportTextTokenizer) -> None:
    impression = "Pulmonary nodule in the right lower lobe and left upper lobe. Cardiomegaly."
    out, calls = _location_fix(text, impression, "")
    assert calls == [] and out.misplaced == ["left upper lobe"]  # its only location is already in the sentence
    kept, dropped = drop_misplaced(NODULE, impression, LABELER)
    assert kept == "Cardiomegaly." and dropped == ["Pulmonary nodule in the right lower lobe and left upper lobe."]


def test_locations_are_not_checked_without_an_encoder(text: ReportTextTokenizer) -> None:
    out, calls = _location_fix(text, "Pulmonary nodule in the left upper lobe.", "", encode=False)
    assert calls == [] and out.redecodes == 0 and out.misplaced == ["left upper lobe"]


def test_generator_drops_an_impression_sentence_it_cannot_place(monkeypatch) -> None:
    loaded = load_report_model(shared()["bundle"])
    first = report_ids(loaded.text, NODULE, "Pulmonary nodule in the right lower lobe and left lung. Cardiomegaly.")
    monkeypatch.setattr(loaded.model, "generate_with_probabilities", lambda *a, **k: ([first], None))
    gen = ReportGenerator(loaded=loaded, labeler=LABELER)
    report = gen.from_codes([torch.zeros(loaded.model.config.visual_dim, 3, 4, 4)])[0]
    assert report.impression == "Cardiomegaly." and report.findings == NODULE
    assert any("gave a finding a location or size the findings do not were removed" in w for w in report.warnings)


def test_a_size_the_findings_do_not_give_is_replaced_by_theirs(text: ReportTextTokenizer) -> None:
    out, calls = _location_fix(text, "Pulmonary nodule of 5 mm in the right lower lobe.", " in the right lower lobe.")
    assert len(calls) == 1 and calls[0][0].endswith("Pulmonary nodule of 8 mm")
    assert text.split_report(out.ids)[1] == "Pulmonary nodule of 8 mm in the right lower lobe." and out.misplaced == []
