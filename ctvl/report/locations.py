"""Where a report puts its findings: lobe, lung and sided-effusion phrases, and impressions that move them.

The label-level check (:meth:`ctvl.eval.labeler.ReportLabeler.contradictions`) sees an impression that
affirms what the findings rule out; it does not see one that moves a finding: "2 pulmonary nodules ...; the
largest is 8 mm, in the right lower lobe." in the findings and "Pulmonary nodule of 8 mm in the left lower
lobe." in the impression. The shipped phantom model writes such a pair in 24 of 120 held-out reports
(seed 7); the reference reports never do (0 of 500, seeds 0 and 7).

An impression sentence is *misplaced* when it names a location (:data:`LOCATION`) that no findings
sentence stating one of the same labels names. Sentences stating no label, and labels the findings never
state, are left to the label-level checks.

Written by hand: no library reads locations out of report text.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

__all__ = ["LOCATION", "Misplaced", "location_phrases", "misplaced", "placed_for", "same_kind"]

LOCATION = re.compile(
    r"\b(?:(?:right|left) (?:upper|middle|lower) lobe|(?:right|left) lung|(?:right|left|bilateral) pleural effusion)",
    re.IGNORECASE,
)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


@dataclass(frozen=True)
class Misplaced:
    """One location an impression names that the findings do not name for the same finding."""

    start: int  # character offset of the phrase in the impression text
    phrase: str  # the phrase, lower case ("left lower lobe")
    labels: tuple[str, ...]  # the labels its impression sentence states


def location_phrases(text: str) -> list[tuple[int, str]]:
    """(character offset, lower-case phrase) of each location :data:`LOCATION` finds in ``text``."""
    return [(m.start(), m.group(0).lower()) for m in LOCATION.finditer(text)]


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
    """Locations the findings sentences stating any of ``labels`` name, in order of first mention, lower case."""
    wanted, out = set(labels), []
    for _, sentence in _sentences(findings):
        if wanted & {name for name, v in label(sentence).items() if v}:
            out += [phrase for _, phrase in location_phrases(sentence) if phrase not in out]
    return out


def same_kind(a: str, b: str) -> bool:
    """Whether two location phrases can stand for each other: both lung regions, or both pleural sides."""
    return a.endswith("pleural effusion") == b.endswith("pleural effusion")


def misplaced(findings: str, impression: str, label: Callable[[str], dict[str, int]]) -> list[Misplaced]:
    """Locations the impression names for a finding that the findings place elsewhere.

    Args:
        findings: the findings section.
        impression: the impression section.
        label: text -> the 18 labels (name -> 0/1) it affirms (``ReportLabeler.label``).

    Returns:
        The misplaced phrases in the order they occur in ``impression`` (empty when every location agrees).
    """
    placed: dict[str, set[str]] = {}
    for _, sentence in _sentences(findings):
        stated = [name for name, v in label(sentence).items() if v]
        for _, phrase in location_phrases(sentence):
            for name in stated:
                placed.setdefault(name, set()).add(phrase)
    out: list[Misplaced] = []
    for begin, sentence in _sentences(impression):
        stated = tuple(name for name, v in label(sentence).items() if v and name in placed)
        if not stated:
            continue
        where = set().union(*(placed[name] for name in stated))
        out.extend(
            Misplaced(start=begin + at, phrase=phrase, labels=stated)
            for at, phrase in location_phrases(sentence)
            if phrase not in where
        )
    return out
