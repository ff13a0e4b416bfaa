"""Self-consistent decoding: a report whose impression affirms what its findings rule out is re-decoded.

A small LM sometimes writes "No lymph node of pathological size was seen." in the findings and
"Mediastinal lymphadenopathy." in the impression (the shipped phantom model: 26 of 250 held-out reports).
A warning alone leaves the user with a report that contradicts itself, so the contradiction is removed
where it arises, in decoding:

1. the report labeler (handed in, :class:`TextLabeler`) names the labels the impression affirms while the
   findings only rule them out (:meth:`TextLabeler.contradictions`);
2. the model's own reading decides which side is wrong: the diagnosis prompt's state for that label (the
   visual label head, thresholded). Present: the findings sentence that rules it out is wrong; absent (or a
   model without a diagnosis prompt): the impression sentence that affirms it is;
3. decoding restarts at the first token of that sentence with that token banned as the next token
   (:class:`FirstTokenBan`; greedy or beam search as configured), so the LM writes another sentence there
   and everything after it;
4. up to ``max_redecodes`` restarts per report; a contradiction that survives them is removed by dropping
   the impression sentences that state it, and the report says so.

The same restart makes a report follow its diagnosis prompt (:func:`follow_prompt`): the LM is trained to
write what the 18 prompt tokens say, but for rarer labels it often falls back on its prior ("No pericardial
effusion or thickening was detected." under a prompt that says present). A findings sentence that rules
out a label the prompt states present is re-decoded with its first token banned, up to ``max_redecodes``
times per report; what the LM still will not write stays as it is (nothing is invented by hand).

Once the labels agree, the impression must also put each finding where the findings put it, at the size they
give it (:func:`ctvl.report.specifics.misplaced`: "left lower lobe" or "5 mm" in the impression for a nodule the
findings give as 8 mm in the right lower lobe). The misplaced phrase is replaced by the findings' own for that
finding (same kind: lung region, pleural side or size; one not yet named in the sentence) and decoding
continues after it,
sharing the ``max_redecodes`` budget. Banning the phrase's first token instead, as for label contradictions,
was tried: with "left" banned the LM wrote word salad ("Pulmonary nodule of 7 mm in the and the bronchi are
normal."). A sentence still misplaced after the restarts is dropped (:func:`drop_misplaced`) and the report
says so.

Written by hand: transformers offers constraints on the tokens generated, not on what a finished
sentence states, and no library checks a report's findings against its impression.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import torch

from ctvl.report.specifics import misplaced, same_kind

__all__ = [
    "MAX_REDECODES",
    "ConsistentReport",
    "FirstTokenBan",
    "TextLabeler",
    "drop_contradicting",
    "drop_misplaced",
    "follow_prompt",
    "make_consistent",
    "sentence_starts",
    "token_at",
]

MAX_REDECODES = 4
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


class TextLabeler(Protocol):
    """Reads the 18 CT-RATE labels from report text; generation is handed one (``ctvl.eval.labeler.ReportLabeler``)."""

    def label(self, text: str) -> dict[str, int]:
        """The 18 labels (name -> 0/1) a report's text states."""
        ...

    def contradictions(self, findings: str, impression: str) -> list[str]:
        """Labels the impression states but the findings rule out."""
        ...

    def ruled_out(self, text: str) -> list[str]:
        """Labels the text mentions only negated."""
        ...


class FirstTokenBan:
    """A transformers logits processor: the first token generated may not be one of ``banned``.

    Args:
        banned: token ids.
    """

    def __init__(self, *, banned: Sequence[int]) -> None:
        self.banned = sorted({int(t) for t in banned})
        self.start: int | None = None

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        """``input_ids`` (B, L) so far, ``scores`` (B, V) -> scores with the banned ids at -inf at the first step."""
        if self.start is None:
            self.start = int(input_ids.shape[1])
        if int(input_ids.shape[1]) == self.start and self.banned:
            scores = scores.clone()
            scores[:, self.banned] = float("-inf")
        return scores


def sentence_starts(decode: Callable[[Sequence[int]], str], ids: Sequence[int]) -> list[tuple[int, str]]:
    """Where each sentence of a section starts in its ids.

    Args:
        decode: ids -> text (the report tokenizer's).
        ids: the section's ids.

    Returns:
        (index into ``ids`` of the sentence's first token, the sentence) per sentence, in order.
    """
    text = decode(ids)
    out: list[tuple[int, str]] = []
    offset, k = 0, 0
    for sentence in _SENTENCE_END.split(text):
        begin = text.index(sentence, offset) if sentence else offset
        offset = begin + len(sentence)
        if not sentence.strip():
            continue
        k = token_at(decode, ids, begin, k)
        out.append((k, sentence.strip()))
    return out


def token_at(decode: Callable[[Sequence[int]], str], ids: Sequence[int], char: int, first: int = 0) -> int:
    """Index into ``ids`` of the token covering character ``char`` of ``decode(ids)`` (searched from ``first``)."""
    k = first
    while k < len(ids) and len(decode(ids[: k + 1]).rstrip()) <= char:
        k += 1
    return k


@dataclass
class ConsistentReport:
    """One report after self-consistent decoding."""

    ids: list[int]  # generated ids, up to and excluding <eos>
    redecodes: int = 0  # decoding restarts
    dropped: list[str] = field(default_factory=list)  # impression sentences removed as a last resort
    unresolved: list[str] = field(default_factory=list)  # labels still contradicted (before dropping)
    against_prompt: list[str] = field(default_factory=list)  # labels the prompt states present, the findings rule out
    misplaced: list[str] = field(
        default_factory=list
    )  # impression locations/sizes the findings do not give (at the end)


def _offending(
    decode: Callable[[Sequence[int]], str],
    section: Sequence[int],
    base: int,
    label: str,
    check: Callable[[str], list[str]],
) -> int | None:
    """Index (into the whole report) of the first sentence of ``section`` for which ``check`` names ``label``."""
    for start, sentence in sentence_starts(decode, section):
        if label in check(sentence):
            return base + start
    return None


def make_consistent(
    ids: list[int],
    *,
    split: Callable[[Sequence[int]], tuple[str, str]],
    decode: Callable[[Sequence[int]], str],
    impression_id: int,
    labeler: TextLabeler,
    present: Callable[[str], bool],
    redecode: Callable[[list[int], list[int]], list[int]],
    encode: Callable[[str], list[int]] | None = None,
    max_redecodes: int = MAX_REDECODES,
) -> ConsistentReport:
    """Re-decode ``ids`` until its impression no longer affirms what its findings rule out, nor gives a
    finding a location or size its findings do not (:func:`ctvl.report.specifics.misplaced`).

    Args:
        ids: one generated report (``findings <impression> impression``, no ``<eos>``).
        split: ids -> (findings, impression) text (``ReportTextTokenizer.split_report``).
        decode: ids -> text.
        impression_id: the ``<impression>`` token.
        labeler: reads contradictions.
        present: label -> whether the model's own reading (diagnosis prompt) says present.
        redecode: (prefix ids, banned first tokens) -> the report continued from the prefix (whole ids).
        encode: text -> ids; with it, a misplaced location or size is replaced by the findings' own of the same
            kind for that finding and decoding continues after it (None: neither is checked).
        max_redecodes: restarts at most.

    Returns:
        The consistent report (or the best effort, with what had to be dropped).
    """
    banned: dict[int, set[int]] = {}
    out = ConsistentReport(ids=list(ids))
    while out.redecodes < max_redecodes:
        findings, impression = split(out.ids)
        clash = labeler.contradictions(findings, impression)
        k = out.ids.index(impression_id) if impression_id in out.ids else len(out.ids)
        if clash:
            label, start = clash[0], None
            if present(label):  # the findings sentence that rules it out is the wrong one
                start = _offending(decode, out.ids[:k], 0, label, lambda s, i=impression: labeler.contradictions(s, i))
            if start is None:  # the impression sentence that affirms it
                start = _offending(
                    decode, out.ids[k + 1 :], k + 1, label, lambda s, f=findings: labeler.contradictions(f, s)
                )
        else:  # the labels agree: the impression must put each finding where the findings put it
            fix = None if encode is None else _moved(decode, encode, out.ids, k, labeler)
            if fix is None:
                break
            out.ids = redecode(out.ids[: fix[0]] + fix[1], [])
            out.redecodes += 1
            continue
        if start is None or start >= len(out.ids):
            break
        banned.setdefault(start, set()).add(out.ids[start])
        out.ids = redecode(out.ids[:start], sorted(banned[start]))
        out.redecodes += 1
    findings, impression = split(out.ids)
    out.unresolved = labeler.contradictions(findings, impression)
    out.misplaced = [m.phrase for m in misplaced(findings, impression, labeler.label)]
    return out


def _moved(
    decode: Callable[[Sequence[int]], str],
    encode: Callable[[str], list[int]],
    ids: Sequence[int],
    k: int,
    labeler: TextLabeler,
) -> tuple[int, list[int]] | None:
    """Where the impression (mark at ``k`` in ``ids``) first gives a finding a location or size that the
    findings replace with one of the same kind, and that one's ids; None when no misplaced phrase has one."""
    impression_ids = list(ids[k + 1 :])
    impression = decode(impression_ids)
    for moved in misplaced(decode(ids[:k]), impression, labeler.label):
        options = [p for p in moved.given if p not in moved.sentence.lower() and same_kind(p, moved.phrase)]
        if not options:
            continue
        j = token_at(decode, impression_ids, moved.start)
        if j >= len(impression_ids):
            continue
        lead = " " if decode(impression_ids[j : j + 1]).startswith(" ") else ""
        original = impression[moved.start : moved.start + len(moved.phrase)]
        phrase = options[0].capitalize() if original[:1].isupper() else options[0]
        return k + 1 + j, encode(lead + phrase)
    return None


def follow_prompt(
    report: ConsistentReport,
    *,
    split_ids: Callable[[Sequence[int]], int],
    decode: Callable[[Sequence[int]], str],
    labeler: TextLabeler,
    present: Sequence[str],
    redecode: Callable[[list[int], list[int]], list[int]],
    max_redecodes: int = MAX_REDECODES,
) -> ConsistentReport:
    """Re-decode the findings sentences that rule out what the diagnosis prompt states present.

    Args:
        report: a report (e.g. from :func:`make_consistent`); its ``redecodes`` count on.
        split_ids: ids -> index of the ``<impression>`` token (len(ids) when absent).
        decode: ids -> text.
        labeler: reads which labels a sentence rules out.
        present: labels the diagnosis prompt states present, in CT-RATE order.
        redecode: (prefix ids, banned first tokens) -> the report continued from the prefix.
        max_redecodes: restarts at most, for this step.

    Returns:
        The report, with ``redecodes`` increased by the restarts made here.
    """
    out = ConsistentReport(ids=list(report.ids), redecodes=report.redecodes, dropped=list(report.dropped))
    banned: dict[int, set[int]] = {}
    wanted = set(present)
    for _ in range(max_redecodes):
        k = split_ids(out.ids)
        start = None
        for s, sentence in sentence_starts(decode, out.ids[:k]):
            if wanted & set(labeler.ruled_out(sentence)):
                start = s
                break
        if start is None or start >= len(out.ids):
            break
        banned.setdefault(start, set()).add(out.ids[start])
        out.ids = redecode(out.ids[:start], sorted(banned[start]))
        out.redecodes += 1
    findings_end = split_ids(out.ids)
    text = decode(out.ids[:findings_end])
    out.unresolved = [label for label in labeler.ruled_out(text) if label in wanted]
    return out


def drop_contradicting(findings: str, impression: str, labeler: TextLabeler) -> tuple[str, list[str]]:
    """Impression without the sentences that affirm what the findings rule out; (impression, dropped)."""
    return _drop(impression, lambda sentence: bool(labeler.contradictions(findings, sentence)))


def drop_misplaced(findings: str, impression: str, labeler: TextLabeler) -> tuple[str, list[str]]:
    """Impression without the sentences that give a finding a location or size the findings do not."""
    return _drop(impression, lambda sentence: bool(misplaced(findings, sentence, labeler.label)))


def _drop(impression: str, wrong: Callable[[str], bool]) -> tuple[str, list[str]]:
    kept, dropped = [], []
    for sentence in _SENTENCE_END.split(impression.strip()):
        if sentence.strip() and wrong(sentence):
            dropped.append(sentence.strip())
        elif sentence.strip():
            kept.append(sentence.strip())
    return " ".join(kept), dropped
