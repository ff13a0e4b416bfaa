"""Rule-based labeler: free-text chest CT report → the 18 CT-RATE labels (0/1)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from ctvl.data.labels import CTRATE_LABELS
from ctvl.eval.labeler.lexicon import LEXICON, Rule
from ctvl.eval.labeler.negation import sentence_scopes
from ctvl.eval.labeler.text import split_sentences


@dataclass(frozen=True)
class Mention:
    """One lexicon match in a report.

    Attributes:
        label: the CT-RATE label the mention belongs to.
        sentence: the normalised sentence it was found in.
        start: character offset of the mention in ``sentence``.
        text: the matched text.
        negated: whether it lies in a negation scope.
        uncertain: whether the sentence hedges it ("possible", "?").
        questioned: whether the mention itself is a question mark differential ("(atelectasis?)"),
            which CT-RATE's annotators do not count as a finding.
    """

    label: str
    sentence: str
    start: int
    text: str
    negated: bool
    uncertain: bool
    questioned: bool = False


_QUESTIONED = re.compile(r"\w* ?\?")


def _clause(sentence: str, start: int, end: int) -> str:
    """The comma-delimited part of ``sentence`` around ``[start, end)`` (one item of a findings list)."""
    lo = sentence.rfind(",", 0, start) + 1
    hi = sentence.find(",", end)
    return sentence[lo : hi if hi >= 0 else len(sentence)]


_RULES: tuple[tuple[str, Rule], ...] = tuple((label, rule) for label in CTRATE_LABELS for rule in LEXICON[label])


@lru_cache(maxsize=16384)
def sentence_mentions(sentence: str) -> tuple[Mention, ...]:
    """All lexicon mentions of one normalised sentence, in label order.

    Cached: CT-RATE-style reports are written from templates, so most sentences recur and the
    labeler runs at thousands of reports per second once warm.
    """
    out: list[Mention] = []
    for label, rule in _RULES:
        if rule.pattern.search(sentence) is None:  # cheapest test first: most sentences match no rule
            continue
        if rule.where is not None and rule.where.search(sentence) is None:
            continue
        scopes = sentence_scopes(sentence)
        for match in rule.pattern.finditer(sentence):
            start = match.start()
            if rule.unless is not None:
                context = _clause(sentence, start, match.end()) if rule.clause_unless else sentence
                if rule.unless.search(context) is not None:
                    continue
            out.append(
                Mention(
                    label,
                    sentence,
                    start,
                    match.group(0),
                    rule.negatable and scopes.is_negated(start),
                    scopes.is_uncertain(start),
                    _QUESTIONED.match(sentence, match.end()) is not None,
                )
            )
    return tuple(out)


class ReportLabeler:
    """Turn report texts into the 18 CT-RATE labels with a lexicon and NegEx-style scopes.

    Deterministic, offline and fast (thousands of reports per second on one core: sentence scopes
    are cached because reports reuse template sentences).

    Args:
        uncertain_as_positive: count hedged findings ("possible consolidation", "nodule?") as
            present, as CT-RATE's manual annotations do. If False they count as absent.
    """

    labels: tuple[str, ...] = CTRATE_LABELS

    def __init__(self, *, uncertain_as_positive: bool = True) -> None:
        self.uncertain_as_positive = uncertain_as_positive

    def mentions(self, text: str) -> list[Mention]:
        """All lexicon mentions of ``text`` with their negation and uncertainty status.

        Args:
            text: one report (findings, impression or both).

        Returns:
            Mentions in sentence order, then label order.
        """
        out: list[Mention] = []
        for sentence in split_sentences(text):
            out.extend(sentence_mentions(sentence))
        return out

    def _positive(self, mention: Mention) -> bool:
        if mention.negated or mention.questioned:
            return False
        return self.uncertain_as_positive or not mention.uncertain

    def label(self, text: str) -> dict[str, int]:
        """Label one report.

        Args:
            text: one report. Empty or missing text gives all zeros.

        Returns:
            ``{label name: 0 or 1}`` for the 18 CT-RATE labels, in CT-RATE order.
        """
        found = {m.label for m in self.mentions(text or "") if self._positive(m)}
        return {name: int(name in found) for name in self.labels}

    def ruled_out(self, text: str) -> list[str]:
        """Labels ``text`` mentions only negated ("No pericardial effusion was detected."), in CT-RATE order."""
        affirmed, negated = set(), set()
        for m in self.mentions(text or ""):
            if not m.questioned:
                (negated if m.negated else affirmed).add(m.label)
        return [name for name in self.labels if name in negated - affirmed]

    def contradictions(self, findings: str, impression: str) -> list[str]:
        """Labels the impression affirms while the findings only rule them out.

        "No lymph node of pathological size was seen" in the findings and "Mediastinal
        lymphadenopathy." in the impression is such a pair. Only this direction counts: a finding the
        impression calls normal ("a 9 mm node ... No lymphadenopathy.") is how radiologists write.
        Question-mark differentials are ignored; hedged mentions count as affirmed.

        Args:
            findings: the findings section.
            impression: the impression section.

        Returns:
            Label names in CT-RATE order (empty when the sections agree).
        """

        def polarity(text: str) -> tuple[set[str], set[str]]:
            affirmed, negated = set(), set()
            for m in self.mentions(text or ""):
                if not m.questioned:
                    (negated if m.negated else affirmed).add(m.label)
            return affirmed, negated

        f_affirmed, f_negated = polarity(findings)
        i_affirmed, _ = polarity(impression)
        clash = i_affirmed & (f_negated - f_affirmed)
        return [name for name in self.labels if name in clash]

    def label_many(self, texts: Iterable[str]) -> np.ndarray:
        """Label many reports.

        Args:
            texts: N report texts.

        Returns:
            (N, 18) int64 array of 0/1 in CT-RATE label order.
        """
        rows = [list(self.label(t).values()) for t in texts]
        return np.asarray(rows, dtype=np.int64).reshape(-1, len(self.labels))

    def explain(self, text: str) -> dict[str, list[str]]:
        """Evidence per label: the sentences that made (or negated) each mention.

        Args:
            text: one report.

        Returns:
            ``{label: ["+ sentence", "- sentence (negated)", "? sentence (uncertain)"]}`` for labels
            with at least one mention.
        """
        out: dict[str, list[str]] = {}
        for m in self.mentions(text or ""):
            mark = "-" if m.negated else ("?" if (m.uncertain or m.questioned) else "+")
            line = f"{mark} [{m.text}] {m.sentence}"
            if line not in out.setdefault(m.label, []):
                out[m.label].append(line)
        return out


_DEFAULT: ReportLabeler | None = None


def label_reports(texts: Sequence[str]) -> np.ndarray:
    """Label reports with the default :class:`ReportLabeler`.

    Args:
        texts: N report texts.

    Returns:
        (N, 18) int64 array of 0/1 in CT-RATE label order.
    """
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = ReportLabeler()
    return _DEFAULT.label_many(texts)
