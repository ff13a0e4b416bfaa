"""Flat-memory inference: windowed encode, exact streaming encode, and cached streaming decode.

Which path equals which (floats compared at ~1e-5):
    * ``stream`` encode == ``causal`` (one-shot) encode, for any chunk size: every causal conv carries
      the input frames its next output needs in a :class:`CausalCache`, norms are per slice.
    * ``windowed`` encode (curriculum stage 2: windows of 1 + f_t slices = 5 Haar frames, stride f_t
      slices, adjacent windows share one slice; the first window keeps both latents, later windows only
      the new one) == ``causal`` only when the volume fits in one window; otherwise each window restarts
      the causal context, which is what stage 2 trains the encoder for. Its latent j (j >= 1) covers the
      same slices (f_t (j - 1) + 1 ... f_t j) as the causal latent j.
    * streaming ``decode`` == one-shot decode, for any chunk size (same cache mechanism; the adaptive
      GroupNorm is per slice and its condition is expanded causally).
Working memory depends on the chunk / window size and the in-plane size, never on the depth.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Literal, Protocol

import torch
import torch.nn.functional as F

from ctvl.errors import InputError
from ctvl.tokenizers.causal3d.conv import CausalCache
from ctvl.tokenizers.causal3d.haar import frames_to_volume, volume_to_frames
from ctvl.tokenizers.quantizers.base import Quantizer

EncodeMode = Literal["causal", "stream", "windowed"]


class StreamConfig(Protocol):
    """The config fields the streaming paths read (a :class:`~ctvl.tokenizers.causal3d.model.Causal3DConfig`)."""

    @property
    def temporal(self) -> bool: ...
    @property
    def time_factor(self) -> int: ...
    @property
    def space_factor(self) -> int: ...
    @property
    def window_latents(self) -> int: ...
    @property
    def token_channels(self) -> int: ...
    @property
    def pad_value(self) -> float: ...


class StreamModel(Protocol):
    """What the streaming paths need of :class:`~ctvl.tokenizers.causal3d.model.Causal3DTokenizer`.

    A protocol rather than an import, so the model can import this module at the top.
    """

    @property
    def config(self) -> StreamConfig: ...
    @property
    def quantizer(self) -> Quantizer: ...
    def encoder(self, frames: torch.Tensor, cache: CausalCache | None = None) -> torch.Tensor: ...
    def decoder(self, codes: torch.Tensor, cache: CausalCache | None = None) -> torch.Tensor: ...
    def padded_shape(self, t: int, h: int, w: int) -> tuple[int, int, int]: ...
    def pad(self, x: torch.Tensor) -> torch.Tensor: ...
    def encode_latents(self, x: torch.Tensor, mode: EncodeMode = "causal") -> torch.Tensor: ...


def slab(x: torch.Tensor, start: int, stop: int, padded: tuple[int, int, int], pad_value: float) -> torch.Tensor:
    """Slices ``start:stop`` of ``x`` as if it were padded at the end to ``padded`` = (T', H', W').

    Args:
        x: (B, C, T, H, W), unpadded.
        start, stop: slice range in the padded volume (stop <= T').
        padded: target (T', H', W').
        pad_value: fill value.

    Returns:
        (B, C, stop - start, H', W'), a copy only when padding is needed.
    """
    t, h, w = x.shape[2:]
    part = x[:, :, min(start, t) : min(stop, t)]
    extra_t = (stop - start) - part.shape[2]
    if extra_t or padded[1] != h or padded[2] != w:
        part = F.pad(part, (0, padded[2] - w, 0, padded[1] - h, 0, extra_t), value=pad_value)
    return part


def window_plan(depth: int, time_factor: int, window_latents: int = 1) -> list[tuple[int, int, int]]:
    """Stage-2 tiling of a padded depth ``1 + time_factor * k``.

    Args:
        depth: padded depth T' = 1 + time_factor * k.
        time_factor: slices per latent frame.
        window_latents: latent frames each window adds (1 -> windows of 1 + time_factor slices).

    Returns:
        One (start slice, number of slices, latents kept) per window: the first window keeps all its
        1 + r latents, later windows keep their last r (r = window_latents except for a shorter tail).
    """
    k = (depth - 1) // time_factor
    if k == 0:
        return [(0, 1, 1)]
    plan = []
    step = time_factor * window_latents
    for i, start in enumerate(range(0, time_factor * k, step)):
        r = min(window_latents, k - start // time_factor)
        plan.append((start, 1 + time_factor * r, 1 + r if i == 0 else r))
    return plan


def _iter_windows(model: StreamModel, x: torch.Tensor, windows_per_batch: int | None) -> Iterator[torch.Tensor]:
    """Latents of the stage-2 windows, a batch of windows at a time: (B, D, n_kept, h, w) chunks."""
    cfg = model.config
    padded = model.padded_shape(*x.shape[2:])
    plan = window_plan(padded[0], cfg.time_factor, cfg.window_latents)
    per = windows_per_batch or len(plan)
    b = x.shape[0]
    i = 0
    while i < len(plan):
        group = [plan[i]]  # consecutive windows of equal length share one encoder call
        while i + len(group) < len(plan) and len(group) < per and plan[i + len(group)][1] == plan[i][1]:
            group.append(plan[i + len(group)])
        batch = torch.cat([slab(x, s, s + n, padded, cfg.pad_value) for s, n, _ in group])  # (G*B, C, n, H, W)
        z = model.encoder(volume_to_frames(batch, cfg.temporal))  # (G*B, D, 1 + r, h, w)
        for g, (_, _, keep) in enumerate(group):
            yield z[g * b : (g + 1) * b, :, -keep:]
        i += len(group)


def encode_windowed(model: StreamModel, x: torch.Tensor, windows_per_batch: int | None = None) -> torch.Tensor:
    """Continuous latents through the stage-2 windows (differentiable: the stage-2 training path).

    Args:
        model: the tokenizer.
        x: (B, C, T, H, W); padded at the end as needed.
        windows_per_batch: windows encoded per encoder call (None: all at once).

    Returns:
        (B, D, 1 + (T' - 1) / f_t, H' / f_s, W' / f_s), the same grid as the causal encode.
    """
    return torch.cat(list(_iter_windows(model, x, windows_per_batch)), dim=2)


def _iter_stream(model: StreamModel, x: torch.Tensor, frames_per_chunk: int) -> Iterator[torch.Tensor]:
    """Exact causal encode, Haar frames fed in chunks through a carried cache."""
    cfg = model.config
    padded = model.padded_shape(*x.shape[2:])
    n_frames = (padded[0] + 1) // 2 if cfg.temporal else padded[0]
    cache = CausalCache()
    for f0 in range(0, n_frames, frames_per_chunk):
        f1 = min(f0 + frames_per_chunk, n_frames)
        if cfg.temporal:  # frame f pairs slices 2f - 1 and 2f (slice -1 := slice 0, the repeat)
            s0, s1 = (0 if f0 == 0 else 2 * f0 - 1), 2 * f1 - 1
        else:
            s0, s1 = f0, f1
        frames = volume_to_frames(slab(x, s0, s1, padded, cfg.pad_value), cfg.temporal, first=f0 == 0)
        z = model.encoder(frames, cache)  # (B, D, 0 or more, h, w)
        if z.shape[2]:
            yield z


def iter_encode(
    model: StreamModel, x: torch.Tensor, mode: EncodeMode = "windowed", chunk: int | None = None
) -> Iterator[torch.Tensor]:
    """Continuous latents of ``x`` (B, C, T, H, W) in depth order, chunk by chunk.

    Args:
        model: the tokenizer (call under no_grad for inference).
        x: unpadded volume.
        mode: ``"windowed"``, ``"stream"`` or ``"causal"`` (one chunk, memory grows with depth).
        chunk: windows per encoder call (windowed, default 1) or Haar frames per chunk (stream,
            default 2 latent frames' worth).

    Yields:
        (B, D, n, h, w) chunks whose concatenation along dim 2 is the latent grid.
    """
    if mode == "causal":
        yield model.encode_latents(model.pad(x), "causal")
    elif mode == "windowed":
        yield from _iter_windows(model, x, chunk or 1)
    elif mode == "stream":
        yield from _iter_stream(model, x, chunk or max(1, model.config.time_factor))
    else:
        raise ValueError(f"encode mode must be 'windowed', 'stream' or 'causal', got {mode!r}")


def iter_decode(
    model: StreamModel,
    tokens: torch.Tensor,
    chunk_latents: int = 1,
    shape: tuple[int, int, int] | None = None,
) -> Iterator[torch.Tensor]:
    """Decode latent frames chunk by chunk, carrying the decoder's causal cache.

    Args:
        model: the tokenizer (call under no_grad for inference).
        tokens: float codes (B, D, t, h, w) or integer indices (B, t, h, w) (turned into codes per chunk
            by the quantizer).
        chunk_latents: latent frames per decoder call.
        shape: (T, H, W) to crop the output to; default the full decoded size.

    Yields:
        (B, C, n, H, W) slice chunks; concatenated along dim 2 they equal the one-shot decode (cropped).
    """
    cfg = model.config
    is_index = not torch.is_floating_point(tokens)
    bad_codes = tokens.dim() != 5 or tokens.shape[1] != cfg.token_channels
    if (is_index and tokens.dim() != 4) or (not is_index and bad_codes):
        raise InputError(
            f"tokens must be indices (B, t, h, w) or codes (B, {cfg.token_channels}, t, h, w), got "
            f"{tuple(tokens.shape)} {tokens.dtype}"
        )
    n = tokens.shape[1] if is_index else tokens.shape[2]
    h, w = tokens.shape[-2:]
    full = (1 + cfg.time_factor * (n - 1), h * cfg.space_factor, w * cfg.space_factor)
    depth, height, width = shape or full
    if depth > full[0] or height > full[1] or width > full[2]:
        raise InputError(f"cannot crop decoded size {full} to {(depth, height, width)}")
    cache = CausalCache()
    emitted = 0
    for j0 in range(0, n, max(1, chunk_latents)):
        if is_index:
            codes = model.quantizer.indices_to_codes(tokens[:, j0 : j0 + chunk_latents])  # (B, D, n_c, h, w)
        else:
            codes = tokens[:, :, j0 : j0 + chunk_latents]
        frames = model.decoder(codes, cache)  # (B, C_haar, F, h', w')
        vol = frames_to_volume(frames, cfg.temporal, first=j0 == 0)[..., :height, :width]
        keep = min(vol.shape[2], depth - emitted)
        if keep <= 0:
            break
        yield vol[:, :, :keep]
        emitted += keep
