"""Group-wise lookup-free quantization (WeTok "GQ"/GFQ).

Paper: Zhuang et al., "WeTok: Powerful Discrete Tokenization for High-Fidelity Visual
Reconstruction", 2025 (arXiv:2508.05599).
Idea: split the channels into G groups of b bits, sign-quantize each group (one index per group in a
shared 2^b sub-codebook); the entropy loss is computed per group, and its batch term pools the code
distribution over all groups, so memory is G·2^b instead of 2^(G·b) (8 groups × 8 bits = 64 bits).

Shapes: (B, C, *S) → quantized (B, C, *S), indices (B, *S, G) in [0, 2^b).

Written here because vector-quantize-pytorch's ``LFQ(num_codebooks=G)`` takes the batch entropy per
codebook and averages, while WeTok pools the batch distribution across groups (and the library's
entropy materialises tokens × G × 2^b distances; ours uses the per-bit factorisation of
:mod:`ctvl.tokenizers.quantizers.lfq`). ``batch_entropy="per_group"`` gives the library's variant.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from ctvl.tokenizers.quantizers.base import (
    Quantizer,
    QuantizerOutput,
    codebook_stats,
    from_tokens,
    full_precision,
    to_tokens,
)
from ctvl.tokenizers.quantizers.lfq import (
    AnnealedWeight,
    bits_to_indices,
    entropy,
    indices_to_signs,
    lfq_entropy_terms,
)


class GroupLFQ(Quantizer):
    """Grouped LFQ: G independent sign quantizers of b bits sharing one 2^b sub-codebook.

    Args:
        dim: input channels C. When C != groups·bits_per_group, linear projections map to/from it.
        groups: number of groups G (WeTok: 8).
        bits_per_group: bits per group b (WeTok: 8).
        entropy_weight, entropy_weight_start, entropy_anneal_steps: entropy loss weight and its
            linear annealing (as in :class:`~ctvl.tokenizers.quantizers.lfq.LFQ`).
        commitment_weight: weight of ‖z - sg(sign z)‖² (0.25).
        diversity_gamma: weight of the batch term inside the entropy loss.
        inv_temperature: τ of the soft code assignment (100).
        batch_entropy: ``"pooled"`` (WeTok: entropy of the code distribution averaged over tokens
            and groups) or ``"per_group"`` (mean of each group's batch entropy).
        channel_last: inputs are (B, *S, C) instead of (B, C, *S).
    """

    def __init__(
        self,
        *,
        dim: int,
        groups: int = 8,
        bits_per_group: int = 8,
        entropy_weight: float = 0.1,
        entropy_weight_start: float | None = 0.3,
        entropy_anneal_steps: int = 2000,
        commitment_weight: float = 0.25,
        diversity_gamma: float = 1.0,
        inv_temperature: float = 100.0,
        batch_entropy: Literal["pooled", "per_group"] = "pooled",
        channel_last: bool = False,
    ) -> None:
        super().__init__()
        if groups < 1 or not 1 <= bits_per_group <= 16:
            raise ValueError(
                f"GroupLFQ needs groups >= 1 and bits_per_group in [1, 16], got {groups} and {bits_per_group}"
            )
        if batch_entropy not in ("pooled", "per_group"):
            raise ValueError(f"batch_entropy must be 'pooled' or 'per_group', got {batch_entropy!r}")
        self.dim, self.groups, self.bits = dim, groups, bits_per_group
        self.channel_last = channel_last
        width = groups * bits_per_group
        self.project_in = nn.Linear(dim, width) if dim != width else nn.Identity()
        self.project_out = nn.Linear(width, dim) if dim != width else nn.Identity()
        self.entropy_weight = AnnealedWeight(end=entropy_weight, start=entropy_weight_start, steps=entropy_anneal_steps)
        self.commitment_weight = commitment_weight
        self.diversity_gamma = diversity_gamma
        self.inv_temperature = inv_temperature
        self.batch_entropy_mode = batch_entropy

    @property
    def codebook_size(self) -> int:
        """Size of the shared per-group sub-codebook (2^b)."""
        return 2**self.bits

    @property
    def bits_per_token(self) -> float:
        return float(self.groups * self.bits)

    def set_step(self, step: int) -> None:
        self.entropy_weight.set_step(step)

    def entropy_loss(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Entropy loss of z (N, G, b), fp32: (per-sample mean over groups, batch, loss)."""
        per_sample, avg_probs = lfq_entropy_terms(z, self.inv_temperature)  # (N, G), (G, 2^b)
        pooled = self.batch_entropy_mode == "pooled"
        batch = entropy(avg_probs.mean(0)) if pooled else entropy(avg_probs).mean()
        per_sample = per_sample.mean()
        return per_sample, batch, per_sample - self.diversity_gamma * batch

    def forward(self, x: torch.Tensor) -> QuantizerOutput:
        """Quantize.

        Args:
            x: (B, C, *S) (or (B, *S, C) with ``channel_last``).

        Returns:
            :class:`QuantizerOutput` with indices (B, *S, G); stats average usage/perplexity over
            groups (each against the 2^b sub-codebook) and add ``pooled_usage`` over all groups.
        """
        tokens, spatial = to_tokens(x, self.channel_last)  # (B, N, C)
        b, n = tokens.shape[:2]
        with full_precision(x):
            z = self.project_in(tokens.float()).reshape(b, n, self.groups, self.bits)  # (B, N, G, b)
            signs = torch.where(z > 0, 1.0, -1.0)
            indices = bits_to_indices(z > 0)  # (B, N, G)
            quantized = z + (signs - z).detach()
            aux = z.new_zeros(())
            stats = self.usage_stats(indices)
            if self.training:
                per_sample, batch, ent_loss = self.entropy_loss(z.reshape(-1, self.groups, self.bits))
                commit = F.mse_loss(z, signs.detach())
                weight = self.entropy_weight.value()
                aux = weight * ent_loss + self.commitment_weight * commit
                stats.update(
                    per_sample_entropy=float(per_sample.detach()),
                    batch_entropy=float(batch.detach()),
                    commitment=float(commit.detach()),
                    entropy_weight=weight,
                )
                self.entropy_weight.tick()
            out = self.project_out(quantized.reshape(b, n, -1))  # (B, N, C)
        out = from_tokens(out.to(x.dtype), spatial, self.channel_last)
        return QuantizerOutput(out, indices.reshape(b, *spatial, self.groups), aux, stats)

    def usage_stats(self, indices: torch.Tensor) -> dict[str, float]:
        """Usage per group (averaged) against the 2^b sub-codebook, plus ``pooled_usage``; (..., G) indices."""
        per_group = [codebook_stats(indices[..., g], self.codebook_size) for g in range(self.groups)]
        return {
            "codebook_usage": sum(s["codebook_usage"] for s in per_group) / self.groups,
            "perplexity": sum(s["perplexity"] for s in per_group) / self.groups,
            "pooled_usage": codebook_stats(indices, self.codebook_size)["codebook_usage"],
        }

    def indices_to_codes(self, indices: torch.Tensor) -> torch.Tensor:
        """(B, *S, G) integer codes → (B, C, *S) (or (B, *S, C) with ``channel_last``), fp32."""
        b, spatial = indices.shape[0], tuple(indices.shape[1:-1])
        signs = indices_to_signs(indices.reshape(b, -1, self.groups), self.bits)  # (B, N, G, b)
        codes = self.project_out(signs.flatten(2))  # (B, N, C)
        return from_tokens(codes, spatial, self.channel_last)
