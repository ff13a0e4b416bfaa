"""Finite Scalar Quantization (FSQ).

Paper: Mentzer et al., "Finite Scalar Quantization: VQ-VAE Made Simple", ICLR 2024 (arXiv:2309.15505).
Idea: bound each of d channels with tanh and round it to one of L_i levels; the codebook is the
implicit grid of prod(L_i) points, so there is nothing to learn and no codebook collapse.

Shapes: (B, C, *S) → quantized (B, C, *S), indices (B, *S) in [0, prod(levels)).

The quantization itself is vector-quantize-pytorch's ``FSQ``; this wrapper adds the ctvl interface,
any spatial rank, usage stats, and forces the rounding into fp32 on every device (the library only
disables CUDA autocast; FSQ utilisation collapses when the bound/round runs in bf16).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from vector_quantize_pytorch import FSQ as _LibFSQ

from ctvl.tokenizers.quantizers.base import (
    Quantizer,
    QuantizerOutput,
    codebook_stats,
    from_tokens,
    full_precision,
    to_tokens,
)


class FSQ(Quantizer):
    """FSQ over channel-first maps of any spatial rank (or channel-last token sequences).

    Args:
        dim: input channels C. When C != len(levels) a linear projection maps C → len(levels) → C.
        levels: number of levels per quantized channel, e.g. (8, 5, 5, 5) ≈ 2^10 codes or
            (8, 8, 8, 5, 5, 5) ≈ 2^16 (the paper's recommendations).
        channel_last: inputs are (B, *S, C) instead of (B, C, *S).
        **library_kwargs: passed to ``vector_quantize_pytorch.FSQ`` (e.g. ``preserve_symmetry``).
    """

    def __init__(
        self,
        *,
        dim: int,
        levels: Sequence[int] = (8, 5, 5, 5),
        channel_last: bool = False,
        **library_kwargs,
    ) -> None:
        super().__init__()
        if not levels or any(int(level) < 2 for level in levels):
            raise ValueError(f"FSQ levels must be integers >= 2, got {list(levels)}")
        self.dim = dim
        self.levels = tuple(int(level) for level in levels)
        self.channel_last = channel_last
        # the library always sees (B, N, C) tokens; we handle layouts ourselves
        self.fsq = _LibFSQ(levels=list(self.levels), dim=dim, channel_first=False, **library_kwargs)

    @property
    def codebook_size(self) -> int:
        return int(math.prod(self.levels))

    @property
    def bits_per_token(self) -> float:
        return math.log2(self.codebook_size)

    def forward(self, x: torch.Tensor) -> QuantizerOutput:
        """Quantize.

        Args:
            x: (B, C, *S) (or (B, *S, C) with ``channel_last``), any float dtype.

        Returns:
            :class:`QuantizerOutput`; ``aux_loss`` is 0 (FSQ needs no auxiliary loss).
        """
        tokens, spatial = to_tokens(x, self.channel_last)  # (B, N, C)
        with full_precision(x):
            quantized, indices = self.fsq(tokens.float())  # (B, N, C), (B, N)
        quantized = from_tokens(quantized.to(x.dtype), spatial, self.channel_last)
        indices = indices.long().reshape(x.shape[0], *spatial)  # (B, *S)
        aux = x.new_zeros((), dtype=torch.float32)
        return QuantizerOutput(quantized, indices, aux, codebook_stats(indices, self.codebook_size))

    def indices_to_codes(self, indices: torch.Tensor) -> torch.Tensor:
        """(B, *S) integer codes → (B, C, *S) (or (B, *S, C) with ``channel_last``) in fp32."""
        b, spatial = indices.shape[0], tuple(indices.shape[1:])
        codes = self.fsq.indices_to_codes(indices.reshape(b, -1).long())  # (B, N, C)
        return from_tokens(codes, spatial, self.channel_last)
