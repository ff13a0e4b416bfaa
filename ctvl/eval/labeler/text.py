"""Report text normalisation and sentence splitting for the rule-based labeler.

Written by hand (rather than with spaCy/nltk sentence splitters) because CT-RATE reports, translated
from Turkish, use their own punctuation: findings and impression are glued together with a stray
``"``, impressions use ``•`` bullets, a ``;`` often ends a heading ("When examined in the lung
parenchyma window; ..."), and decimals ("2.3 mm") must not split. A few regular expressions handle
this deterministically and fast, with no model download.
"""

from __future__ import annotations

import re
import unicodedata

_REPLACEMENTS = (
    ("\u2019", "'"),
    ("\u2018", "'"),
    ("\u201c", '"'),
    ("\u201d", '"'),
    ("\u2013", "-"),
    ("\u2014", "-"),
    ("\u2022", ". "),  # bullet
    ("\u00b7", ". "),
)
_SPACE = re.compile(r"\s+")
# a sentence ends at . ; : ! or a stray double quote when followed by space (not inside "2.3")
_SENT_END = re.compile(r'(?<=[.;:!])\s+|\s*"\s*|\s*\*\s+|\n+')
_BULLET_NUMBER = re.compile(r"(?:(?<=\s)|^)\d{1,2}[.)]\s+(?=[a-z])")
_HYPHEN_WORDS = re.compile(r"(?<=[a-z])-(?=[a-z])")
# translation artefact: "pericardial effusion - no thickening was detected" means neither was seen
_DASH_NO = re.compile(r"\b(effusion|thickening) - no (thickening|effusion) (was|were|is|are) (detected|observed|seen)")


def normalize(text: str) -> str:
    """Lower-case, unify quotes/dashes/bullets and collapse whitespace.

    Args:
        text: raw report text (any unicode).

    Returns:
        The normalised text (ASCII punctuation, single spaces, lower case).
    """
    text = unicodedata.normalize("NFKC", str(text))
    for old, new in _REPLACEMENTS:
        text = text.replace(old, new)
    return _SPACE.sub(" ", text).strip().lower()


def split_sentences(text: str) -> list[str]:
    """Split a report into normalised sentences.

    Hyphenated compounds ("effusion-thickening", "pre-paratracheal") become two words joined by a
    space, so "effusion-thickening was not detected" reads like "effusion thickening was not detected".

    Args:
        text: raw report text (findings, impression or both).

    Returns:
        Non-empty normalised sentences, in order, without their final punctuation.
    """
    norm = normalize(text)
    norm = _BULLET_NUMBER.sub(". ", norm)
    norm = _DASH_NO.sub(r"\1 \2 \3 not \4", norm)
    parts = _SENT_END.split(norm)
    out: list[str] = []
    for part in parts:
        part = _HYPHEN_WORDS.sub(" ", part).strip(" .;:!")
        if part:
            out.append(part)
    return out
