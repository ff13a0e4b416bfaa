"""The one small interface every ctvl quantizer follows.

A quantizer maps a continuous latent to a discrete one. Inputs are channel-first feature maps of any
spatial rank — (B, C, L) token sequences given as (B, L, C) with ``channel_last=True``, (B, C, H, W)
images, (B, C, T, H, W) volumes — and the output keeps the input's shape.

Besides the contract (:class:`QuantizerOutput`, :class:`Quantizer`) this module holds the small
helpers the implementations share: moving any layout to a flat ``(B, N, C)`` token table and back
(:func:`to_tokens` / :func:`from_tokens`), usage statistics from hard indices
(:func:`codebook_stats`) and a context that keeps the quantization step in fp32 under autocast
(:func:`full_precision`).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from typing import NamedTuple

import torch
from torch import nn


class QuantizerOutput(NamedTuple):
    """Result of a quantizer forward pass.

    Attributes:
        quantized: same shape as the input; straight-through, so gradients reach the encoder.
        indices: integer codes, the input shape without the channel dim (e.g. (B, T, H, W)); for
            grouped/residual quantizers an extra trailing dim holds one index per group/scale.
        aux_loss: scalar tensor (entropy + commitment terms, already weighted); 0 if none.
        stats: floats for logging, at least ``codebook_usage`` (fraction of codes used in the batch)
            and ``perplexity`` (exp of the entropy of the batch code histogram).
    """

    quantized: torch.Tensor
    indices: torch.Tensor
    aux_loss: torch.Tensor
    stats: dict[str, float]


class Quantizer(nn.Module):
    """Base class: subclasses implement ``forward``, ``indices_to_codes`` and ``codebook_size``."""

    #: number of channels the quantizer expects (C)
    dim: int
    #: True when inputs are (B, *spatial, C) instead of (B, C, *spatial)
    channel_last: bool = False

    @property
    def codebook_size(self) -> int:  # total number of distinct codes (per group for grouped ones)
        raise NotImplementedError

    @property
    def bits_per_token(self) -> float:
        """log2 of the number of distinct codes one spatial position can take."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> QuantizerOutput:  # pragma: no cover - interface
        raise NotImplementedError

    def indices_to_codes(self, indices: torch.Tensor) -> torch.Tensor:
        """Inverse of the index output: (B, *spatial[, G]) → (B, C, *spatial)."""
        raise NotImplementedError

    def usage_stats(self, indices: torch.Tensor) -> dict[str, float]:
        """``codebook_usage`` and ``perplexity`` of any collection of this quantizer's indices."""
        return codebook_stats(indices, self.codebook_size)

    def set_step(self, step: int) -> None:
        """Tell the quantizer the global training step (for annealed loss weights); no-op by default."""

    def index_bits(self, indices: torch.Tensor) -> float:
        """Bits needed to store one sample's indices: log2(codebook_size) per index entry.

        Args:
            indices: the ``indices`` of a :class:`QuantizerOutput`, leading dim = batch.
        """
        return math.log2(self.codebook_size) * indices[0].numel()


def to_tokens(x: torch.Tensor, channel_last: bool = False) -> tuple[torch.Tensor, tuple[int, ...]]:
    """Flatten any layout to a token table.

    Args:
        x: (B, C, *S) or, with ``channel_last``, (B, *S, C); S may be empty only for channel-last
            (B, C) inputs, which count as one token.

    Returns:
        tokens (B, N, C) with N = prod(S), and the spatial shape S to undo it with :func:`from_tokens`.
    """
    if x.ndim < 2:
        raise ValueError(f"expected a batched tensor (B, C, ...) but got shape {tuple(x.shape)}")
    if channel_last:
        spatial = tuple(x.shape[1:-1])
        return x.reshape(x.shape[0], -1, x.shape[-1]), spatial
    spatial = tuple(x.shape[2:])
    return x.flatten(2).transpose(1, 2), spatial  # (B, N, C)


def from_tokens(tokens: torch.Tensor, spatial: tuple[int, ...], channel_last: bool = False) -> torch.Tensor:
    """Inverse of :func:`to_tokens`: (B, N, C) → (B, C, *S) or (B, *S, C)."""
    b, _, c = tokens.shape
    if channel_last:
        return tokens.reshape(b, *spatial, c)
    return tokens.transpose(1, 2).reshape(b, c, *spatial)


def codebook_stats(indices: torch.Tensor, codebook_size: int) -> dict[str, float]:
    """Usage of a codebook in one batch of hard indices.

    Args:
        indices: integer tensor of any shape, values in [0, codebook_size).
        codebook_size: number of distinct codes.

    Returns:
        ``codebook_usage`` (fraction of codes hit at least once) and ``perplexity`` (exp of the
        entropy of the code histogram; equals the number of codes when usage is uniform).
    """
    flat = indices.detach().reshape(-1).long()
    if flat.numel() == 0:
        return {"codebook_usage": 0.0, "perplexity": 0.0}
    counts = torch.bincount(flat, minlength=codebook_size).float()
    probs = counts / counts.sum()
    nz = probs[probs > 0]
    entropy = -(nz * nz.log()).sum()
    return {"codebook_usage": float((counts > 0).float().mean()), "perplexity": float(entropy.exp())}


@contextlib.contextmanager
def full_precision(x: torch.Tensor) -> Iterator[None]:
    """Disable autocast on ``x``'s device so rounding/sign decisions happen in fp32.

    FSQ and LFQ codebook utilisation collapses when the bounding/rounding runs in bf16 (neighbouring
    levels become indistinguishable); callers also cast their inputs with ``.float()``.
    """
    with torch.autocast(device_type=x.device.type, enabled=False):
        yield
