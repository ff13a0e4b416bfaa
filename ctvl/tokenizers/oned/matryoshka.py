"""Matryoshka token sets: MQT prefix queries and M3 nested pooling.

Papers: Hu et al., "Matryoshka Query Transformer for Large Vision-Language Models" (MQT, NeurIPS
2024, arXiv:2405.19315); Cai et al., "Matryoshka Multimodal Models" (M3, 2024, arXiv:2405.17430).
Idea (MQT): M learned queries cross-attend to the visual tokens; with causal self-attention among
the queries the first m outputs never depend on later queries, so any prefix m ≤ M is a valid
token set (train with random m). Idea (M3): average-pool the token grid to nested coarser grids
(e.g. 24² → 12² → 6² → 3² → 1²) and train the consumer on every scale.

Shapes: MQT (B, N, D_ctx) → (B, m, D); M3 (B, C, *S) → [(B, prod(s_l), C) for each level l].
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ctvl.tokenizers.oned.patches import as_tuple


class MQTResampler(nn.Module):
    """Matryoshka Query Transformer resampler: prefix-valid learned queries.

    Args:
        dim: query/output width D.
        num_queries: M, the largest token budget.
        context_dim: width of the input tokens (None = D); projected to D when different.
        depth: decoder layers (causal self-attention over queries, cross-attention to the context, MLP).
        heads: attention heads.
        mlp_ratio: MLP hidden = mlp_ratio · D.
    """

    def __init__(
        self,
        *,
        dim: int,
        num_queries: int,
        context_dim: int | None = None,
        depth: int = 2,
        heads: int = 4,
        mlp_ratio: float = 4.0,
    ) -> None:
        super().__init__()
        self.dim, self.num_queries = dim, num_queries
        self.queries = nn.Parameter(torch.randn(num_queries, dim) * 0.02)
        self.context_proj = nn.Linear(context_dim, dim) if context_dim not in (None, dim) else nn.Identity()
        layer = nn.TransformerDecoderLayer(
            dim, heads, int(dim * mlp_ratio), dropout=0.0, activation="gelu", batch_first=True, norm_first=True
        )
        self.layers = nn.TransformerDecoder(layer, depth, norm=nn.LayerNorm(dim))

    def sample_m(self, generator: torch.Generator | None = None) -> int:
        """A training budget m ~ U{1..M} (MQT samples one per step)."""
        return int(torch.randint(1, self.num_queries + 1, (1,), generator=generator))

    def forward(
        self, context: torch.Tensor, m: int | None = None, context_padding_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Resample.

        Args:
            context: (B, N, D_ctx) visual tokens.
            m: number of queries to use (1..M); None = M.
            context_padding_mask: optional (B, N) bool, True = padding.

        Returns:
            (B, m, D); row i is the same for every m > i.
        """
        m = self.num_queries if m is None else int(m)
        if not 1 <= m <= self.num_queries:
            raise ValueError(f"m must be in [1, {self.num_queries}], got {m}")
        q = self.queries[:m].expand(context.shape[0], -1, -1)  # (B, m, D)
        causal = nn.Transformer.generate_square_subsequent_mask(m, device=context.device, dtype=q.dtype)
        memory = self.context_proj(context)  # (B, N, D)
        return self.layers(q, memory, tgt_mask=causal, tgt_is_causal=True, memory_key_padding_mask=context_padding_mask)


class NestedPooling(nn.Module):
    """M3 nested token scales by average pooling (no parameters).

    Args:
        spatial_dims: 1, 2 or 3.
        levels: output grid sizes, fine → coarse, e.g. (24, 12, 6, 3, 1) for a 24 × 24 grid; an int
            is the same size on every axis, a tuple one size per axis. When each size divides the
            previous one, every coarse token is exactly the mean of the finer tokens it covers.
    """

    def __init__(self, *, spatial_dims: int, levels: Sequence[int | Sequence[int]]) -> None:
        super().__init__()
        if spatial_dims not in (1, 2, 3):
            raise ValueError(f"spatial_dims must be 1, 2 or 3, got {spatial_dims}")
        self.spatial_dims = spatial_dims
        self.levels = [as_tuple(level, spatial_dims, "level") for level in levels]
        self._pool = {1: F.adaptive_avg_pool1d, 2: F.adaptive_avg_pool2d, 3: F.adaptive_avg_pool3d}[spatial_dims]

    def pool(self, x: torch.Tensor, level: int) -> torch.Tensor:
        """(B, C, *S) → (B, prod(levels[level]), C)."""
        if x.ndim != 2 + self.spatial_dims:
            raise ValueError(f"expected (B, C, *S) with {self.spatial_dims} spatial dims, got {tuple(x.shape)}")
        return self._pool(x, self.levels[level]).flatten(2).transpose(1, 2)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """(B, C, *S) → one (B, N_l, C) token set per level, fine → coarse."""
        return [self.pool(x, i) for i in range(len(self.levels))]
