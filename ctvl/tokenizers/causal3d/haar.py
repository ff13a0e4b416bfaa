"""One level of the orthonormal Haar wavelet: the tokenizer's front end and back end.

BTB3D starts with one level of a 3D Haar transform: 2x fewer samples in every axis, 8 sub-bands as
channels. To make a single slice and a volume go through the same network, the first slice is repeated
before the transform (T slices -> T + 1 -> (T + 1) / 2 Haar frames) and dropped again after the inverse.
With that rule, a volume of 1 + 2n slices gives 1 + n Haar frames and Haar frame 0 only ever sees slice 0.

Written by hand (a reshape and sums): it is a few lines, exactly invertible, and MONAI / PyWavelets offer
no torch 3D DWT that keeps autograd and the (B, C, T, H, W) layout. ``temporal=False`` gives the 2D
transform (4 sub-bands) applied to every slice on its own, used by the slice-wise baseline.
"""

from __future__ import annotations

import math

import torch

_SQRT_HALF = 1.0 / math.sqrt(2.0)


def _split(x: torch.Tensor, dim: int) -> torch.Tensor:
    """Orthonormal 1D Haar along ``dim`` of size 2: returns (low, high) stacked in a new dim 0."""
    a, b = x.unbind(dim)
    return torch.stack(((a + b) * _SQRT_HALF, (a - b) * _SQRT_HALF))


def _merge(bands: torch.Tensor, dim: int) -> torch.Tensor:
    """Inverse of :func:`_split`: bands (2, ...) -> tensor with a size-2 axis at ``dim``."""
    low, high = bands.unbind(0)
    return torch.stack(((low + high) * _SQRT_HALF, (low - high) * _SQRT_HALF), dim=dim)


def num_bands(temporal: bool = True) -> int:
    """Number of sub-bands of one Haar level: 8 in 3D, 4 in 2D (per slice)."""
    return 8 if temporal else 4


def haar_forward(x: torch.Tensor, temporal: bool = True) -> torch.Tensor:
    """One-level Haar analysis.

    Args:
        x: (B, C, T, H, W) with H, W even and T even when ``temporal``.
        temporal: 3D transform (pairs of slices) or a 2D transform of each slice.

    Returns:
        (B, 8C, T/2, H/2, W/2) for 3D or (B, 4C, T, H/2, W/2) for 2D; channels are band-major
        (band 0, the all-low band, holds channels 0..C-1).
    """
    b, c, t, h, w = x.shape
    if h % 2 or w % 2 or (temporal and t % 2):
        raise ValueError(f"Haar transform needs even sizes, got T={t}, H={h}, W={w}")
    if temporal:
        y = x.reshape(b, c, t // 2, 2, h // 2, 2, w // 2, 2)
        y = _split(y, 7)  # (2w, B, C, T/2, 2, H/2, 2, W/2)
        y = _split(y, 6)  # (2h, 2w, B, C, T/2, 2, H/2, W/2)
        y = _split(y, 5)  # (2t, 2h, 2w, B, C, T/2, H/2, W/2)
        return y.permute(3, 0, 1, 2, 4, 5, 6, 7).reshape(b, 8 * c, t // 2, h // 2, w // 2)
    y = x.reshape(b, c, t, h // 2, 2, w // 2, 2)
    y = _split(y, 6)  # (2w, B, C, T, H/2, 2, W/2)
    y = _split(y, 5)  # (2h, 2w, B, C, T, H/2, W/2)
    return y.permute(2, 0, 1, 3, 4, 5, 6).reshape(b, 4 * c, t, h // 2, w // 2)


def haar_inverse(y: torch.Tensor, temporal: bool = True) -> torch.Tensor:
    """Exact inverse of :func:`haar_forward`.

    Args:
        y: (B, 8C, T', H', W') for 3D or (B, 4C, T', H', W') for 2D.
        temporal: must match the forward transform.

    Returns:
        (B, C, 2T', 2H', 2W') for 3D, (B, C, T', 2H', 2W') for 2D.
    """
    b, cb, t, h, w = y.shape
    nb = num_bands(temporal)
    if cb % nb:
        raise ValueError(f"inverse Haar needs a multiple of {nb} channels, got {cb}")
    c = cb // nb
    if temporal:
        z = y.reshape(b, 2, 2, 2, c, t, h, w).permute(1, 2, 3, 0, 4, 5, 6, 7)  # (2t, 2h, 2w, B, C, T, H, W)
        z = _merge(z, 5)  # (2h, 2w, B, C, T, 2, H, W)
        z = _merge(z, 6)  # (2w, B, C, T, 2, H, 2, W)
        z = _merge(z, 7)  # (B, C, T, 2, H, 2, W, 2)
        return z.reshape(b, c, 2 * t, 2 * h, 2 * w)
    z = y.reshape(b, 2, 2, c, t, h, w).permute(1, 2, 0, 3, 4, 5, 6)  # (2h, 2w, B, C, T, H, W)
    z = _merge(z, 5)  # (2w, B, C, T, H, 2, W)
    z = _merge(z, 6)  # (B, C, T, H, 2, W, 2)
    return z.reshape(b, c, t, 2 * h, 2 * w)


def volume_to_frames(x: torch.Tensor, temporal: bool = True, first: bool = True) -> torch.Tensor:
    """Slices -> Haar frames, repeating the first slice so T = 1 + 2n gives 1 + n frames.

    Args:
        x: (B, C, T, H, W). With ``first`` (the chunk starts the volume) T must be odd; for a later
            chunk of a stream T must be even (its slices pair up on their own).
        temporal: 3D (True) or per-slice 2D (False, no slice is repeated).
        first: whether ``x`` starts at slice 0 of the volume.

    Returns:
        (B, 8C, (T + 1) / 2, H/2, W/2) (first chunk) or (B, 8C, T/2, H/2, W/2); 2D: (B, 4C, T, H/2, W/2).
    """
    if temporal and first:
        x = torch.cat((x[:, :, :1], x), dim=2)  # (B, C, T + 1, H, W)
    return haar_forward(x, temporal)


def frames_to_volume(y: torch.Tensor, temporal: bool = True, first: bool = True) -> torch.Tensor:
    """Inverse of :func:`volume_to_frames`: Haar frames -> slices, dropping the repeated first slice.

    Args:
        y: (B, 8C, F, H', W') (3D) or (B, 4C, F, H', W') (2D).
        temporal: 3D or per-slice 2D.
        first: whether frame 0 of ``y`` is frame 0 of the volume (then its first slice is dropped).

    Returns:
        (B, C, 2F - 1, 2H', 2W') for a first chunk, (B, C, 2F, 2H', 2W') otherwise; 2D: (B, C, F, ...).
    """
    x = haar_inverse(y, temporal)
    if temporal and first:
        x = x[:, :, 1:]
    return x
