"""Choose the diagnosis-prompt threshold of a trained report model on its own training scans.

With ``label_prompt`` the report names the findings whose label-head probability exceeds
``label_threshold`` (:mod:`ctvl.report.model`). The head is trained with a plain BCE, so its
probabilities are roughly calibrated, and for rare findings read from coarse tokens the threshold that
maximises F1 is well below 0.5 (for a calibrated score the F1-optimal threshold is about half the F1 it
reaches). :func:`choose_threshold` picks one global threshold from a grid by macro F1 over the 18 labels
on the *training* scans (never the held-out ones); one global value rather than 18 per-label ones
because the rarest labels have too few positives to place a threshold of their own.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from ctvl.data.datasets import scan_ctrate
from ctvl.data.labels import NUM_LABELS
from ctvl.eval.clinical import clinical_metrics
from ctvl.report.bundle import load_report_model
from ctvl.tokenizers.causal3d.token_cache import VisualTokenCache

GRID: tuple[float, ...] = tuple(round(0.05 * k, 2) for k in range(1, 14))  # 0.05 ... 0.65


def macro_f1(truth: np.ndarray, pred: np.ndarray) -> float:
    """Unweighted mean of the per-label F1 (:func:`ctvl.eval.clinical.clinical_metrics`, F1 = 0 where a label
    has no TP, FP or FN).

    Args:
        truth: (N, L) 0/1.
        pred: (N, L) 0/1.
    """
    names = [str(j) for j in range(np.asarray(truth).shape[1])]
    return float(clinical_metrics(truth, pred, labels=names)["macro_f1"])


def choose_threshold(
    probs: np.ndarray, labels: np.ndarray, grid: Sequence[float] = GRID
) -> tuple[float, dict[float, float]]:
    """The grid threshold with the highest macro F1 (ties: the one closest to 0.5).

    Args:
        probs: (N, 18) label-head probabilities.
        labels: (N, 18) 0/1 ground truth.
        grid: candidate thresholds in (0, 1).

    Returns:
        (threshold, {threshold: macro F1} for every candidate).
    """
    p, y = np.asarray(probs, dtype=np.float64), np.asarray(labels).astype(np.int64)
    if p.shape != y.shape or p.ndim != 2 or p.shape[1] != NUM_LABELS or len(p) == 0:
        raise ValueError(f"probs and labels must both be (N, {NUM_LABELS}) with N > 0, got {p.shape} and {y.shape}")
    scores = {float(t): round(macro_f1(y, (p > t).astype(np.int64)), 4) for t in grid}
    best = max(scores, key=lambda t: (scores[t], -abs(t - 0.5)))
    return best, scores


@torch.no_grad()
def label_probabilities_on(model: torch.nn.Module, codes: Sequence[torch.Tensor], batch_size: int = 32) -> np.ndarray:
    """(N, 18) label probabilities of a report model (:meth:`ReportModel.label_probabilities`) for N latent grids."""
    out = []
    for i in range(0, len(codes), batch_size):
        chunk = list(codes[i : i + batch_size])
        probs = model.label_probabilities(chunk, len(chunk))
        if probs is None:
            raise ValueError("this report model has no label head to calibrate")
        out.append(probs.float().cpu().numpy())
    return np.concatenate(out)


def calibrate_on_split(
    model_path: str | Path, data_root: str | Path, split: str = "train", cache_dir: str | Path | None = None
) -> dict[str, object]:
    """Label-head probabilities of a trained report model on a labelled split, and the chosen threshold.

    Args:
        model_path: report run folder, checkpoint or bundle (must have a visual path and a label head).
        data_root: CT-RATE-layout dataset with a labels CSV.
        split: the split to calibrate on (the training split: the held-out one stays unseen).
        cache_dir: visual-token cache folder (None: encode every scan here).

    Returns:
        ``{"threshold", "scores" ({threshold: macro F1}), "split", "n_scans"}``.
    """

    loaded = load_report_model(model_path)
    if loaded.tokenizer is None:
        raise ValueError("a text-only report model has no label head to calibrate")
    records = scan_ctrate(Path(data_root), split=split, require=("labels",)).records
    items = VisualTokenCache(tokenizer=loaded.tokenizer, root=cache_dir).codes_many(records)
    probs = label_probabilities_on(loaded.model, [it["codes"] for it in items])
    labels = np.stack([r.labels for r in records])
    threshold, scores = choose_threshold(probs, labels)
    return {"threshold": threshold, "scores": scores, "split": split, "n_scans": len(records)}
