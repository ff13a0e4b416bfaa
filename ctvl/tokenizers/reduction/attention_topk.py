"""Attention-score top-k token selection with the budget split across regions.

Papers: Wang et al., "[CLS] Token Tells Everything Needed for Training-free Efficient MLLMs"
(VTC-CLS, 2024, arXiv:2412.05819) — keep the visual tokens the [CLS] token attends to most;
Arif et al., "HiRED: Attention-Guided Token Dropping for Efficient Inference of High-Resolution
Vision-Language Models" (AAAI 2025, arXiv:2408.10945) — split the token budget across image
partitions in proportion to each partition's total [CLS] attention, then top-k inside each.
Idea: importance = attention from a summary token; a per-region budget keeps coverage everywhere.

Shapes: (B, N, C) tokens (+ ``grid``) or (B, C, *S) map (``spatial_dims``), scores (B, N) →
tokens (B, k, C), indices (B, k) in original order.

Written by hand: no library implements the region-split selection.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import torch

from ctvl.tokenizers.reduction.base import ReducedTokens, as_token_table, check_keep, gather_tokens


def summary_attention(tokens: torch.Tensor) -> torch.Tensor:
    """Parameter-free stand-in for [CLS] attention when the encoder exposes none.

    The mean token plays the [CLS] query: softmax_j(⟨mean, x_j⟩ / √C). (B, N, C) → (B, N).
    """
    t = tokens.detach().float()
    query = t.mean(dim=1, keepdim=True)  # (B, 1, C)
    return ((query @ t.transpose(1, 2)).squeeze(1) / math.sqrt(t.shape[-1])).softmax(dim=-1)


def region_ids(grid: Sequence[int], regions: Sequence[int], device: torch.device | None = None) -> torch.Tensor:
    """Region index of every grid position (row-major), regions tiling each axis evenly: (N,)."""
    ids = torch.zeros((), dtype=torch.long, device=device)
    for size, count in zip(grid, regions, strict=True):
        if not 1 <= count <= size:
            raise ValueError(f"regions per axis must be in [1, {size}] for an axis of {size}, got {count}")
        coord = torch.arange(size, device=device) * count // size  # region coordinate on this axis
        ids = ids[..., None] * count + coord
    return ids.reshape(-1)


def split_budget(weights: torch.Tensor, capacity: torch.Tensor, keep: int) -> torch.Tensor:
    """Integer budgets ∝ weights that sum to ``keep`` and respect capacities (largest remainder).

    Args:
        weights: (R,) non-negative region weights.
        capacity: (R,) tokens available per region.
        keep: total budget (≤ capacity.sum()).

    Returns:
        (R,) int64 budgets.
    """
    budget = torch.zeros_like(capacity)
    open_ = capacity > 0
    remaining = keep
    while remaining > 0:  # each pass either places everything or fills at least one region
        w = torch.where(open_, weights.double().clamp_min(0) + 1e-12, torch.zeros((), dtype=torch.double))
        share = w / w.sum() * remaining
        want = share.floor().long()
        short = remaining - int(want.sum())  # rounding shortfall: +1 for the largest fractions
        frac = torch.where(open_, share - share.floor(), torch.full_like(share, -1.0))
        want[frac.argsort(descending=True)[:short]] += 1
        budget += torch.minimum(want, capacity - budget)
        remaining = keep - int(budget.sum())
        open_ = budget < capacity
    return budget


def attention_topk(
    x: torch.Tensor,
    keep: int,
    scores: torch.Tensor | None = None,
    spatial_dims: int | None = None,
    grid: Sequence[int] | None = None,
    regions: int | Sequence[int] = 1,
    split: Literal["proportional", "equal"] = "proportional",
) -> ReducedTokens:
    """Keep the highest-scoring tokens, with the budget split across spatial regions.

    Args:
        x: (B, N, C) tokens, or (B, C, *S) with ``spatial_dims``.
        keep: total number of tokens k to keep.
        scores: (B, N) importance (e.g. [CLS] attention); None = :func:`summary_attention`.
        spatial_dims: None for token input, else the map's number of spatial dims.
        grid: S for token input when ``regions`` > 1 (N = prod(S), row-major).
        regions: regions per axis (int = same on every axis); 1 = plain top-k (VTC-CLS).
        split: ``proportional`` (HiRED: budget ∝ the region's summed score) or ``equal``.

    Returns:
        :class:`ReducedTokens`, indices ascending.
    """
    tokens, map_grid = as_token_table(x, spatial_dims)
    b, n, _ = tokens.shape
    keep = check_keep(keep, n)
    scores = summary_attention(tokens) if scores is None else scores.detach().float()
    if scores.shape != (b, n):
        raise ValueError(f"scores must have shape {(b, n)}, got {tuple(scores.shape)}")
    if split not in ("proportional", "equal"):
        raise ValueError(f"split must be 'proportional' or 'equal', got {split!r}")
    grid = map_grid if map_grid is not None else (tuple(grid) if grid is not None else None)
    several = regions != 1 if isinstance(regions, int) else any(int(r) != 1 for r in regions)
    if not several:
        ids = torch.zeros(n, dtype=torch.long, device=tokens.device)
    else:
        if grid is None or math.prod(grid) != n:
            raise ValueError(f"regions need the token grid: pass spatial_dims with a map or grid with prod = {n}")
        per_axis = (regions,) * len(grid) if isinstance(regions, int) else tuple(regions)
        ids = region_ids(grid, per_axis, tokens.device)
    num_regions = int(ids.max()) + 1
    capacity = torch.bincount(ids, minlength=num_regions)
    kept = torch.zeros(b, n, dtype=torch.bool, device=tokens.device)
    # rank of every token inside its region by descending score
    by_score = scores.argsort(dim=1, descending=True, stable=True)  # (B, N)
    region_sorted = ids[by_score].argsort(dim=1, stable=True)  # stable: keeps score order in a region
    order = by_score.gather(1, region_sorted)  # (B, N) tokens grouped by region, best first
    starts = torch.cumsum(capacity, 0) - capacity  # (R,)
    rank = torch.arange(n, device=tokens.device)[None, :] - starts[ids[order]]  # (B, N)
    for i in range(b):
        if split == "proportional":
            weights = torch.bincount(ids, weights=scores[i], minlength=num_regions)
        else:
            weights = capacity.double()
        budget = split_budget(weights, capacity, keep)
        kept[i, order[i][rank[i] < budget[ids[order[i]]]]] = True
    indices = kept.nonzero()[:, 1].reshape(b, keep)  # row-major → ascending per row
    return ReducedTokens(gather_tokens(tokens, indices), indices)
