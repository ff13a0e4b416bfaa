"""Agreement between a labeler and manual labels, measured the way CT-RATE describes its classifier.

CT-RATE reports its RadBERT labeler by the share of label *cells* (report × label) that differ from
the manual labels and the share of *reports* with at least one differing label; F1 hides both. This
module computes those two beside macro/micro F1, each with a bootstrap interval over reports, and
lists the disagreements with the sentence that decided each one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from ctvl.data.labels import CTRATE_LABELS
from ctvl.errors import InputError


def _check(truth: np.ndarray, pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    t, p = np.asarray(truth, dtype=np.int64), np.asarray(pred, dtype=np.int64)
    if t.ndim != 2 or t.shape != p.shape:
        raise InputError(f"label matrices must be (N, L) of one shape, got {t.shape} and {p.shape}")
    if t.shape[0] == 0:
        raise InputError("no reports to compare")
    return t, p


def _f1s(t: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Macro and micro F1 over the last two axes of stacked (..., N, L) matrices (F1 = 0 where 0/0)."""
    tp = ((t == 1) & (p == 1)).sum(-2)
    fp = ((t == 0) & (p == 1)).sum(-2)
    fn = ((t == 1) & (p == 0)).sum(-2)
    denom = 2 * tp + fp + fn
    per_label = np.where(denom > 0, 2 * tp / np.maximum(denom, 1), 0.0)
    micro_denom = denom.sum(-1)
    micro = np.where(micro_denom > 0, 2 * tp.sum(-1) / np.maximum(micro_denom, 1), 0.0)
    return per_label.mean(-1), micro


def agreement_metrics(truth: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """Cell and report disagreement and macro/micro F1 of one prediction matrix.

    Args:
        truth: (N, L) 0/1 manual labels.
        pred: (N, L) 0/1 labeler output.

    Returns:
        ``{"cell_disagreement", "report_disagreement", "macro_f1", "micro_f1"}`` as fractions
        (cell: differing cells / (N·L); report: reports with ≥ 1 differing label / N).
    """
    t, p = _check(truth, pred)
    diff = t != p
    macro, micro = _f1s(t, p)
    return {
        "cell_disagreement": float(diff.mean()),
        "report_disagreement": float(diff.any(1).mean()),
        "macro_f1": float(macro),
        "micro_f1": float(micro),
    }


def bootstrap_agreement(
    truth: np.ndarray, pred: np.ndarray, *, n_boot: int = 1000, seed: int = 0, chunk: int = 200
) -> dict[str, tuple[float, float]]:
    """95% bootstrap intervals (reports resampled with replacement) of :func:`agreement_metrics`.

    Args:
        truth: (N, L) 0/1 manual labels.
        pred: (N, L) 0/1 labeler output.
        n_boot: number of resamples.
        seed: random seed (the intervals are deterministic).
        chunk: resamples evaluated at once (bounds memory to chunk·N·L).

    Returns:
        ``{metric: (2.5th percentile, 97.5th percentile)}`` for the four metrics.
    """
    t, p = _check(truth, pred)
    rng = np.random.default_rng(seed)
    cols: dict[str, list[np.ndarray]] = {
        k: [] for k in ("cell_disagreement", "report_disagreement", "macro_f1", "micro_f1")
    }
    for start in range(0, n_boot, chunk):
        idx = rng.integers(0, len(t), size=(min(chunk, n_boot - start), len(t)))
        tb, pb = t[idx], p[idx]  # (B, N, L)
        diff = tb != pb
        cols["cell_disagreement"].append(diff.mean((1, 2)))
        cols["report_disagreement"].append(diff.any(2).mean(1))
        macro, micro = _f1s(tb, pb)
        cols["macro_f1"].append(macro)
        cols["micro_f1"].append(micro)
    out = {}
    for key, parts in cols.items():
        lo, hi = np.percentile(np.concatenate(parts), [2.5, 97.5])
        out[key] = (round(float(lo), 5), round(float(hi), 5))
    return out


def agreement_summary(
    truth: np.ndarray, pred: np.ndarray, *, labels: Sequence[str] = CTRATE_LABELS, n_boot: int = 1000
) -> dict:
    """Everything the measure pipeline prints for one split: metrics, intervals and per-label F1.

    Args:
        truth: (N, L) 0/1 manual labels.
        pred: (N, L) 0/1 labeler output.
        labels: the L label names.
        n_boot: bootstrap resamples for the intervals.

    Returns:
        ``{"n_reports", "cell_disagreement_pct", "report_disagreement_pct", "macro_f1", "micro_f1",
        "<metric>_95ci", "min_label", "min_label_f1", "per_label_f1", "per_label_errors"}``;
        disagreements are in percent.
    """
    t, p = _check(truth, pred)
    m = agreement_metrics(t, p)
    ci = bootstrap_agreement(t, p, n_boot=n_boot)
    tp = ((t == 1) & (p == 1)).sum(0)
    denom = 2 * tp + (t != p).sum(0)
    f1 = np.where(denom > 0, 2 * tp / np.maximum(denom, 1), 0.0)
    per_label = {name: round(float(f1[j]), 4) for j, name in enumerate(labels)}
    pct = lambda v: round(100 * v, 2)  # noqa: E731
    return {
        "n_reports": int(len(t)),
        "cell_disagreement_pct": pct(m["cell_disagreement"]),
        "cell_disagreement_pct_95ci": tuple(pct(v) for v in ci["cell_disagreement"]),
        "report_disagreement_pct": round(100 * m["report_disagreement"], 1),
        "report_disagreement_pct_95ci": tuple(round(100 * v, 1) for v in ci["report_disagreement"]),
        "macro_f1": round(m["macro_f1"], 4),
        "macro_f1_95ci": tuple(round(v, 4) for v in ci["macro_f1"]),
        "micro_f1": round(m["micro_f1"], 4),
        "micro_f1_95ci": tuple(round(v, 4) for v in ci["micro_f1"]),
        "min_label": min(per_label, key=per_label.get),
        "min_label_f1": min(per_label.values()),
        "per_label_f1": per_label,
        "per_label_errors": {name: int((t[:, j] != p[:, j]).sum()) for j, name in enumerate(labels)},
        "per_label_support": {name: int(t[:, j].sum()) for j, name in enumerate(labels)},
    }


def disagreements(
    ids: Sequence[str],
    texts: Sequence[str],
    truth: np.ndarray,
    pred: np.ndarray,
    explain: Callable[[str], dict[str, list[str]]],
    *,
    labels: Sequence[str] = CTRATE_LABELS,
) -> list[dict]:
    """Every differing cell with the evidence that decided it.

    Args:
        ids: N report ids.
        texts: N report texts.
        truth: (N, L) 0/1 manual labels.
        pred: (N, L) 0/1 labeler output.
        explain: ``text -> {label: [evidence lines]}`` (e.g. :meth:`ReportLabeler.explain`).
        labels: the L label names.

    Returns:
        ``[{"id", "label", "truth", "pred", "evidence": [lines]}]`` in report then label order; an
        empty evidence list means no sentence mentioned the label (a lexicon miss).
    """
    t, p = _check(truth, pred)
    out = []
    for i, j in zip(*np.nonzero(t != p)):
        out.append(
            {
                "id": str(ids[i]),
                "label": labels[j],
                "truth": int(t[i, j]),
                "pred": int(p[i, j]),
                "evidence": explain(texts[i]).get(labels[j], []),
            }
        )
    return out
