"""Which of the 18 CT-RATE abnormalities a phantom patient has: prevalences and co-occurrences.

A small latent-cause model: each patient has an age and a few hidden conditions (smoking,
infection, interstitial lung disease, heart disease, cancer, atherosclerosis). Every label is a
logistic function of those causes and of labels sampled before it, e.g. coronary calcification
depends on atherosclerosis and on aortic calcification, atelectasis on pleural effusion, lung
opacity on consolidation. The intercepts are calibrated (bisection on a fixed Monte-Carlo sample)
so the marginal prevalences equal :data:`TARGET_PREVALENCE`, which is close to CT-RATE's training
set; the weights set the co-occurrence structure.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from ctvl.data.labels import CTRATE_LABELS

TARGET_PREVALENCE: dict[str, float] = {
    "Medical material": 0.10,
    "Arterial wall calcification": 0.28,
    "Cardiomegaly": 0.10,
    "Pericardial effusion": 0.07,
    "Coronary artery wall calcification": 0.25,
    "Hiatal hernia": 0.14,
    "Lymphadenopathy": 0.25,
    "Emphysema": 0.19,
    "Atelectasis": 0.25,
    "Lung nodule": 0.45,
    "Lung opacity": 0.38,
    "Pulmonary fibrotic sequela": 0.27,
    "Pleural effusion": 0.12,
    "Mosaic attenuation pattern": 0.08,
    "Peribronchial thickening": 0.10,
    "Consolidation": 0.17,
    "Bronchiectasis": 0.10,
    "Interlobular septal thickening": 0.08,
}

LATENTS = ("age", "smoker", "infection", "ild", "cardiac", "oncology", "athero")

# label -> {cause: logit weight}; a cause is a latent ("age" is standardised) or an earlier label
WEIGHTS: dict[str, dict[str, float]] = {
    "Arterial wall calcification": {"athero": 2.5, "age": 0.8},
    "Coronary artery wall calcification": {
        "athero": 2.0,
        "age": 0.5,
        "cardiac": 0.8,
        "Arterial wall calcification": 1.5,
    },
    "Cardiomegaly": {"cardiac": 2.8, "age": 0.4},
    "Pericardial effusion": {"cardiac": 1.2, "oncology": 1.0, "infection": 0.4, "Cardiomegaly": 0.8},
    "Medical material": {"cardiac": 1.6, "oncology": 2.2, "age": 0.3},
    "Hiatal hernia": {"age": 0.9},
    "Emphysema": {"smoker": 2.6, "age": 0.4},
    "Lung nodule": {"smoker": 0.8, "oncology": 1.6, "age": 0.3},
    "Consolidation": {"infection": 3.0, "oncology": 0.4},
    "Lung opacity": {"infection": 2.0, "ild": 1.5, "cardiac": 0.4, "Consolidation": 1.5},
    "Pleural effusion": {"cardiac": 1.6, "infection": 0.9, "oncology": 1.3},
    "Atelectasis": {"Pleural effusion": 2.0, "infection": 0.8, "Consolidation": 0.6, "age": 0.3},
    "Lymphadenopathy": {"oncology": 2.0, "infection": 0.9, "ild": 0.6},
    "Pulmonary fibrotic sequela": {"age": 0.6, "ild": 1.6, "infection": 0.5, "smoker": 0.3},
    "Bronchiectasis": {"ild": 1.6, "infection": 0.6, "age": 0.3},
    "Peribronchial thickening": {"infection": 1.0, "smoker": 0.8, "Bronchiectasis": 1.8},
    "Mosaic attenuation pattern": {"ild": 1.4, "smoker": 0.6, "infection": 0.5},
    "Interlobular septal thickening": {"ild": 2.2, "cardiac": 0.8, "Pleural effusion": 0.8},
}
ORDER: tuple[str, ...] = tuple(WEIGHTS)  # sampling order (causes before effects)
if set(ORDER) != set(CTRATE_LABELS) or not all(
    c in LATENTS or ORDER.index(c) < ORDER.index(label) for label, w in WEIGHTS.items() for c in w
):
    raise RuntimeError("phantom WEIGHTS must cover the 18 labels, each cause sampled before its effects")


def _sigmoid(v: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-v))


def sample_latents(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    """Age (years), sex and hidden causes of ``n`` patients.

    Returns:
        ``{"age_years": (n,), "sex": (n,) "M"/"F", "age": (n,) standardised, cause: (n,) 0/1, ...}``.
    """
    age_years = 20.0 + 70.0 * rng.beta(2.4, 1.8, n)
    a = (age_years - 58.0) / 15.0
    u = rng.random((7, n))
    out = {
        "age_years": age_years,
        "sex": np.where(u[0] < 0.5, "M", "F"),
        "age": a,
        "smoker": (u[1] < _sigmoid(-0.7 + 0.3 * a)).astype(float),
        "infection": (u[2] < 0.28).astype(float),
        "ild": (u[3] < _sigmoid(-2.3 + 0.5 * a)).astype(float),
        "cardiac": (u[4] < _sigmoid(-1.9 + 1.0 * a)).astype(float),
        "oncology": (u[5] < 0.15).astype(float),
    }
    out["athero"] = (u[6] < _sigmoid(-0.6 + 1.8 * a + 0.8 * out["smoker"])).astype(float)
    return out


def _logit(label: str, causes: dict[str, np.ndarray]) -> np.ndarray:
    return sum(w * causes[c] for c, w in WEIGHTS[label].items())


@lru_cache(maxsize=1)
def intercepts() -> dict[str, float]:
    """Per-label intercepts that make the marginal prevalences equal the targets (cached)."""
    rng = np.random.default_rng(20240601)
    causes = dict(sample_latents(rng, 20_000))
    uniforms = rng.random((len(ORDER), 20_000))
    out: dict[str, float] = {}
    for i, label in enumerate(ORDER):
        base = _logit(label, causes)
        lo, hi = -12.0, 6.0
        for _ in range(50):
            mid = (lo + hi) / 2
            if _sigmoid(mid + base).mean() < TARGET_PREVALENCE[label]:
                lo = mid
            else:
                hi = mid
        out[label] = (lo + hi) / 2
        causes[label] = (uniforms[i] < _sigmoid(out[label] + base)).astype(float)
    return out


def sample_labels(rng: np.random.Generator | int, n: int = 1) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Draw the 18 labels of ``n`` patients.

    Args:
        rng: a generator or an integer seed.
        n: number of patients.

    Returns:
        ``(labels, latents)``: (n, 18) int8 array in CT-RATE label order, and the latent causes
        (see :func:`sample_latents`; ``age_years`` and ``sex`` are used to build the anatomy).
    """
    rng = np.random.default_rng(rng)
    b = intercepts()
    causes = dict(sample_latents(rng, n))
    uniforms = rng.random((len(ORDER), n))
    for i, label in enumerate(ORDER):
        causes[label] = (uniforms[i] < _sigmoid(b[label] + _logit(label, causes))).astype(float)
    labels = np.stack([causes[name] for name in CTRATE_LABELS], axis=1).astype(np.int8)
    return labels, {k: causes[k] for k in ("age_years", "sex", *LATENTS)}
