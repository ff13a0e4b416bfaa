"""TokenPacker-style region-to-point projector.

Paper: Li et al., "TokenPacker: Efficient Visual Projector for Multimodal LLM" (IJCV 2025,
arXiv:2407.02392).
Idea: downsample the token grid to get coarse queries, and let each query cross-attend only to the
fine tokens of its own region (r^d tokens), so fine detail is injected into k = N / r^d tokens.

Shapes: (B, C, *S) → tokens (B, prod(S / r), D_out) and the query grid S / r. (New tokens, so no
indices.) The attention is ``torch.nn.MultiheadAttention`` run with regions as the batch.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from ctvl.tokenizers.oned.patches import as_tuple


class TokenPacker(nn.Module):
    """Coarse queries attend to the fine tokens of their own region.

    Args:
        spatial_dims: 1, 2 or 3.
        dim: input channels C.
        out_dim: output width (the LM width); None = C.
        factor: downsampling per axis r (int or per-axis); S must be divisible by it.
        heads: attention heads (must divide C).
        mlp_ratio: hidden width of the output MLP, in units of C.
    """

    def __init__(
        self,
        *,
        spatial_dims: int,
        dim: int,
        out_dim: int | None = None,
        factor: int | Sequence[int] = 2,
        heads: int = 4,
        mlp_ratio: float = 2.0,
    ) -> None:
        super().__init__()
        if spatial_dims not in (1, 2, 3):
            raise ValueError(f"spatial_dims must be 1, 2 or 3, got {spatial_dims}")
        self.spatial_dims, self.dim = spatial_dims, dim
        self.factor = as_tuple(factor, spatial_dims, "factor")
        self.norm_q, self.norm_kv = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(
            nn.LayerNorm(dim), nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, out_dim or dim)
        )

    def _regions(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, *S) → (B·Nq, prod(r), C): the fine tokens of each region."""
        names = "thw"[-self.spatial_dims :]
        src = "b c " + " ".join(f"({a} r{a})" for a in names)
        dst = "(b " + " ".join(names) + ") (" + " ".join(f"r{a}" for a in names) + ") c"
        return rearrange(x, f"{src} -> {dst}", **{f"r{a}": f for a, f in zip(names, self.factor, strict=True)})

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, ...]]:
        """Pack.

        Args:
            x: (B, C, *S) with S divisible by the factor.

        Returns:
            tokens (B, Nq, D_out) with Nq = prod(S / r), row-major over the query grid, and that grid.
        """
        if x.ndim != 2 + self.spatial_dims or x.shape[1] != self.dim:
            raise ValueError(
                f"expected (B, {self.dim}, *S) with {self.spatial_dims} spatial dims, got {tuple(x.shape)}"
            )
        spatial = tuple(x.shape[2:])
        if any(s % f for s, f in zip(spatial, self.factor, strict=True)):
            raise ValueError(f"spatial shape {spatial} is not divisible by the factor {self.factor}")
        grid = tuple(s // f for s, f in zip(spatial, self.factor, strict=True))
        pool = {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d}[self.spatial_dims]
        queries = pool(x, self.factor).flatten(2).transpose(1, 2).reshape(-1, 1, self.dim)  # (B·Nq, 1, C)
        fine = self.norm_kv(self._regions(x))  # (B·Nq, r^d, C)
        attended, _ = self.attn(self.norm_q(queries), fine, fine, need_weights=False)
        packed = queries + attended  # (B·Nq, 1, C)
        out = self.mlp(packed).reshape(x.shape[0], -1, self.mlp[-1].out_features)  # (B, Nq, D_out)
        return out, grid
