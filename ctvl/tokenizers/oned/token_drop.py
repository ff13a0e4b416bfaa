"""Variable-length training of ordered 1D token sequences: nested dropout and tail drop.

Papers: Bachmann et al., "FlexTok: Resampling Images into 1D Token Sequences of Flexible Length"
(2025, arXiv:2502.13967) — nested dropout: keep the first k of N register tokens, k ~ U{1..N} or a
power of two, and replace the rest with a learned mask token; Miwa et al., "One-D-Piece: Image
Tokenizer Meets Quality-Controllable Compression" (2025, arXiv:2501.10064) — tail token drop: one
cut per batch, the tail is removed. Both force earlier tokens to carry the coarse content.

Shapes: ``sample_keep`` → (B,) int64 in [1, N]; ``apply_nested_mask`` keeps (B, N, D).
"""

from __future__ import annotations

from typing import Literal

import torch

TokenDrop = Literal["none", "nested", "nested_pow2", "tail"]
TOKEN_DROP_MODES: tuple[str, ...] = ("none", "nested", "nested_pow2", "tail")


def sample_keep(
    batch: int,
    num_tokens: int,
    mode: TokenDrop,
    device: torch.device | str = "cpu",
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Number of leading tokens to keep for each sample.

    Args:
        batch: B.
        num_tokens: N.
        mode: ``none`` (keep all), ``nested`` (k ~ U{1..N} per sample), ``nested_pow2`` (k uniform
            over {1, 2, 4, …} ∪ {N} per sample) or ``tail`` (one k ~ U{1..N} shared by the batch).
        device: device of the result.
        generator: optional RNG (CPU) for reproducible draws.

    Returns:
        (B,) int64 counts in [1, N].
    """
    if mode not in TOKEN_DROP_MODES:
        raise ValueError(f"token drop mode must be one of {TOKEN_DROP_MODES}, got {mode!r}")
    if mode == "none":
        keep = torch.full((batch,), num_tokens, dtype=torch.long)
    elif mode == "nested":
        keep = torch.randint(1, num_tokens + 1, (batch,), generator=generator)
    elif mode == "nested_pow2":
        choices = sorted({2**i for i in range(num_tokens.bit_length()) if 2**i <= num_tokens} | {num_tokens})
        pick = torch.randint(0, len(choices), (batch,), generator=generator)
        keep = torch.tensor(choices, dtype=torch.long)[pick]
    else:  # tail: one cut for the whole batch
        keep = torch.randint(1, num_tokens + 1, (1,), generator=generator).expand(batch).clone()
    return keep.to(device)


def keep_mask(keep: torch.Tensor, num_tokens: int) -> torch.Tensor:
    """(B,) counts → (B, N) bool, True for kept positions (the first ``keep[b]``)."""
    return torch.arange(num_tokens, device=keep.device)[None, :] < keep[:, None]


def apply_nested_mask(tokens: torch.Tensor, keep: torch.Tensor, mask_token: torch.Tensor) -> torch.Tensor:
    """Replace every token after the first ``keep[b]`` with ``mask_token``.

    Args:
        tokens: (B, N, D).
        keep: (B,) int counts in [1, N].
        mask_token: (D,) learned embedding.

    Returns:
        (B, N, D).
    """
    kept = keep_mask(keep, tokens.shape[1])[..., None]  # (B, N, 1)
    return torch.where(kept, tokens, mask_token.to(tokens.dtype).expand_as(tokens))
