"""Training prompts from reports: impression, findings, and mixes of their sentences.

Users type short lines ("moderate right pleural effusion, cardiomegaly") as well as whole reports, so the
generator is trained on several prompts per scan (all fixed per scan and seed, so the text embeddings are
computed once):

* the impression;
* the findings;
* the positive labels' names, comma-separated ("cardiomegaly, pleural effusion"), or a normal-study phrase;
* ``n_mixes`` random mixes: for every finding the scan has, one sentence that states it (from the findings
  or the impression), shuffled, sometimes with one or two sentences that rule something out, joined by
  ". " or ", ".

A prompt therefore always names every finding of its scan: what a prompt does not mention is absent, so a
prompt without findings asks for a normal chest. Which sentence states which finding is read by a
``sentence_labels`` callable handed in by the caller (the report labeler lives in a higher layer); without
one the mixes are the impression's sentences shuffled.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

import numpy as np

from ctvl.data.labels import CTRATE_LABELS

SentenceLabels = Callable[[str], Sequence[int]]  # sentence -> 18 labels (0/1) it affirms
NORMAL_PHRASES = ("normal chest CT", "no significant abnormality", "chest CT within normal limits")
_SPLIT = re.compile(r"(?<=[.;!?])\s+")


def split_sentences(text: str) -> list[str]:
    """Sentences of a report section, without their final full stop; blanks dropped."""
    parts = (s.strip().rstrip(".").strip() for s in _SPLIT.split(text or ""))
    return [s for s in parts if s]


def label_phrase(labels: Sequence[int]) -> str:
    """The positive labels' names, lower case, comma-separated; a normal-study phrase when there are none."""
    names = [name.lower() for name, v in zip(CTRATE_LABELS, labels) if v]
    return ", ".join(names) if names else NORMAL_PHRASES[0]


def _mix(sentences: list[str], stated: list[set[int]], labels: Sequence[int], rng: np.random.Generator) -> str:
    positives = [k for k, v in enumerate(labels) if v]
    chosen: list[str] = []
    for k in positives:
        options = [s for s, ks in zip(sentences, stated) if k in ks and s not in chosen]
        if options:
            chosen.append(options[int(rng.integers(len(options)))])
    negatives = [s for s, ks in zip(sentences, stated) if not ks and s not in chosen]
    if not chosen:
        chosen.append(NORMAL_PHRASES[int(rng.integers(len(NORMAL_PHRASES)))])
    if negatives and rng.random() < 0.5:
        picks = rng.choice(len(negatives), size=min(len(negatives), int(rng.integers(1, 3))), replace=False)
        chosen.extend(negatives[int(i)] for i in picks)
    order = rng.permutation(len(chosen))
    parts = [chosen[int(i)] for i in order]
    if rng.random() < 0.5:
        return ", ".join(p[0].lower() + p[1:] if p else p for p in parts)
    return ". ".join(parts) + "."


def prompt_variants(
    findings: str,
    impression: str,
    labels: Sequence[int],
    *,
    rng: np.random.Generator,
    sentence_labels: SentenceLabels | None = None,
    n_mixes: int = 3,
) -> list[str]:
    """The training prompts of one scan (see the module docstring), ``3 + n_mixes`` of them.

    Args:
        findings: the report's findings.
        impression: the report's impression.
        labels: the scan's 18 labels (0/1), CT-RATE order.
        rng: random source of the mixes.
        sentence_labels: labels a sentence affirms (e.g. ``ReportLabeler().label`` as a vector); None: the
            mixes are the impression's sentences shuffled.
        n_mixes: number of mixes.
    """
    variants = [impression.strip(), findings.strip(), label_phrase(labels)]
    if sentence_labels is None:
        sents = split_sentences(impression)
        for _ in range(n_mixes):
            order = rng.permutation(len(sents)) if sents else []
            variants.append(". ".join(sents[int(i)] for i in order) + "." if sents else label_phrase(labels))
        return variants
    sentences = split_sentences(findings) + split_sentences(impression)
    stated = [{k for k, v in enumerate(sentence_labels(s)) if v} for s in sentences]
    variants.extend(_mix(sentences, stated, labels, rng) for _ in range(n_mixes))
    return variants
