"""Shared pieces of the token-reduction modules: the result tuple and map → token flattening."""

from __future__ import annotations

from typing import NamedTuple

import torch


class ReducedTokens(NamedTuple):
    """Kept tokens and where they came from.

    Attributes:
        tokens: (B, k, C) the kept tokens, in their original order.
        indices: (B, k) int64 positions in the flattened input, strictly increasing per row.
    """

    tokens: torch.Tensor
    indices: torch.Tensor


def as_token_table(x: torch.Tensor, spatial_dims: int | None) -> tuple[torch.Tensor, tuple[int, ...] | None]:
    """Accept (B, N, C) tokens or, with ``spatial_dims``, a channel-first map (B, C, *S).

    Returns:
        tokens (B, N, C) (row-major flattening of S) and the grid S (None for token input).
    """
    if spatial_dims is None:
        if x.ndim != 3:
            raise ValueError(f"expected tokens (B, N, C), got {tuple(x.shape)}; pass spatial_dims for a (B, C, *S) map")
        return x, None
    if x.ndim != 2 + spatial_dims:
        raise ValueError(f"expected a (B, C, *S) map with {spatial_dims} spatial dims, got {tuple(x.shape)}")
    return x.flatten(2).transpose(1, 2), tuple(x.shape[2:])


def check_keep(keep: int, n: int) -> int:
    keep = int(keep)
    if not 1 <= keep <= n:
        raise ValueError(f"keep must be in [1, {n}] for {n} tokens, got {keep}")
    return keep


def gather_tokens(tokens: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    """(B, N, C), (B, k) → (B, k, C)."""
    return tokens.gather(1, indices[..., None].expand(-1, -1, tokens.shape[-1]))
