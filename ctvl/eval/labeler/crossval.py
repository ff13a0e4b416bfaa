"""k-fold cross-validation of labelers on manually labelled reports.

Folds are fixed by a hash of the report id (not by row order or a random state), so a report always
falls in the same fold, whatever else is in the file. A learned labeler is trained on k-1 folds and
predicts the remaining one; every report thus gets an *out-of-fold* prediction from a model that never
saw it. A rule labeler needs no training: its out-of-fold prediction is its prediction.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from typing import Protocol

import numpy as np

from ctvl.errors import InputError

FOLD_SALT = "ctvl-labeler-fold:"


class Labeler(Protocol):
    """Anything with ``label_many(texts) -> (N, L) array``."""

    def label_many(self, texts: Sequence[str]) -> np.ndarray: ...


def fold_of(report_id: str, k: int) -> int:
    """The fold (0..k-1) of one report: SHA-256 of salt + id, modulo ``k``."""
    if k < 2:
        raise InputError(f"cross-validation needs k >= 2 folds, got {k}")
    digest = hashlib.sha256((FOLD_SALT + report_id).encode("utf-8")).hexdigest()
    return int(digest, 16) % k


def folds(ids: Sequence[str], k: int) -> np.ndarray:
    """(N,) fold index of each report id."""
    return np.array([fold_of(str(i), k) for i in ids], dtype=np.int64)


def out_of_fold(
    ids: Sequence[str],
    texts: Sequence[str],
    truth: np.ndarray,
    train: Callable[[Sequence[str], np.ndarray], Labeler],
    *,
    k: int = 5,
) -> tuple[np.ndarray, list[Labeler]]:
    """Out-of-fold predictions of a trainable labeler.

    Args:
        ids: N report ids (they fix the folds, :func:`fold_of`).
        texts: N report texts.
        truth: (N, L) 0/1 manual labels.
        train: ``(texts, labels) -> labeler`` trained on the given reports only.
        k: number of folds.

    Returns:
        ``(pred, models)``: the (N, L) predictions, row i from the model trained without report i's
        fold, and the k models (model f predicts fold f).
    """
    truth = np.asarray(truth, dtype=np.int64)
    if len(ids) != len(texts) or len(texts) != len(truth):
        raise InputError(f"ids, texts and labels differ in length: {len(ids)}, {len(texts)}, {len(truth)}")
    fold = folds(ids, k)
    pred = np.zeros_like(truth)
    models: list[Labeler] = []
    for f in range(k):
        test = np.flatnonzero(fold == f)
        trn = np.flatnonzero(fold != f)
        model = train([texts[i] for i in trn], truth[trn])
        models.append(model)
        if len(test):
            pred[test] = model.label_many([texts[i] for i in test])
    return pred, models
