"""Measure the report labeler: on manually labelled CT-RATE reports and on phantom reports.

The lexicon was written by reading only the *development* part of CT-RATE's 800 manually labelled
reports. The *held-out* part is fixed by a hash of the accession number (about one report in four,
:func:`is_held_out`), was set aside before any rule was written, and is used only to measure.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ctvl.data.labels import CTRATE_LABELS
from ctvl.data.phantom import build_patient
from ctvl.eval.clinical import clinical_metrics
from ctvl.eval.labeler.agreement import agreement_summary, disagreements
from ctvl.eval.labeler.core import ReportLabeler, sentence_mentions
from ctvl.eval.labeler.crossval import folds, out_of_fold
from ctvl.eval.labeler.csvio import read_labels, read_reports
from ctvl.eval.labeler.encoder import SentenceEncoder
from ctvl.eval.labeler.learned import LearnedLabeler
from ctvl.eval.labeler.negation import sentence_scopes

HOLDOUT_SALT = "ctvl-labeler-holdout:"
HOLDOUT_MODULUS = 4


def is_held_out(report_id: str) -> bool:
    """Whether a report belongs to the fixed held-out split (SHA-256 of salt + id, modulo 4 == 0)."""
    digest = hashlib.sha256((HOLDOUT_SALT + report_id).encode("utf-8")).hexdigest()
    return int(digest, 16) % HOLDOUT_MODULUS == 0


def bootstrap_macro_f1(truth: np.ndarray, pred: np.ndarray, n_boot: int = 1000, seed: int = 0) -> tuple[float, float]:
    """95% bootstrap interval of the macro F1 (reports resampled with replacement).

    Args:
        truth: (N, L) 0/1 labels.
        pred: (N, L) 0/1 labels.
        n_boot: number of resamples.
        seed: random seed (the interval is deterministic).

    Returns:
        (2.5th, 97.5th) percentiles of the macro F1 (F1 = 0 where a label has no TP, FP or FN).
    """
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(truth), size=(n_boot, len(truth)))  # (B, N)
    t, p = truth[idx], pred[idx]  # (B, N, L)
    tp = ((t == 1) & (p == 1)).sum(1)
    denom = 2 * tp + ((t == 0) & (p == 1)).sum(1) + ((t == 1) & (p == 0)).sum(1)  # (B, L)
    f1 = np.where(denom > 0, 2 * tp / np.maximum(denom, 1), 0.0)
    lo, hi = np.percentile(f1.mean(1), [2.5, 97.5])
    return round(float(lo), 4), round(float(hi), 4)


def _summary(truth: np.ndarray, pred: np.ndarray) -> dict:
    m = clinical_metrics(truth, pred)
    per_label = {name: round(v["f1"], 4) for name, v in m["per_label"].items()}
    return {
        "n_reports": m["n_reports"],
        "macro_f1": round(m["macro_f1"], 4),
        "macro_f1_95ci": bootstrap_macro_f1(truth, pred),
        "micro_f1": round(m["micro_f1"], 4),
        "weighted_f1": round(m["weighted_f1"], 4),
        "min_label_f1": round(min(per_label.values()), 4),
        "min_label": min(per_label, key=per_label.get),
        "per_label_f1": per_label,
        "per_label_support": {name: v["support"] for name, v in m["per_label"].items()},
    }


def measure_on_csv(path: str | Path, labeler: ReportLabeler | None = None) -> dict:
    """Labeler accuracy on a CSV of reports with manual labels (CT-RATE's ``train.csv`` layout).

    Args:
        path: CSV with ``AccessionNo``, ``report_text`` and the 18 label columns.
        labeler: the labeler to measure (default :class:`ReportLabeler`).

    Returns:
        ``{"held_out": {...}, "development": {...}, "all": {...}, "reports_per_second": float}``,
        each part with macro/micro/weighted F1, the lowest label and per-label F1.
    """
    labeler = labeler or ReportLabeler()
    table = read_reports(path)
    ids, truth, _ = read_labels(path, table.id_column)
    start = time.perf_counter()
    pred = labeler.label_many(table.texts)
    seconds = time.perf_counter() - start
    held = np.array([is_held_out(i) for i in ids])
    return {
        "source": str(path),
        "held_out": _summary(truth[held], pred[held]),
        "development": _summary(truth[~held], pred[~held]),
        "all": _summary(truth, pred),
        "reports_per_second": round(len(ids) / seconds, 1) if seconds > 0 else None,
    }


def measure_on_phantoms(seeds: Sequence[int], labeler: ReportLabeler | None = None) -> dict:
    """Labeler accuracy on phantom reports (findings + impression) against the phantom's labels.

    Args:
        seeds: phantom patient seeds (reports only: nothing is rasterised).
        labeler: the labeler to measure (default :class:`ReportLabeler`).

    Returns:
        The same summary as one part of :func:`measure_on_csv`, plus ``errors``: up to 20
        ``{"seed", "label", "truth"}`` disagreements.
    """

    labeler = labeler or ReportLabeler()
    truth, texts = [], []
    for seed in seeds:
        patient = build_patient(int(seed))
        truth.append([int(patient.labels[name]) for name in CTRATE_LABELS])
        texts.append(f"{patient.findings} {patient.impression}")
    t = np.asarray(truth, dtype=np.int64)
    pred = labeler.label_many(texts)
    out = _summary(t, pred)
    errors = [
        {"seed": int(seeds[i]), "label": CTRATE_LABELS[j], "truth": int(t[i, j])}
        for i, j in zip(*np.nonzero(t != pred))
    ]
    out["errors"] = errors[:20]
    out["n_errors"] = len(errors)
    return out


def _clear_caches() -> None:

    sentence_mentions.cache_clear()
    sentence_scopes.cache_clear()


def rule_speed(texts: Sequence[str], labeler: ReportLabeler | None = None) -> dict[str, float]:
    """Reports per second of the rule labeler, cold (empty sentence caches) and warm (second pass)."""
    labeler = labeler or ReportLabeler()
    _clear_caches()
    out = {}
    for key in ("cold_reports_per_second", "warm_reports_per_second"):
        start = time.perf_counter()
        labeler.label_many(texts)
        out[key] = round(len(texts) / max(time.perf_counter() - start, 1e-9), 1)
    return out


def measure_agreement(
    path: str | Path,
    *,
    k: int = 5,
    learned: bool = False,
    learned_options: dict | None = None,
    embedding_cache: str | Path | None = None,
    n_boot: int = 1000,
    speed_reports: int = 40,
) -> dict:
    """CT-RATE-style agreement (cells and reports differing, macro/micro F1, 95% CIs) of the labelers.

    The rule labeler is scored on every report (its rules were written from the development split
    only, see :func:`is_held_out`). The learned layer (``learned=True``) is scored by k-fold
    cross-validation over all reports (:func:`ctvl.eval.labeler.crossval.out_of_fold`): each report's
    labels come from a model trained on the other folds. Both are summarised on all reports, the
    held-out split and the development split.

    Args:
        path: CSV with ``AccessionNo``, ``report_text`` and the 18 label columns.
        k: folds for cross-validation.
        learned: also cross-validate the learned layer (needs the MiniLM package).
        learned_options: keyword arguments of :meth:`LearnedLabeler.fit` (``C``, ``mode``, ``band``).
        embedding_cache: an ``.npz`` of sentence embeddings read before and written after (outside
            the repository: it holds embeddings of licensed report text).
        n_boot: bootstrap resamples.
        speed_reports: reports timed, uncached, for the learned layer's speed.

    Returns:
        ``{"rules": {...}, "learned": {...}?, "disagreements": {"rules": [...], "learned": [...]?}}``.
    """

    table = read_reports(path)
    ids, truth, _ = read_labels(path, table.id_column)
    texts = table.texts
    held = np.array([is_held_out(i) for i in ids])
    fold = folds(ids, k)

    def parts(pred: np.ndarray) -> dict:
        out = {
            name: agreement_summary(truth[m], pred[m], n_boot=n_boot)
            for name, m in (("all", np.ones_like(held)), ("held_out", held), ("development", ~held))
        }
        out["per_fold_cell_pct"] = [
            round(100 * float((truth[fold == f] != pred[fold == f]).mean()), 2) for f in range(k)
        ]
        return out

    rules = ReportLabeler()
    speed = rule_speed(texts, rules)
    rule_pred = rules.label_many(texts)
    result: dict = {"source": str(path), "k": k, "rules": {**parts(rule_pred), "speed": speed}}
    result["disagreements"] = {"rules": disagreements(ids, texts, truth, rule_pred, rules.explain)}
    if learned:
        encoder = SentenceEncoder()
        if embedding_cache is not None and Path(embedding_cache).is_file():
            encoder.load_cache(embedding_cache)
        options = dict(learned_options or {})
        start = time.perf_counter()
        pred, models = out_of_fold(
            ids, texts, truth, lambda x, y: LearnedLabeler.fit(x, y, rules=rules, encoder=encoder, **options), k=k
        )
        cv_seconds = time.perf_counter() - start
        if embedding_cache is not None:
            encoder.save_cache(embedding_cache)
        sample = texts[:speed_reports]
        cold = LearnedLabeler(
            coef=models[0].coef,
            intercept=models[0].intercept,
            rules=rules,
            encoder=SentenceEncoder(),
            mode=models[0].mode,
            band=models[0].band,
        )
        cold.encoder.encode(["warm up the model"])
        start = time.perf_counter()
        cold.label_many(sample)
        rate = len(sample) / max(time.perf_counter() - start, 1e-9)
        by_fold = {f: m for f, m in enumerate(models)}
        lines = []  # evidence from the fold model that made the out-of-fold prediction
        for row in disagreements(ids, texts, truth, pred, lambda t: {}):
            i = ids.index(row["id"])
            row["evidence"] = by_fold[int(fold[i])].explain(texts[i]).get(row["label"], [])
            lines.append(row)
        result["learned"] = {
            **parts(pred),
            "options": options,
            "cv_seconds": round(cv_seconds, 1),
            "speed": {"uncached_reports_per_second": round(rate, 1)},
        }
        result["disagreements"]["learned"] = lines
    return result
