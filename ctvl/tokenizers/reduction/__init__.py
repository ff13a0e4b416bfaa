"""Token reduction for vision-language inputs: DivPrune, attention top-k with region budgets,
TokenPacker. Inputs are (B, N, C) tokens or channel-first maps with ``spatial_dims`` (e.g. 3D
tokenizer latents (B, C, T, H, W) → (B, N_keep, C))."""

from ctvl.tokenizers.reduction.attention_topk import attention_topk, region_ids, split_budget, summary_attention
from ctvl.tokenizers.reduction.base import ReducedTokens, as_token_table
from ctvl.tokenizers.reduction.divprune import divprune, nearest_neighbour_distance
from ctvl.tokenizers.reduction.tokenpacker import TokenPacker

__all__ = [
    "ReducedTokens",
    "TokenPacker",
    "as_token_table",
    "attention_topk",
    "divprune",
    "nearest_neighbour_distance",
    "region_ids",
    "split_budget",
    "summary_attention",
]
