"""Natural-language generation metrics: BLEU-1..4, METEOR, ROUGE-L and CIDEr (pycocoevalcap).

The scorers are the reference implementations from the PyPI package ``pycocoevalcap`` (the code of
the MS-COCO caption evaluation, used by CT2Rep, RadFM and the VLM3D challenge). Its Stanford PTB
tokenizer needs a Java process per call; instead the texts are tokenised here, deterministically and
without Java (:func:`tokenize`): NFKC-normalised, lower-cased, split into runs of letters/digits
(keeping decimals such as ``2.5`` and sizes such as ``3x4``), punctuation dropped — what the PTB
tokenizer plus the COCO punctuation filter give for English report text. METEOR 1.5 is a Java jar
shipped inside pycocoevalcap; it runs when ``java`` is on PATH and is reported as skipped otherwise.

Corpus-level scores as pycocoevalcap computes them: BLEU with the "closest" brevity penalty over the
corpus, ROUGE-L (F-beta with beta = 1.2) averaged over reports, CIDEr-D with document frequencies
from the references (so identical texts score 10 when every report has at least four tokens).
"""

from __future__ import annotations

import re
import shutil
import unicodedata
from collections.abc import Sequence

from ctvl.errors import ConfigError, InputError

_TOKEN = re.compile(r"\d+(?:[.,]\d+)*(?:x\d+(?:[.,]\d+)*)*|[^\W\d_]+(?:'[^\W\d_]+)?|\d+")


def tokenize(text: str) -> str:
    """Tokenise a report for the NLG scorers.

    Args:
        text: raw report text.

    Returns:
        Space-separated lower-case tokens, punctuation removed (``"Nodule, 2.5 mm."`` →
        ``"nodule 2.5 mm"``).
    """
    norm = unicodedata.normalize("NFKC", str(text or "")).lower()
    return " ".join(_TOKEN.findall(norm))


def java_available() -> bool:
    """Whether a ``java`` executable is on PATH (needed by METEOR)."""
    return shutil.which("java") is not None


def _scorers() -> tuple:
    try:
        from pycocoevalcap.bleu.bleu import Bleu
        from pycocoevalcap.cider.cider import Cider
        from pycocoevalcap.rouge.rouge import Rouge
    except ImportError as exc:  # pragma: no cover - dependency is pinned
        raise ConfigError("NLG metrics need the 'pycocoevalcap' package: pip install pycocoevalcap") from exc
    return Bleu, Cider, Rouge


def _meteor(gts: dict[str, list[str]], res: dict[str, list[str]]) -> float:
    from pycocoevalcap.meteor.meteor import Meteor

    scorer = Meteor()
    try:
        score, _ = scorer.compute_score(gts, res)
    finally:
        del scorer
    return float(score)


def nlg_metrics(
    predictions: Sequence[str],
    references: Sequence[str] | Sequence[Sequence[str]],
    meteor: bool | None = None,
) -> dict:
    """Corpus-level BLEU-1..4, METEOR, ROUGE-L and CIDEr of generated reports against references.

    Args:
        predictions: N generated reports.
        references: N reference reports, or N lists of reference reports (several per scan).
        meteor: compute METEOR (needs Java). None: compute it when Java is available.

    Returns:
        ``{"bleu_1", "bleu_2", "bleu_3", "bleu_4", "rouge_l", "cider", "meteor", "meteor_status",
        "tokenizer"}``; ``meteor`` is None when skipped and ``meteor_status`` says why.
    """
    if len(predictions) != len(references):
        raise InputError(f"{len(predictions)} predictions but {len(references)} references")
    if len(predictions) == 0:
        raise InputError("no reports to evaluate")
    Bleu, Cider, Rouge = _scorers()
    res: dict[str, list[str]] = {}
    gts: dict[str, list[str]] = {}
    for i, (pred, ref) in enumerate(zip(predictions, references)):
        refs = [ref] if isinstance(ref, str) else list(ref)
        if not refs:
            raise InputError(f"report {i} has no reference text")
        res[str(i)] = [tokenize(pred)]
        gts[str(i)] = [tokenize(r) for r in refs]
    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    rouge, _ = Rouge().compute_score(gts, res)
    cider, _ = Cider().compute_score(gts, res)
    out = {f"bleu_{n + 1}": float(bleu[n]) for n in range(4)}
    out["rouge_l"] = float(rouge)
    out["cider"] = float(cider)
    out["meteor"] = None
    if meteor is False:
        out["meteor_status"] = "skipped: disabled"
    elif not java_available():
        if meteor:
            raise ConfigError("METEOR needs Java: install a JRE (e.g. apt-get install default-jre-headless)")
        out["meteor_status"] = "skipped: java not found on PATH"
    else:
        out["meteor"] = _meteor(gts, res)
        out["meteor_status"] = "ok"
    out["tokenizer"] = "ctvl.eval.nlg.tokenize (lower-case, punctuation dropped)"
    return out
