"""Variable-length training of ordered 1D token sequences: nested dropout and tail drop.

Papers: Bachmann et al., "FlexTok: Resampling Images into 1D Token Sequences of Flexible Length"
(2025, arXiv:2502.13967) — nested dropout: keep the first k of N register tokens, k ~ U{1..N} or a
power of two, and replace the rest with a learned mask token; Miwa et al., "One-D-Piece: Image
Tokenizer Meets Quality-Controllable Compression" (2025, arXiv:2501.10064) — tail token drop: one
cut per batch, the tail is removed. Both force earlier tokens to carry the coarse content.

``full_share`` (ours, not in either paper) keeps all N tokens in that share of the draws. Under a
uniform k token j is present in only (N − j + 1) / N of the draws, token N in 1 / N. On the phantom
benchmark (``pipelines/bench_oned_seeds.py``, 3 seeds) the uniform rules left the curve flat or rising
past 4–6 tokens (tail drop: falling at every k in 0 of 3 seeds, nested dropout 1 of 3); with half of the
draws at full length it fell at every k in 3 of 3 for both (``docs/tokenizers.md``).

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
    full_share: float = 0.0,
) -> torch.Tensor:
    """Number of leading tokens to keep for each sample.

    Args:
        batch: B.
        num_tokens: N.
        mode: ``none`` (keep all), ``nested`` (k ~ U{1..N} per sample), ``nested_pow2`` (k uniform
            over {1, 2, 4, …} ∪ {N} per sample) or ``tail`` (one k ~ U{1..N} shared by the batch).
        device: device of the result.
        generator: optional RNG (CPU) for reproducible draws.
        full_share: probability in [0, 1) that a draw keeps all N instead (per sample for the nested
            modes, per batch for ``tail``).

    Returns:
        (B,) int64 counts in [1, N].
    """
    if mode not in TOKEN_DROP_MODES:
        raise ValueError(f"token drop mode must be one of {TOKEN_DROP_MODES}, got {mode!r}")
    check_full_share(full_share)
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
    if full_share > 0 and mode != "none":
        draws = 1 if mode == "tail" else batch
        full = (torch.rand(draws, generator=generator) < full_share).expand(batch)
        keep = torch.where(full, torch.full_like(keep, num_tokens), keep)
    return keep.to(device)


def check_full_share(full_share: float) -> None:
    """Raise ``ValueError`` unless 0 ≤ full_share < 1."""
    if not 0.0 <= full_share < 1.0:
        raise ValueError(f"full_share must be in [0, 1), got {full_share}")


def tail_cut_cycle(num_tokens: int, full_share: float = 0.0) -> list[int]:
    """One stratified cycle of tail-drop cuts: every length 1..N once, plus N repeated
    round(N · s / (1 − s)) times so that a share s of the extra draws keeps everything.

    Shuffle it and take one cut per batch: every length is trained within each cycle (a cycle is
    N steps for s = 0, 2N for s = 0.5). Returns a list of ints in [1, N].
    """
    check_full_share(full_share)
    extra = round(num_tokens * full_share / (1.0 - full_share))
    return list(range(1, num_tokens + 1)) + [num_tokens] * extra


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
