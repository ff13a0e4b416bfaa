"""DivPrune: diversity-based visual token pruning.

Paper: Alvar et al., "DivPrune: Diversity-based Visual Token Pruning for Large Multimodal Models",
CVPR 2025 (arXiv:2503.02175).
Idea: keep the subset that solves a max-min diversity problem — greedily add the token whose
smallest cosine distance to the already kept ones is largest; no attention scores, no training.

Shapes: (B, N, C) tokens or (B, C, *S) map (``spatial_dims``) → tokens (B, k, C), indices (B, k)
in original order.

Written by hand: no maintained library implements it. Memory is O(B·N·chunk) for the first pick
(distance of every token to its nearest neighbour, computed in row chunks) and O(B·N) per greedy
step, so 3D latents with tens of thousands of tokens fit.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ctvl.tokenizers.reduction.base import ReducedTokens, as_token_table, check_keep, gather_tokens


def nearest_neighbour_distance(xn: torch.Tensor, chunk: int = 1024) -> torch.Tensor:
    """Cosine distance of each unit vector to its nearest other one.

    Args:
        xn: (B, N, C) l2-normalised tokens.
        chunk: rows per block (bounds memory to B·chunk·N).

    Returns:
        (B, N) distances 1 - max_{j≠i} cos(x_i, x_j) (N = 1: +inf).
    """
    b, n, _ = xn.shape
    out = torch.empty(b, n, device=xn.device, dtype=xn.dtype)
    for start in range(0, n, chunk):
        rows = xn[:, start : start + chunk]  # (B, c, C)
        sim = rows @ xn.transpose(1, 2)  # (B, c, N)
        idx = torch.arange(rows.shape[1], device=xn.device)
        sim[:, idx, start + idx] = float("-inf")  # exclude self
        out[:, start : start + chunk] = 1.0 - sim.max(dim=-1).values
    return out


def divprune(x: torch.Tensor, keep: int, spatial_dims: int | None = None, chunk: int = 1024) -> ReducedTokens:
    """Greedy max-min cosine diversity selection.

    Args:
        x: (B, N, C) tokens, or (B, C, *S) with ``spatial_dims`` (flattened row-major).
        keep: number of tokens k to keep (1..N).
        spatial_dims: None for token input, else the number of spatial dims of the map.
        chunk: row block size of the nearest-neighbour pass.

    Returns:
        :class:`ReducedTokens` with indices sorted ascending (original order).
    """
    tokens, _ = as_token_table(x, spatial_dims)
    b, n, _ = tokens.shape
    keep = check_keep(keep, n)
    xn = F.normalize(tokens.detach().float(), dim=-1)  # (B, N, C)
    rows = torch.arange(b, device=tokens.device)
    # first pick: the token farthest from its nearest neighbour
    first = nearest_neighbour_distance(xn, chunk).argmax(dim=-1)  # (B,)
    chosen = [first]
    selected = torch.zeros(b, n, dtype=torch.bool, device=tokens.device)
    selected[rows, first] = True
    min_dist = 1.0 - (xn @ xn[rows, first][..., None]).squeeze(-1)  # (B, N) distance to the kept set
    for _ in range(keep - 1):
        candidate = min_dist.masked_fill(selected, float("-inf"))
        nxt = candidate.argmax(dim=-1)  # (B,)
        chosen.append(nxt)
        selected[rows, nxt] = True
        min_dist = torch.minimum(min_dist, 1.0 - (xn @ xn[rows, nxt][..., None]).squeeze(-1))
    indices = torch.stack(chosen, dim=1).sort(dim=1).values  # (B, k) original order
    return ReducedTokens(gather_tokens(tokens, indices), indices)
