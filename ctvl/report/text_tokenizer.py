"""Report text tokenizer: byte-level BPE trained on the training reports, special tokens, prompt template.

A report is written as ``findings <impression> impression <eos>`` after the prompt
``<bos> <image> [visual tokens] </image> <findings>``; the visual tokens are embeddings inserted by the
model between ``<image>`` and ``</image>`` (a text-only model has none). Loss is taken on the report part
only.

Two back ends share one interface (:class:`ReportTextTokenizer`):

* ``bpe`` — a byte-level BPE trained with HF ``tokenizers`` on the training reports (the CPU models):
  lossless for any text, small vocabulary, serialised as JSON inside every checkpoint and bundle;
* ``hf`` — the tokenizer of a local Hugging Face causal LM (GPU runs with a pretrained LM), with our
  special tokens added (the LM's embeddings are resized to match).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ctvl.errors import ConfigError, InputError

PAD, UNK, BOS, EOS = "<pad>", "<unk>", "<bos>", "<eos>"
IMAGE_START, IMAGE_END, FINDINGS, IMPRESSION = "<image>", "</image>", "<findings>", "<impression>"
SPECIAL_TOKENS = (PAD, UNK, BOS, EOS, IMAGE_START, IMAGE_END, FINDINGS, IMPRESSION)


@dataclass(frozen=True)
class Prompt:
    """Token ids of the prompt around the visual tokens: ``before`` + visual + ``after``."""

    before: list[int]  # <bos> <image>
    after: list[int]  # </image> <findings>


class ReportTextTokenizer:
    """Encode/decode report text and build the prompt template.

    Args:
        backend: a ``tokenizers.Tokenizer`` (``kind="bpe"``) or a transformers tokenizer (``kind="hf"``).
        kind: ``"bpe"`` or ``"hf"``.
        source: for ``hf``, the folder it was loaded from (stored in checkpoints instead of the vocabulary).
    """

    def __init__(self, *, backend: Any, kind: str = "bpe", source: str | None = None) -> None:
        if kind not in ("bpe", "hf"):
            raise ConfigError(f"text tokenizer kind must be 'bpe' or 'hf', got {kind!r}")
        self.backend, self.kind, self.source = backend, kind, source
        if kind == "bpe":
            backend.encode_special_tokens = True  # "<eos>" written in a report is text, never a control token
        ids = {tok: self._token_id(tok) for tok in SPECIAL_TOKENS}
        missing = [tok for tok, i in ids.items() if i is None]
        if missing:
            raise ConfigError(f"text tokenizer lacks the special tokens {missing}")
        self.special: dict[str, int] = ids  # type: ignore[assignment]

    # ------------------------------------------------------------------------------------ building
    @classmethod
    def train(cls, texts: Iterable[str], vocab_size: int = 1024, min_frequency: int = 2) -> ReportTextTokenizer:
        """Train a byte-level BPE on report texts (deterministic for the same texts in the same order).

        Args:
            texts: training reports (findings and impressions).
            vocab_size: target vocabulary size, special tokens and the 256 byte symbols included.
            min_frequency: merges need a pair seen at least this often.
        """
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

        texts = [t for t in texts if t and t.strip()]
        if not texts:
            raise InputError("no report text to train the text tokenizer on (empty reports CSV?)")
        tok = Tokenizer(models.BPE(unk_token=UNK))
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=int(vocab_size),
            min_frequency=int(min_frequency),
            special_tokens=list(SPECIAL_TOKENS),
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
        tok.train_from_iterator(texts, trainer=trainer)
        return cls(backend=tok, kind="bpe")

    @classmethod
    def from_pretrained_lm(cls, path: str | Path) -> ReportTextTokenizer:
        """The tokenizer of a local HF causal LM folder, with the report special tokens added."""
        from transformers import AutoTokenizer

        try:
            tok = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot load the LM's tokenizer: {str(exc).splitlines()[0]}", path=path) from None
        present = set(tok.get_vocab())
        tok.add_special_tokens({"additional_special_tokens": [t for t in SPECIAL_TOKENS if t not in present]})
        return cls(backend=tok, kind="hf", source=str(path))

    # ------------------------------------------------------------------------------------ (de)serialising
    def to_dict(self) -> dict[str, Any]:
        """JSON-able description: the whole BPE model, or the LM folder for ``hf``."""
        if self.kind == "bpe":
            return {"kind": "bpe", "tokenizer": json.loads(self.backend.to_str())}
        return {"kind": "hf", "source": self.source}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ReportTextTokenizer:
        """Inverse of :meth:`to_dict`."""
        kind = data.get("kind")
        if kind == "bpe":
            from tokenizers import Tokenizer

            return cls(backend=Tokenizer.from_str(json.dumps(data["tokenizer"])), kind="bpe")
        if kind == "hf":
            return cls.from_pretrained_lm(data["source"])
        raise ConfigError(f"unknown stored text tokenizer kind {kind!r}")

    # ------------------------------------------------------------------------------------ use
    def _token_id(self, token: str) -> int | None:
        if self.kind == "bpe":
            return self.backend.token_to_id(token)
        i = self.backend.convert_tokens_to_ids(token)
        return None if i is None or i == self.backend.unk_token_id and token != self.backend.unk_token else int(i)

    @property
    def vocab_size(self) -> int:
        """Number of ids (embedding rows the LM needs)."""
        return self.backend.get_vocab_size() if self.kind == "bpe" else len(self.backend)

    @property
    def pad_id(self) -> int:
        return self.special[PAD]

    @property
    def eos_id(self) -> int:
        return self.special[EOS]

    @property
    def bos_id(self) -> int:
        return self.special[BOS]

    def encode(self, text: str) -> list[int]:
        """Ids of plain text (no special tokens added; special-token strings in ``text`` stay text)."""
        if self.kind == "bpe":
            return list(self.backend.encode(text, add_special_tokens=False).ids)
        return list(self.backend.encode(text, add_special_tokens=False))

    def decode(self, ids: Sequence[int]) -> str:
        """Text of ids, special tokens dropped."""
        ids = [int(i) for i in ids if int(i) not in self.special.values()]
        return self.backend.decode(ids, skip_special_tokens=True)

    def prompt(self) -> Prompt:
        """The template ids around the visual tokens."""
        s = self.special
        return Prompt(before=[s[BOS], s[IMAGE_START]], after=[s[IMAGE_END], s[FINDINGS]])

    def target(self, findings: str, impression: str) -> list[int]:
        """Ids the model learns to write: ``findings <impression> impression <eos>``."""
        return [
            *self.encode(findings.strip()),
            self.special[IMPRESSION],
            *self.encode(impression.strip()),
            self.special[EOS],
        ]

    def split_report(self, ids: Sequence[int]) -> tuple[str, str]:
        """Generated ids → (findings, impression); stops at ``<eos>``, splits at ``<impression>``."""
        ids = [int(i) for i in ids]
        if self.eos_id in ids:
            ids = ids[: ids.index(self.eos_id)]
        mark = self.special[IMPRESSION]
        if mark in ids:
            k = ids.index(mark)
            return self.decode(ids[:k]).strip(), self.decode(ids[k + 1 :]).strip()
        return self.decode(ids).strip(), ""


_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def drop_repeated_sentences(text: str) -> str:
    """Keep the first of any sentences that repeat word for word (case and spacing aside).

    A small LM sometimes writes a sentence twice (the phantom 3D model: 24 of 500 sections, mostly the
    port-catheter and bronchiectasis sentences); a report never does. Sentences end at ``.``, ``!`` or
    ``?`` followed by white space, so "8.5 mm" stays whole. The rest keeps its order and wording.
    """
    seen: set[str] = set()
    kept: list[str] = []
    for sentence in _SENTENCE_END.split(text.strip()):
        key = " ".join(sentence.lower().split())
        if key and key not in seen:
            seen.add(key)
            kept.append(sentence.strip())
    return " ".join(kept)


def format_report(findings: str, impression: str) -> str:
    """One report string: ``Findings: ... Impression: ...`` (impression omitted when empty)."""
    text = f"Findings: {findings.strip()}"
    if impression.strip():
        text += f"\n\nImpression: {impression.strip()}"
    return text
