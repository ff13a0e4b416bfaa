"""A learned layer on top of the rule labeler: per-label logistic regression over MiniLM embeddings.

The rules still find the evidence: every sentence with a lexicon mention of a label is a *candidate*
for that label. The layer scores each candidate from its MiniLM embedding (:mod:`.encoder`) plus the
rules' verdict on it (affirmed, negated, hedged, question-mark differential) and whether the rules call
the report positive; the report's score is its best candidate's. Labels with no candidate stay 0, as
with the rules. Trained per label on reports with manual labels (multiple-instance style: in a negative
report every candidate is negative; in a positive report the candidates the rules affirm are positive,
or all of them when the rules affirm none).

Decision (``mode``): ``"learned"`` takes score ≥ 0.5; ``"hybrid"`` keeps the rules' decision unless
the score is confidently against it (outside ``band``), so the layer only overrides the rules where
it is sure. Either way :meth:`LearnedLabeler.explain` names the deciding sentence, its cue and score,
and marks scores inside ``band`` as unsure.

Licence: weights trained on CT-RATE reports (CC BY-NC-SA 4.0) are a derivative of them. ctvl ships
none; :func:`save_weights` refuses to write inside the ctvl package or its source tree and stores the
licence beside the weights.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ctvl.atomic import publish_dir
from ctvl.data.labels import CTRATE_LABELS
from ctvl.errors import InputError
from ctvl.eval.labeler.core import Mention, ReportLabeler
from ctvl.eval.labeler.encoder import DIM, SentenceEncoder
from ctvl.eval.labeler.text import split_sentences

N_STATUS = 5  # affirmed, negated, uncertain, questioned, rules call the report positive
FORMAT = "ctvl-learned-labeler/1"


def _status(mentions: Sequence[Mention], report_positive: bool) -> np.ndarray:
    neg = all(m.negated for m in mentions)
    unc = any(m.uncertain for m in mentions)
    que = all(m.questioned for m in mentions)
    return np.array(
        [float(not neg and not que), float(neg), float(unc), float(que), float(report_positive)], np.float32
    )


def candidates(rules: ReportLabeler, text: str) -> dict[str, list[tuple[str, list[Mention], bool]]]:
    """Per label, the sentences of ``text`` with a mention, their mentions and whether the rules affirm it.

    Returns:
        ``{label: [(sentence, mentions, affirmed)]}`` for labels with at least one mention.
    """
    out: dict[str, dict[str, list[Mention]]] = {}
    for sentence in split_sentences(text or ""):
        for m in rules.mentions(sentence):
            out.setdefault(m.label, {}).setdefault(sentence, []).append(m)
    return {
        label: [(s, ms, any(rules._positive(m) for m in ms)) for s, ms in per.items()] for label, per in out.items()
    }


class LearnedLabeler:
    """Rules + per-label logistic regression over MiniLM sentence embeddings.

    Args:
        coef: (L, 384 + 5) weights per label (from :meth:`fit` or :func:`load_weights`).
        intercept: (L,) biases.
        rules: the rule labeler that finds candidates (default :class:`ReportLabeler`).
        encoder: the sentence encoder (default :class:`SentenceEncoder`, loaded lazily).
        mode: ``"learned"`` or ``"hybrid"`` (see the module docstring).
        band: scores inside ``(lo, hi)`` are unsure; in hybrid mode the rules decide there.
        meta: free-form description stored with the weights (source, licence, training size).
    """

    labels: tuple[str, ...] = CTRATE_LABELS

    def __init__(
        self,
        *,
        coef: np.ndarray,
        intercept: np.ndarray,
        rules: ReportLabeler | None = None,
        encoder: SentenceEncoder | None = None,
        mode: str = "hybrid",
        band: tuple[float, float] = (0.2, 0.8),
        meta: dict | None = None,
    ) -> None:
        coef = np.asarray(coef, dtype=np.float32)
        if coef.shape != (len(self.labels), DIM + N_STATUS):
            raise InputError(
                f"learned labeler weights must be ({len(self.labels)}, {DIM + N_STATUS}), got {coef.shape}"
            )
        if mode not in ("learned", "hybrid"):
            raise InputError(f"mode must be 'learned' or 'hybrid', got {mode!r}")
        self.coef = coef
        self.intercept = np.asarray(intercept, dtype=np.float32).reshape(len(self.labels))
        self.rules = rules or ReportLabeler()
        self._encoder = encoder
        self.mode = mode
        self.band = (float(band[0]), float(band[1]))
        self.meta = dict(meta or {})

    @property
    def encoder(self) -> SentenceEncoder:
        """The sentence encoder (created on first use)."""
        if self._encoder is None:
            self._encoder = SentenceEncoder()
        return self._encoder

    @classmethod
    def fit(
        cls,
        texts: Sequence[str],
        truth: np.ndarray,
        *,
        C: float = 1.0,
        rules: ReportLabeler | None = None,
        encoder: SentenceEncoder | None = None,
        **kwargs,
    ) -> LearnedLabeler:
        """Train the layer on reports with manual labels.

        Args:
            texts: N report texts.
            truth: (N, 18) 0/1 manual labels in CT-RATE order.
            C: inverse L2 regularisation strength of the logistic regressions.
            rules: the rule labeler (default :class:`ReportLabeler`).
            encoder: the sentence encoder (default :class:`SentenceEncoder`).
            **kwargs: ``mode``, ``band``, ``meta`` for the returned labeler.
        """
        from sklearn.linear_model import LogisticRegression

        truth = np.asarray(truth, dtype=np.int64)
        if truth.shape != (len(texts), len(cls.labels)):
            raise InputError(f"labels must be ({len(texts)}, {len(cls.labels)}), got {truth.shape}")
        rules = rules or ReportLabeler()
        encoder = encoder or SentenceEncoder()
        rows: dict[str, tuple[list[str], list[np.ndarray], list[int]]] = {n: ([], [], []) for n in cls.labels}
        for i, text in enumerate(texts):
            rule_pos = rules.label(text)
            for label, cands in candidates(rules, text).items():
                j = cls.labels.index(label)
                any_affirmed = any(a for _, _, a in cands)
                for sentence, ms, affirmed in cands:
                    target = int(truth[i, j] == 1 and (affirmed or not any_affirmed))
                    sents, stats, ys = rows[label]
                    sents.append(sentence)
                    stats.append(_status(ms, bool(rule_pos[label])))
                    ys.append(target)
        coef = np.zeros((len(cls.labels), DIM + N_STATUS), np.float32)
        intercept = np.full(len(cls.labels), -10.0, np.float32)
        for j, label in enumerate(cls.labels):
            sents, stats, ys = rows[label]
            y = np.asarray(ys)
            if len(y) == 0 or y.min() == y.max():  # one class only: a constant score
                intercept[j] = 10.0 if len(y) and y[0] == 1 else -10.0
                continue
            x = np.concatenate([encoder.encode(sents), np.stack(stats)], axis=1)
            model = LogisticRegression(C=C, max_iter=2000).fit(x, y)
            coef[j], intercept[j] = model.coef_[0], model.intercept_[0]
        meta = {"n_reports": len(texts), "C": C, **kwargs.pop("meta", {})}
        return cls(coef=coef, intercept=intercept, rules=rules, encoder=encoder, meta=meta, **kwargs)

    def scores(self, text: str) -> dict[str, tuple[float, str, list[Mention]]]:
        """Per label with candidates: (best score, its sentence, its mentions)."""
        cands = candidates(self.rules, text)
        if not cands:
            return {}
        rule_pos = self.rules.label(text)
        flat = [(label, s, ms) for label, cs in cands.items() for s, ms, _ in cs]
        emb = self.encoder.encode([s for _, s, _ in flat])
        out: dict[str, tuple[float, str, list[Mention]]] = {}
        for (label, s, ms), e in zip(flat, emb):
            j = self.labels.index(label)
            x = np.concatenate([e, _status(ms, bool(rule_pos[label]))])
            score = float(1.0 / (1.0 + np.exp(-(x @ self.coef[j] + self.intercept[j]))))
            if label not in out or score > out[label][0]:
                out[label] = (score, s, ms)
        return out

    def _decide(self, score: float, rule: int) -> int:
        if self.mode == "learned":
            return int(score >= 0.5)
        lo, hi = self.band
        return 1 if score >= hi else 0 if score <= lo else rule

    def label(self, text: str) -> dict[str, int]:
        """Label one report: ``{label name: 0 or 1}`` in CT-RATE order."""
        rule = self.rules.label(text or "")
        best = self.scores(text or "")
        return {n: (self._decide(best[n][0], rule[n]) if n in best else 0) for n in self.labels}

    def label_many(self, texts: Sequence[str]) -> np.ndarray:
        """(N, 18) int64 0/1 labels of N reports (all their sentences are embedded in one pass)."""
        self.encoder.encode([s for t in texts for s in split_sentences(t or "")])
        rows = [list(self.label(t).values()) for t in texts]
        return np.asarray(rows, dtype=np.int64).reshape(-1, len(self.labels))

    def explain(self, text: str) -> dict[str, list[str]]:
        """The rules' evidence per label, then the learned decision: sentence, cue, score, unsure or not.

        Returns:
            ``{label: [rule evidence lines..., "learned: 1 (score 0.93, rules 1) [cue] sentence"]}``;
            "unsure" is added when the score lies inside ``band``.
        """
        out = self.rules.explain(text or "")
        rule = self.rules.label(text or "")
        for label, (score, sentence, ms) in self.scores(text or "").items():
            decision = self._decide(score, rule[label])
            lo, hi = self.band
            flag = ", unsure" if lo < score < hi else ""
            cues = "/".join(sorted({m.text for m in ms}))
            out.setdefault(label, []).append(
                f"learned: {decision} (score {score:.2f}, rules {rule[label]}{flag}) [{cues}] {sentence}"
            )
        return out


def _inside_ctvl_tree(path: Path) -> bool:
    import ctvl

    package = Path(ctvl.__file__).resolve().parent
    roots = [package]
    if (package.parent / "pyproject.toml").is_file():
        roots.append(package.parent)  # a source checkout: keep the repo free of derived weights
    resolved = path.resolve()
    return any(resolved == r or r in resolved.parents for r in roots)


def save_weights(model: LearnedLabeler, out_dir: str | Path, *, licence: str) -> Path:
    """Store the layer's weights, settings and licence in ``out_dir`` (outside the ctvl tree).

    Args:
        model: a trained :class:`LearnedLabeler`.
        out_dir: a folder outside the ctvl package and its source checkout (published whole, atomically;
            an existing folder there is replaced).
        licence: the licence of the training reports (written to ``LICENSE.txt`` and ``meta.json``).

    Returns:
        The path of ``weights.npz``.
    """
    out = Path(out_dir)
    if _inside_ctvl_tree(out):
        raise InputError(f"{out}: weights trained on licensed reports must be stored outside the ctvl package/repo")
    meta = {
        "format": FORMAT,
        "labels": list(model.labels),
        "mode": model.mode,
        "band": list(model.band),
        "licence": licence,
        **model.meta,
    }
    with publish_dir(out) as tmp:  # weights, settings and licence appear together or not at all
        np.savez(tmp / "weights.npz", coef=model.coef, intercept=model.intercept)
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        (tmp / "LICENSE.txt").write_text(
            f"These weights were trained on report texts and labels licensed as: {licence}\n"
            "They are a derivative of that data and carry its terms; they are not part of ctvl (Apache-2.0).\n",
            encoding="utf-8",
        )
    return out / "weights.npz"


def load_weights(model_dir: str | Path, **kwargs) -> LearnedLabeler:
    """Read a folder written by :func:`save_weights` (``kwargs`` override ``mode``/``band``/``encoder``)."""
    folder = Path(model_dir)
    meta_path, weights_path = folder / "meta.json", folder / "weights.npz"
    if not meta_path.is_file() or not weights_path.is_file():
        raise InputError(f"{folder}: not a learned labeler folder (needs meta.json and weights.npz)")
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    if meta.get("format") != FORMAT or meta.get("labels") != list(CTRATE_LABELS):
        raise InputError(f"{folder}: unsupported learned labeler format {meta.get('format')!r}")
    data = np.load(weights_path)
    settings = {"mode": meta.get("mode", "hybrid"), "band": tuple(meta.get("band", (0.2, 0.8)))}
    settings.update(kwargs)
    return LearnedLabeler(coef=data["coef"], intercept=data["intercept"], meta=meta, **settings)
