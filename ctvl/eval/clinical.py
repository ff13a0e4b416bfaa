"""Clinical efficacy of generated reports: per-label and averaged precision, recall and F1.

CT-RATE protocol: label the generated reports with a report labeler, compare with the scan's labels.
CT-CLIP's evaluation reports the support-weighted average, the VLM3D challenge the unweighted macro
average; both are given here, plus the micro average (all 18 labels pooled). Computed with
scikit-learn's ``precision_recall_fscore_support`` so the numbers match it exactly.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ctvl.data.labels import CTRATE_LABELS
from ctvl.errors import InputError


def _as_matrix(y: np.ndarray | Sequence[Sequence[int]], n_labels: int, what: str) -> np.ndarray:
    arr = np.asarray(y)
    if arr.ndim != 2 or arr.shape[1] != n_labels:
        raise InputError(f"{what} must have shape (N, {n_labels}), got {tuple(arr.shape)}")
    if arr.size and not np.isin(arr, (0, 1)).all():
        raise InputError(f"{what} must contain only 0/1 values")
    return arr.astype(np.int64)


def clinical_metrics(
    y_true: np.ndarray | Sequence[Sequence[int]],
    y_pred: np.ndarray | Sequence[Sequence[int]],
    labels: Sequence[str] = CTRATE_LABELS,
    zero_division: float = 0.0,
) -> dict:
    """Per-label and averaged precision / recall / F1 between two label matrices.

    Args:
        y_true: (N, L) 0/1 ground-truth labels (L = ``len(labels)``, 18 for CT-RATE).
        y_pred: (N, L) 0/1 labels of the generated reports.
        labels: the L label names, in column order.
        zero_division: value used where a ratio is 0/0 (scikit-learn's convention, default 0):
            a label never present and never predicted then scores F1 = 0 and pulls the macro
            average down; such labels are listed under ``labels_without_support``.

    Returns:
        ``{"n_reports", "macro_precision", "macro_recall", "macro_f1", "micro_precision",
        "micro_recall", "micro_f1", "weighted_precision", "weighted_recall", "weighted_f1",
        "labels_without_support", "per_label": {name: {"precision", "recall", "f1", "support",
        "predicted", "tp", "fp", "fn"}}}`` with plain Python floats and ints.
    """
    from sklearn.metrics import precision_recall_fscore_support

    n_labels = len(labels)
    t = _as_matrix(y_true, n_labels, "ground-truth labels")
    p = _as_matrix(y_pred, n_labels, "predicted labels")
    if t.shape[0] != p.shape[0]:
        raise InputError(f"label matrices have different numbers of reports: {t.shape[0]} vs {p.shape[0]}")
    if t.shape[0] == 0:
        raise InputError("no reports to evaluate")
    out: dict = {"n_reports": int(t.shape[0])}
    for average in ("macro", "micro", "weighted"):
        prec, rec, f1, _ = precision_recall_fscore_support(t, p, average=average, zero_division=zero_division)
        out[f"{average}_precision"] = float(prec)
        out[f"{average}_recall"] = float(rec)
        out[f"{average}_f1"] = float(f1)
    prec, rec, f1, support = precision_recall_fscore_support(t, p, average=None, zero_division=zero_division)
    tp = ((t == 1) & (p == 1)).sum(0)
    fp = ((t == 0) & (p == 1)).sum(0)
    fn = ((t == 1) & (p == 0)).sum(0)
    out["labels_without_support"] = [name for name, s in zip(labels, support) if s == 0]
    out["per_label"] = {
        name: {
            "precision": float(prec[j]),
            "recall": float(rec[j]),
            "f1": float(f1[j]),
            "support": int(support[j]),
            "predicted": int(p[:, j].sum()),
            "tp": int(tp[j]),
            "fp": int(fp[j]),
            "fn": int(fn[j]),
        }
        for j, name in enumerate(labels)
    }
    return out
