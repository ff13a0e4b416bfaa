"""Per-slice GroupNorm and the decoder's adaptive GroupNorm conditioned on the quantized latent.

Normalising each slice (frame) on its own — T folded into the batch — keeps every statistic inside one
frame, so a frame's output never depends on later frames (causality) nor on how the sequence is cut into
chunks (streaming equals one-shot exactly). The adaptive variant modulates the normalised features with a
per-voxel scale and shift predicted from the quantized latent (MAGVIT-v2 / BTB3D), where latent frame
``j`` conditions exactly the decoder frames that were upsampled from it.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def groups_for(channels: int, max_groups: int = 32) -> int:
    """Largest group count <= ``max_groups`` that divides ``channels``."""
    return math.gcd(channels, max_groups)


def _per_slice_group_norm(
    x: torch.Tensor, groups: int, weight: torch.Tensor | None, bias: torch.Tensor | None, eps: float
) -> torch.Tensor:
    b, c, t, h, w = x.shape
    if t == 0:
        return x
    y = x.transpose(1, 2).reshape(b * t, c, h, w)  # (B*T, C, H, W)
    y = F.group_norm(y, groups, weight, bias, eps)
    return y.reshape(b, t, c, h, w).transpose(1, 2)  # (B, C, T, H, W)


class SliceGroupNorm(nn.Module):
    """GroupNorm over (channel group, H, W) of each slice separately.

    Args:
        channels: C.
        max_groups: groups = gcd(C, max_groups).
        affine: learn a per-channel scale and shift.
        eps: numerical epsilon.

    Shapes:
        (B, C, T, H, W) -> (B, C, T, H, W).
    """

    def __init__(self, *, channels: int, max_groups: int = 32, affine: bool = True, eps: float = 1e-5) -> None:
        super().__init__()
        self.groups, self.eps = groups_for(channels, max_groups), eps
        self.weight = nn.Parameter(torch.ones(channels)) if affine else None
        self.bias = nn.Parameter(torch.zeros(channels)) if affine else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalise (B, C, T, H, W) per slice."""
        return _per_slice_group_norm(x, self.groups, self.weight, self.bias, self.eps)


def expand_condition(cond: torch.Tensor, time_factor: int, first: bool, size: tuple[int, int]) -> torch.Tensor:
    """Bring a latent-resolution map to a decoder level, causally.

    Latent frame 0 becomes 1 frame and every later latent frame ``time_factor`` frames, exactly like the
    decoder's causal depth-to-space upsampling; in-plane it is nearest-neighbour (integer factors).

    Args:
        cond: (B, D, n, h, w) at latent resolution (one chunk of latent frames).
        time_factor: temporal upsampling from the latent to this level (a power of two, >= 1).
        first: whether the chunk starts at latent frame 0.
        size: (H, W) of the level; multiples of (h, w).

    Returns:
        (B, D, time_factor * n - (time_factor - 1 if first else 0), H, W).
    """
    h, w = cond.shape[-2:]
    if size[0] % h or size[1] % w:
        raise ValueError(f"level size {size} is not a multiple of the latent size {(h, w)}")
    if time_factor > 1:
        cond = cond.repeat_interleave(time_factor, dim=2)
        if first:
            cond = cond[:, :, time_factor - 1 :]
    if size[0] != h:
        cond = cond.repeat_interleave(size[0] // h, dim=3)
    if size[1] != w:
        cond = cond.repeat_interleave(size[1] // w, dim=4)
    return cond


class AdaptiveSliceGroupNorm(nn.Module):
    """Per-slice GroupNorm (no affine) followed by ``x * (1 + gamma(z)) + beta(z)``.

    ``gamma`` and ``beta`` are per-voxel linear maps of the quantized latent ``z``; they are computed at the
    latent resolution and then expanded (a per-voxel linear map commutes with nearest-neighbour
    upsampling), which keeps the cost independent of the level's size.

    Args:
        channels: C of the features.
        cond_channels: D of the quantized latent.
        max_groups: groups = gcd(C, max_groups).

    Shapes:
        x (B, C, T, H, W), z (B, D, n, h, w) -> (B, C, T, H, W), with T = time_factor * n (- time_factor + 1
        when ``first``).
    """

    def __init__(self, *, channels: int, cond_channels: int, max_groups: int = 32, eps: float = 1e-5) -> None:
        super().__init__()
        self.groups, self.eps = groups_for(channels, max_groups), eps
        self.to_scale_shift = nn.Conv3d(cond_channels, 2 * channels, kernel_size=1)

    def forward(self, x: torch.Tensor, z: torch.Tensor, time_factor: int, first: bool) -> torch.Tensor:
        """Normalise ``x`` per slice and modulate it with the latent ``z`` (see class doc for shapes)."""
        y = _per_slice_group_norm(x, self.groups, None, None, self.eps)
        if x.shape[2] == 0:
            return y
        gamma, beta = self.to_scale_shift(z).chunk(2, dim=1)  # (B, C, n, h, w) each
        gamma = expand_condition(gamma, time_factor, first, x.shape[-2:])
        beta = expand_condition(beta, time_factor, first, x.shape[-2:])
        if gamma.shape[2] != x.shape[2]:
            raise ValueError(f"condition has {gamma.shape[2]} frames for {x.shape[2]} feature frames")
        return y * (1 + gamma) + beta
