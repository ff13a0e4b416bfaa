"""Degenerate-output checks for generated reports.

Report models fail in ways BLEU hides: the same report for every scan, short phrases instead of
reports, empty output. These numbers make that visible:

* ``duplicate_fraction`` = 1 − (distinct reports / reports), texts compared after tokenisation
  (case and punctuation ignored): 0 when every report differs, (N − 1) / N when all are identical;
* ``most_common_fraction``: share of the single most frequent report;
* ``distinct_1`` / ``distinct_2``: distinct uni-/bigrams over all uni-/bigrams of the corpus
  (Li et al., 2016), for predictions and, for comparison, references;
* mean length in tokens of predictions and references, their ratio, and the share of empty outputs.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from ctvl.errors import InputError
from ctvl.eval.nlg import tokenize


def distinct_n(texts: Sequence[str], n: int) -> float:
    """Distinct n-grams / total n-grams over a corpus.

    Args:
        texts: reports (tokenised with :func:`ctvl.eval.nlg.tokenize`).
        n: n-gram order (>= 1).

    Returns:
        The ratio in [0, 1]; 0.0 when the corpus has no n-gram.
    """
    if n < 1:
        raise ValueError("n must be >= 1")
    grams: Counter[tuple[str, ...]] = Counter()
    for text in texts:
        toks = tokenize(text).split()
        grams.update(tuple(toks[i : i + n]) for i in range(len(toks) - n + 1))
    total = sum(grams.values())
    return len(grams) / total if total else 0.0


def degenerate_metrics(predictions: Sequence[str], references: Sequence[str] | None = None) -> dict:
    """Duplicate, diversity and length statistics of generated reports.

    Args:
        predictions: N generated reports.
        references: N reference reports (optional) for the length and diversity comparison.

    Returns:
        ``{"n_reports", "duplicate_fraction", "most_common_fraction", "empty_fraction",
        "distinct_1", "distinct_2", "mean_length", "ref_mean_length", "length_ratio",
        "ref_distinct_1", "ref_distinct_2"}`` (the ``ref_*`` and ratio keys are None without
        references).
    """
    n = len(predictions)
    if n == 0:
        raise InputError("no reports to evaluate")
    toks = [tokenize(p) for p in predictions]
    counts = Counter(toks)
    lengths = [len(t.split()) for t in toks]
    out = {
        "n_reports": n,
        "duplicate_fraction": 1.0 - len(counts) / n,
        "most_common_fraction": counts.most_common(1)[0][1] / n,
        "empty_fraction": sum(1 for t in toks if not t) / n,
        "distinct_1": distinct_n(predictions, 1),
        "distinct_2": distinct_n(predictions, 2),
        "mean_length": sum(lengths) / n,
        "ref_mean_length": None,
        "length_ratio": None,
        "ref_distinct_1": None,
        "ref_distinct_2": None,
    }
    if references is not None:
        if len(references) != n:
            raise InputError(f"{n} predictions but {len(references)} references")
        ref_len = sum(len(tokenize(r).split()) for r in references) / n
        out["ref_mean_length"] = ref_len
        out["length_ratio"] = out["mean_length"] / ref_len if ref_len else None
        out["ref_distinct_1"] = distinct_n(references, 1)
        out["ref_distinct_2"] = distinct_n(references, 2)
    return out
