"""Quantizers behind one interface (:class:`Quantizer` → :class:`QuantizerOutput`).

=========  ===================================================  ==================================
kind       method                                               indices
=========  ===================================================  ==================================
fsq        FSQ, Mentzer et al. 2024 (vector-quantize-pytorch)   (B, *S)
lfq        LFQ, MAGVIT-v2 (factorised entropy, 2^18 ok)         (B, *S)
group_lfq  grouped LFQ, WeTok (entropy pooled over groups)      (B, *S, G)
vq         cosine VQ, TiTok 4096 × 12 (vector-quantize-pytorch)  (B, *S)
msrvq      multi-scale residual VQ, VAR                         (B, L) scales concatenated
=========  ===================================================  ==================================

Example::

    q = build_quantizer("lfq", dim=18, bits=18)          # BTB3D: 2^18 codes
    out = q(torch.randn(2, 18, 4, 8, 8))                 # (B, C, T, H, W)
    loss = recon_loss + out.aux_loss
    q.set_step(global_step)                              # entropy weight 0.3 → 0.1 over 2,000 steps
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping
from typing import Any

from ctvl.tokenizers.quantizers.base import Quantizer, QuantizerOutput, codebook_stats

# Classes are imported when first used: FSQ, VQ and multi-scale VQ wrap vector-quantize-pytorch, whose
# import (einx -> torch._dynamo) costs ~1.7 s, and the causal tokenizer (LFQ) never needs them. This keeps
# ``ctvl report`` / ``ctvl encode`` fast to start.
_HOMES: dict[str, tuple[str, str]] = {
    "fsq": ("fsq", "FSQ"),
    "lfq": ("lfq", "LFQ"),
    "group_lfq": ("group_lfq", "GroupLFQ"),
    "vq": ("vq", "VQ"),
    "msrvq": ("msrvq", "MultiScaleResidualVQ"),
}
_BY_CLASS = {cls: (mod, cls) for mod, cls in _HOMES.values()}


def _load(module: str, name: str) -> type[Quantizer]:
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)


class _Registry(Mapping[str, type[Quantizer]]):
    """``QUANTIZERS``: kind -> class, each class imported on first lookup (a read-only mapping)."""

    def __getitem__(self, kind: str) -> type[Quantizer]:
        return _load(*_HOMES[kind])

    def __iter__(self) -> Iterator[str]:
        return iter(_HOMES)

    def __len__(self) -> int:
        return len(_HOMES)


QUANTIZERS: Mapping[str, type[Quantizer]] = _Registry()


def __getattr__(name: str) -> Any:
    if name in _BY_CLASS:
        return _load(*_BY_CLASS[name])
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def build_quantizer(kind: str, dim: int, **kwargs: Any) -> Quantizer:
    """Build a quantizer by name.

    Args:
        kind: one of ``fsq``, ``lfq``, ``group_lfq`` (alias ``glfq``), ``vq``, ``msrvq`` (alias ``var``).
        dim: channels C of the latent it will quantize.
        **kwargs: keyword arguments of the class (e.g. ``levels=(8, 5, 5, 5)``, ``bits=18``,
            ``groups=8``, ``codebook_size=4096``, ``spatial_dims=3``, ``channel_last=True``).

    Raises:
        ValueError: unknown kind.
    """
    key = {"glfq": "group_lfq", "var": "msrvq", "gfq": "group_lfq"}.get(kind.lower(), kind.lower())
    if key not in QUANTIZERS:
        raise ValueError(f"unknown quantizer {kind!r}; choose one of {', '.join(QUANTIZERS)}")
    return QUANTIZERS[key](dim=dim, **kwargs)


__all__ = [
    "FSQ",
    "LFQ",
    "QUANTIZERS",
    "VQ",
    "GroupLFQ",
    "MultiScaleResidualVQ",
    "Quantizer",
    "QuantizerOutput",
    "build_quantizer",
    "codebook_stats",
]
