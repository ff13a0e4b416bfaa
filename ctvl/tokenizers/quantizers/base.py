"""The one small interface every ctvl quantizer follows.

A quantizer maps a continuous latent to a discrete one. Inputs are channel-first feature maps of any
spatial rank — (B, C, L) token sequences given as (B, L, C) with ``channel_last=True``, (B, C, H, W)
images, (B, C, T, H, W) volumes — and the output keeps the input's shape.
"""

from __future__ import annotations

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
