"""Where and how big a report says each finding is, and impressions that say otherwise than their findings.

The label-level check (:meth:`ctvl.eval.labeler.ReportLabeler.contradictions`) sees an impression that
affirms what the findings rule out; it does not see one that moves or resizes a finding: "A solid nodule
measuring 8 mm is seen in the right lower lobe." in the findings and "Pulmonary nodule of 5 mm in the left
lower lobe." in the impression. On 120 held-out seed-7 phantoms the previous shipped model moved a finding in
47 reports, and the current one gives a size the findings do not in 45; the reference reports do neither
(0 of 2,500 moved, seeds 0 and 7; 0 of 120 resized).

The specifics (:data:`SPECIFIC`) are locations (a lobe, "right/left lung", a sided pleural effusion) and sizes
("8 mm"). An impression sentence states one *misplaced* when no findings sentence stating one of the same
labels names it. Sentences stating no label, and labels the findings never state, are left to the label-level
checks.

Written by hand: no library reads locations or sizes out of report text.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

__all__ = ["SPECIFIC", "Misplaced", "specific_phrases", "misplaced", "placed_for", "same_kind"]

SPECIFIC = re.compile(
    r"\b(?:(?:right|left) (?:upper|middle|lower) lobe|(?:right|left) lung|(?:right|left|bilateral) pleural effusion"
    r"|\d+(?:\.\d+)? mm\b)",
    re.IGNORECASE,
)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


@dataclass(frozen=True)
class Misplaced:
    """One location or size an impression states that the findings do not state for the same finding."""

    start: int  # character offset of the phrase in the impression text
    phrase: str  # the phrase, lower case ("left lower lobe")
    labels: tuple[str, ...]  # the labels its impression sentence states
    sentence: str  # that impression sentence
    given: tuple[str, ...]  # what the findings state for those labels (:func:`placed_for`), in order


def specific_phrases(text: str) -> list[tuple[int, str]]:
    """(character offset, lower-case phrase) of each location or size :data:`SPECIFIC` finds in ``text``."""
    return [(m.start(), m.group(0).lower()) for m in SPECIFIC.finditer(text)]


def _sentences(text: str) -> list[tuple[int, str]]:
    """(character offset, sentence) of each sentence of ``text``."""
    out, offset = [], 0
    for sentence in _SENTENCE_END.split(text):
        begin = text.index(sentence, offset) if sentence else offset
        offset = begin + len(sentence)
        if sentence.strip():
            out.append((begin, sentence))
    return out


def placed_for(findings: str, labels: Sequence[str], label: Callable[[str], dict[str, int]]) -> list[str]:
    """Locations and sizes the findings sentences stating any of ``labels`` name, in order, lower case."""
    wanted, out = set(labels), []
    for _, sentence in _sentences(findings):
        if wanted & {name for name, v in label(sentence).items() if v}:
            out += [phrase for _, phrase in specific_phrases(sentence) if phrase not in out]
    return out


def _kind(phrase: str) -> str:
    if phrase.endswith(" mm"):
        return "size"
    return "pleura" if phrase.endswith("pleural effusion") else "lung"


def same_kind(a: str, b: str) -> bool:
    """Whether two phrases can stand for each other: both lung regions, both pleural sides, or both sizes."""
    return _kind(a) == _kind(b)


def misplaced(findings: str, impression: str, label: Callable[[str], dict[str, int]]) -> list[Misplaced]:
    """Locations and sizes the impression gives a finding that the findings do not give it.

    Args:
        findings: the findings section.
        impression: the impression section.
        label: text -> the 18 labels (name -> 0/1) it affirms (``ReportLabeler.label``).

    Returns:
        The misplaced phrases in the order they occur in ``impression`` (empty when every location agrees).
    """
    stated_in_findings = {name for _, sentence in _sentences(findings) for name, v in label(sentence).items() if v}
    out: list[Misplaced] = []
    for begin, sentence in _sentences(impression):
        stated = tuple(name for name, v in label(sentence).items() if v and name in stated_in_findings)
        given = tuple(placed_for(findings, stated, label)) if stated else ()
        if not given:
            continue
        out.extend(
            Misplaced(start=begin + at, phrase=phrase, labels=stated, sentence=sentence, given=given)
            for at, phrase in specific_phrases(sentence)
            if phrase not in given
        )
    return out
