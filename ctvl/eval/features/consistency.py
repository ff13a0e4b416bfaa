"""Does a generated volume show what its prompt says, and is it more than a copy of a training volume?

- :func:`label_consistency`: the prompt's labels (read from the prompt with the report labeler) against the
  CTNet3D labels of the generated volumes, per label and macro F1, over the labels at least one prompt states
  positively; beside each, the same classifier on real held-out volumes against their true labels
  (``real_f1`` / ``real_macro``): the classifier's own ceiling for what label consistency can show.
- :func:`memorization`: each volume's RMSE (model space) to its nearest training volume, for the generated
  set and for a real held-out set; a generator that copies its training data puts its volumes closer than
  real unseen volumes are.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from ctvl.data.labels import CTRATE_LABELS
from ctvl.errors import InputError
from ctvl.eval.clinical import clinical_metrics


def _labels(a: np.ndarray | torch.Tensor, what: str, n_labels: int) -> np.ndarray:
    arr = a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)
    if arr.ndim != 2 or arr.shape[1] != n_labels:
        raise InputError(f"{what} must have shape (N, {n_labels}), got {tuple(arr.shape)}")
    return arr.astype(np.int64)


def label_consistency(
    prompt_labels: np.ndarray | torch.Tensor,
    predicted: np.ndarray | torch.Tensor,
    real_true: np.ndarray | torch.Tensor,
    real_pred: np.ndarray | torch.Tensor,
    labels: Sequence[str] = CTRATE_LABELS,
) -> dict:
    """Label F1 of generated volumes against their prompts, beside the classifier's F1 on real volumes.

    F1 follows :func:`ctvl.eval.clinical.clinical_metrics` (scikit-learn, zero_division 0).

    Args:
        prompt_labels: (N, L) 0/1 labels of the prompts (the report labeler's reading).
        predicted: (N, L) 0/1 classifier labels of the N generated volumes.
        real_true: (M, L) 0/1 true labels of real held-out volumes.
        real_pred: (M, L) 0/1 classifier labels of those volumes.
        labels: the L label names in column order (CT-RATE's 18).

    Returns:
        ``{"macro": float, "real_macro": float, "labels": [names used],
        "per_label": {name: {"f1", "real_f1", "support", "real_support"}}, "n_generated", "n_real"}``, over
        the labels that at least one prompt states positively (``support`` = prompts stating it,
        ``real_support`` = real volumes having it); the macros are unweighted means over those labels.

    Raises:
        InputError: shapes that do not match, or no prompt states any label.
    """
    n = len(labels)
    p, g = _labels(prompt_labels, "prompt labels", n), _labels(predicted, "predicted labels", n)
    rt, rp = _labels(real_true, "real labels", n), _labels(real_pred, "real predicted labels", n)
    if len(p) != len(g) or len(rt) != len(rp):
        raise InputError(f"row counts differ: prompts {len(p)} vs generated {len(g)}, real {len(rt)} vs {len(rp)}")
    used = [j for j in range(n) if p[:, j].sum() > 0]
    if not used:
        raise InputError("no prompt states any of the labels positively; label consistency is undefined")
    names = [labels[j] for j in used]
    gen = clinical_metrics(p[:, used], g[:, used], labels=names)
    real = clinical_metrics(rt[:, used], rp[:, used], labels=names) if len(rt) else None
    per_label = {
        name: {
            "f1": gen["per_label"][name]["f1"],
            "real_f1": real["per_label"][name]["f1"] if real else float("nan"),
            "support": gen["per_label"][name]["support"],
            "real_support": real["per_label"][name]["support"] if real else 0,
        }
        for name in names
    }
    return {
        "macro": float(np.mean([v["f1"] for v in per_label.values()])),
        "real_macro": float(np.mean([v["real_f1"] for v in per_label.values()])),
        "labels": names,
        "per_label": per_label,
        "n_generated": int(len(p)),
        "n_real": int(len(rt)),
    }


def nearest_rmse(queries: torch.Tensor, reference: torch.Tensor, chunk: int = 128) -> tuple[torch.Tensor, torch.Tensor]:
    """RMSE of each query volume to its nearest reference volume, in float64, ``chunk`` volumes at a time.

    Args:
        queries: (N, ...) volumes; reference: (M, ...) volumes of the same shape (float16 is fine: only
            ``chunk`` rows are ever converted to float64 at once).
        chunk: rows per block of the distance matrix.

    Returns:
        (distances (N,) float64, indices (N,) int64 into ``reference``).
    """
    if queries.shape[1:] != reference.shape[1:] or len(reference) == 0:
        raise InputError(f"volume shapes differ or no reference: {tuple(queries.shape)} vs {tuple(reference.shape)}")
    d = int(np.prod(queries.shape[1:]))
    best = torch.full((len(queries),), float("inf"), dtype=torch.float64)
    index = torch.zeros(len(queries), dtype=torch.int64)
    for i in range(0, len(queries), chunk):
        q = queries[i : i + chunk].reshape(-1, d).double()  # (c, D)
        qq = (q * q).sum(1, keepdim=True)  # (c, 1)
        for j in range(0, len(reference), chunk):
            r = reference[j : j + chunk].reshape(-1, d).double()  # (c', D)
            d2 = (qq + (r * r).sum(1)[None] - 2 * q @ r.T).clamp_min(0)  # (c, c') squared distances
            val, arg = d2.min(1)
            better = val < best[i : i + chunk]
            best[i : i + chunk] = torch.where(better, val, best[i : i + chunk])
            index[i : i + chunk] = torch.where(better, arg + j, index[i : i + chunk])
    return (best / d).sqrt(), index


def memorization(
    generated: torch.Tensor,
    train: torch.Tensor,
    real_heldout: torch.Tensor,
    *,
    tolerance: float = 0.10,
    chunk: int = 128,
) -> dict:
    """Nearest-training-volume distances of generated volumes vs real held-out volumes.

    Real held-out volumes were never trained on, so their nearest-training RMSE shows how close an unseen
    volume is by chance. Under "no copying", about 5 % of generated volumes fall below the real set's 5th
    percentile; a memorising generator puts many more there.

    Args:
        generated: (N, 1, T, H, W) generated volumes (model space).
        train: (K, 1, T, H, W) the generator's training volumes (float16 is fine).
        real_heldout: (M, 1, T, H, W) real volumes not in ``train``.
        tolerance: largest fraction of generated volumes below the real 5th percentile still judged
            "not closer" (twice the 5 % expected by chance).
        chunk: rows per distance block (memory ~ chunk · T·H·W float64 per operand).

    Returns:
        ``{"generated_median", "real_median", "real_p5", "fraction_below_real_p5", "tolerance",
        "generated_not_closer": bool, "generated_nearest": [rmse], "generated_nearest_index": [int],
        "real_nearest": [rmse], "n_generated", "n_train", "n_real"}``.
    """
    if len(generated) == 0 or len(real_heldout) == 0:
        raise InputError("memorization needs at least one generated and one real held-out volume")
    gd, gi = nearest_rmse(generated, train, chunk)
    rd, _ = nearest_rmse(real_heldout, train, chunk)
    p5 = float(torch.quantile(rd, 0.05))
    frac = float((gd < p5).double().mean())
    return {
        "generated_median": float(torch.quantile(gd, 0.5)),
        "real_median": float(torch.quantile(rd, 0.5)),
        "real_p5": p5,
        "fraction_below_real_p5": frac,
        "tolerance": tolerance,
        "generated_not_closer": bool(frac <= tolerance),
        "generated_nearest": [float(v) for v in gd],
        "generated_nearest_index": [int(v) for v in gi],
        "real_nearest": [float(v) for v in rd],
        "n_generated": int(len(generated)),
        "n_train": int(len(train)),
        "n_real": int(len(real_heldout)),
    }
