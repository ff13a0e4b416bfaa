"""NegEx-style negation and uncertainty scopes inside one sentence.

Written by hand rather than with negspacy because the scopes needed here differ from NegEx's fixed
five-token window: CT-RATE reports put long location lists between a cue and its verb ("No enlarged
lymph nodes in prevascular, pre-paratracheal, subcarinal or bilateral hilar-axillary pathological
dimensions were detected"). The rules:

* a **pre-negation** cue ("no", "without", "absence of", ...) negates what follows it up to the
  next scope terminator;
* a **post-negation** cue ("was not observed", "were not detected", ...) negates what precedes it
  back to the previous terminator;
* terminators are clause boundaries ("but", "however", "apart from", ...) and affirmative predicates
  ("is observed", "there are", ...), so "No mass was detected, atelectasis is observed" and
  "Emphysema is seen and a nodule was not detected" each keep their positive finding;
* pseudo-negations ("cannot be excluded", "no significant change", "did not reach pathological
  size") are masked first so they neither negate nor terminate;
* **uncertainty** cues ("possible", "suspicious for", "?", ...) mark, but do not negate, a mention.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

_VERBS = (
    r"(?:observed|seen|detected|noted|identified|found|visuali[sz]ed|present|evident|demonstrated"
    r"|appreciated|monitored|encountered|described|distinguished|determined|visible|apparent|shown"
    r"|recognized|revealed|followed|measured|considered|evaluated|viewed|reported)"
)
_AUX = r"(?:is|are|was|were|has been|have been|had been|be|been|being|can be|could be|may be|will be)"

PSEUDO_NEGATION = re.compile(
    r"\b(?:can ?not|could not|can't|couldn't|may not|not to) be (?:\w+ly )?(?:excluded|ruled out|eliminated|"
    r"distinguished|differentiated|separated|evaluated|assessed)\b"
    r"|\bnot (?:\w+ly )?(?:excluded|ruled out)\b"
    r"|\bno (?:(?:significant|marked|obvious|apparent|remarkable|considerable|major|prominent|interval|size|"
    r"dimensional|numerical|morphological|radiological) )*(?:change|progression|regression|difference"
    r"|increase|decrease|interval change)s?\b"
    r"|\bnot (?:significantly |markedly )?(?:changed|increased|decreased|regressed|progressed)\b"
    r"|\bdid not (?:change|increase|decrease|regress|progress)\b"
    r"|\b(?:do|does|did|that do|that did|which do|which did) not reach\b|\bnot reaching\b|\bnot reach\b"
    r"|\bnot only\b|\bnot well\b|\bno longer\b(?= (?:than|exceed))"
)
PRE_NEGATION = re.compile(
    r"\b(?:no|without|neither|nor|absence of|free of|negative for|"
    r"there (?:is|are|was|were) no|not (?:any|a)|none of)\b"
)
POST_NEGATION = re.compile(
    r"\b(?:(?:" + _AUX + r"|was|were|is|are|could|can|did|does|do) )?not (?:\w+ly )?(?:be )?" + _VERBS + r"\b"
    r"|\b(?:" + _AUX + r" )?(?:absent|excluded|ruled out|not present|not visible)\b"
    r"|\b(?:has|have|had|has been|have been|was|were|is|are|appears? to be|appears? to have) (?:completely |totally )?"
    r"(?:disappeared|resolved|regressed)\b(?! partially)|\bregressed completely\b"
    r"|\b(?:disappeared|resolved)\b|\b(?:was|were|has been|have been) (?:\w+ly )?removed\b"
)
AFFIRMATIVE = re.compile(
    r"\b(?<!which )(?<!that )(?<!who )" + _AUX + r" (?:\w+ly )?" + _VERBS + r"\b"
    r"|\bthere (?:is|are|was|were|has been|have been)\b(?! no\b)"
    r"|\b(?:is|are|was|were) (?:compatible|consistent) with\b"
)
BOUNDARY = re.compile(
    r"\b(?:but|however|although|though|whereas|while|except|apart from|other than|besides|yet|"
    r"nevertheless|in addition|additionally|also|on the other hand)\b|\(|\)|,(?= (?:and |but )?(?:there|a|an|the)\b)"
)
UNCERTAINTY = re.compile(
    r"\?|\b(?:possible|possibly|probable|probably|likely|suspicious|suspected|suspicion|questionable|"
    r"equivocal|suggestive of|suggesting|may be|might be|may represent|could be|cannot be excluded|"
    r"can not be excluded|not excluded|differential diagnosis|in favor of|favou?ring)\b"
)


def _affirmative_spans(text: str) -> list[tuple[int, int]]:
    """Character spans of affirmative predicates ("is observed", "there are") in ``text``."""
    return [(m.start(), m.end()) for m in AFFIRMATIVE.finditer(text)]


@dataclass(frozen=True)
class Scopes:
    """Negated and uncertain character intervals of one sentence (half-open ``[start, end)``)."""

    negated: tuple[tuple[int, int], ...]
    uncertain: tuple[tuple[int, int], ...]

    def is_negated(self, start: int) -> bool:
        """Whether the mention starting at ``start`` lies inside a negation scope."""
        return any(lo <= start < hi for lo, hi in self.negated)

    def is_uncertain(self, start: int) -> bool:
        """Whether the mention starting at ``start`` lies inside an uncertainty scope."""
        return any(lo <= start < hi for lo, hi in self.uncertain)


def _mask(text: str, pattern: re.Pattern[str]) -> str:
    """Replace every match of ``pattern`` with underscores of the same length (offsets stay valid)."""
    return pattern.sub(lambda m: "_" * len(m.group(0)), text)


@lru_cache(maxsize=4096)
def sentence_scopes(sentence: str) -> Scopes:
    """Compute the negation and uncertainty scopes of one normalised sentence.

    Args:
        sentence: one normalised sentence (see :func:`ctvl.eval.labeler.text.split_sentences`).

    Returns:
        The :class:`Scopes` of the sentence. Cached: reports repeat the same template sentences.
    """
    masked = _mask(sentence, PSEUDO_NEGATION)
    post = [(m.start(), m.end()) for m in POST_NEGATION.finditer(masked)]
    masked = _mask(masked, POST_NEGATION)  # "was not observed" must not read as "observed"
    pre = [(m.start(), m.end()) for m in PRE_NEGATION.finditer(masked)]
    affirmative = _affirmative_spans(masked)
    stops = affirmative + [(m.start(), m.end()) for m in BOUNDARY.finditer(masked)] + post
    n = len(sentence)
    negated: list[tuple[int, int]] = []
    for _, hi in pre:  # forward scope: up to the next terminator
        negated.append((hi, min([s for s, _ in stops if s >= hi] + [n])))
    # a comma after an affirmative clause closes it ("there are X in A, B is not observed"); a comma
    # before any affirmative is a list ("pericardial, pleural effusion was not detected")
    first_affirmed = min((e for _, e in affirmative), default=n + 1)
    commas = [i + 1 for i, ch in enumerate(masked) if ch == "," and i >= first_affirmed]
    for lo, _ in post:  # backward scope: from the previous terminator
        negated.append((max([e for _, e in stops if e <= lo] + [c for c in commas if c <= lo] + [0]), lo))
    uncertain = ((0, n),) if UNCERTAINTY.search(sentence) else ()  # sentence-wide, as in "(infection?)"
    return Scopes(tuple(negated), uncertain)
