"""Vector quantization with an l2-normalised (cosine) codebook, TiTok-style.

Papers: van den Oord et al., "Neural Discrete Representation Learning" (VQ-VAE, 2017); Yu et al.,
"An Image is Worth 32 Tokens for Reconstruction and Generation" (TiTok, NeurIPS 2024,
arXiv:2406.07550) — codebook 4096 × 12 with l2-normalised codes and latents; Yu et al., "Vector-
quantized Image Modeling with Improved VQGAN" (ViT-VQGAN, 2022) for the factorised, normalised lookup.
Idea: project each token to a low-dim space, l2-normalise it and snap it to the nearest of K unit
codes (cosine similarity); low dimension + normalisation keep many codes alive.

Shapes: (B, C, *S) → quantized (B, C, *S), indices (B, *S) in [0, K).

The lookup, EMA codebook update, dead-code replacement and rotation-trick gradients are
vector-quantize-pytorch's ``VectorQuantize``; this wrapper adds the ctvl interface (any spatial
rank, usage stats, fp32 lookup under autocast).
"""

from __future__ import annotations

import math

import torch
from vector_quantize_pytorch import VectorQuantize

from ctvl.tokenizers.quantizers.base import (
    Quantizer,
    QuantizerOutput,
    codebook_stats,
    from_tokens,
    full_precision,
    to_tokens,
)


class VQ(Quantizer):
    """Cosine-similarity vector quantizer.

    Args:
        dim: input channels C (projected to ``codebook_dim`` for the lookup when different).
        codebook_size: number of codes K (TiTok: 4096).
        codebook_dim: dimension of the normalised lookup space (TiTok: 12).
        commitment_weight: weight of the commitment loss (0.25, as TiTok/VQ-VAE).
        decay: EMA decay of the codebook update.
        threshold_ema_dead_code: codes whose EMA cluster size falls below this are re-seeded from
            the batch (keeps usage up on small data); 0 disables it.
        channel_last: inputs are (B, *S, C) instead of (B, C, *S).
        **library_kwargs: passed on to ``vector_quantize_pytorch.VectorQuantize``.
    """

    def __init__(
        self,
        *,
        dim: int,
        codebook_size: int = 4096,
        codebook_dim: int | None = 12,
        commitment_weight: float = 0.25,
        decay: float = 0.99,
        threshold_ema_dead_code: float = 2.0,
        channel_last: bool = False,
        **library_kwargs,
    ) -> None:
        super().__init__()
        self.dim, self.channel_last = dim, channel_last
        self._codebook_size = int(codebook_size)
        self.vq = VectorQuantize(
            dim=dim,
            codebook_size=codebook_size,
            codebook_dim=codebook_dim,
            use_cosine_sim=True,
            commitment_weight=commitment_weight,
            decay=decay,
            threshold_ema_dead_code=threshold_ema_dead_code,
            channel_last=True,
            **library_kwargs,
        )

    @property
    def codebook_size(self) -> int:
        return self._codebook_size

    @property
    def bits_per_token(self) -> float:
        return math.log2(self._codebook_size)

    def forward(self, x: torch.Tensor) -> QuantizerOutput:
        """Quantize.

        Args:
            x: (B, C, *S) (or (B, *S, C) with ``channel_last``).

        Returns:
            :class:`QuantizerOutput`; ``aux_loss`` is the weighted commitment loss in training, 0 in eval.
        """
        tokens, spatial = to_tokens(x, self.channel_last)  # (B, N, C)
        with full_precision(x):
            quantized, indices, loss = self.vq(tokens.float())  # (B, N, C), (B, N), scalar
        out = from_tokens(quantized.to(x.dtype), spatial, self.channel_last)
        indices = indices.long().reshape(x.shape[0], *spatial)
        return QuantizerOutput(out, indices, loss.float().reshape(()), codebook_stats(indices, self.codebook_size))

    def indices_to_codes(self, indices: torch.Tensor) -> torch.Tensor:
        """(B, *S) integer codes → (B, C, *S) (or (B, *S, C) with ``channel_last``)."""
        b, spatial = indices.shape[0], tuple(indices.shape[1:])
        codes = self.vq.get_output_from_indices(indices.reshape(b, -1).long())  # (B, N, C)
        return from_tokens(codes, spatial, self.channel_last)
