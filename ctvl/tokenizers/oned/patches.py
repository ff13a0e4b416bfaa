"""Patchify / unpatchify for 2D images and 3D volumes (shared by the 1D tokenizers).

ViT-style: a strided conv embeds non-overlapping patches (Dosovitskiy et al., "An Image is Worth
16x16 Words", ICLR 2021); the inverse folds per-patch pixel vectors back into the grid.

Shapes: (B, C, *S) → (B, N, D) with N = prod(S / p); (B, N, C·prod(p)) → (B, C, *S).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from einops import rearrange
from torch import nn

_CONV = {2: nn.Conv2d, 3: nn.Conv3d}


def as_tuple(value: int | Sequence[int], n: int, name: str) -> tuple[int, ...]:
    """An int or a length-n sequence as an n-tuple of ints."""
    if isinstance(value, int):
        return (value,) * n
    value = tuple(int(v) for v in value)
    if len(value) != n:
        raise ValueError(f"{name} must have {n} entries for spatial_dims={n}, got {value}")
    return value


class PatchEmbed(nn.Module):
    """Non-overlapping patch embedding.

    Args:
        spatial_dims: 2 or 3.
        in_channels: C.
        dim: embedding width D.
        image_size: S (int or per-axis); must be divisible by the patch size.
        patch_size: p (int or per-axis).
    """

    def __init__(
        self,
        *,
        spatial_dims: int,
        in_channels: int,
        dim: int,
        image_size: int | Sequence[int],
        patch_size: int | Sequence[int],
    ) -> None:
        super().__init__()
        if spatial_dims not in _CONV:
            raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}")
        self.spatial_dims = spatial_dims
        self.image_size = as_tuple(image_size, spatial_dims, "image_size")
        self.patch_size = as_tuple(patch_size, spatial_dims, "patch_size")
        if any(s % p for s, p in zip(self.image_size, self.patch_size, strict=True)):
            raise ValueError(f"image_size {self.image_size} is not divisible by patch_size {self.patch_size}")
        self.grid = tuple(s // p for s, p in zip(self.image_size, self.patch_size, strict=True))
        self.num_patches = math.prod(self.grid)
        self.in_channels = in_channels
        self.proj = _CONV[spatial_dims](in_channels, dim, self.patch_size, stride=self.patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, *S) → (B, N, D)."""
        if tuple(x.shape[2:]) != self.image_size or x.shape[1] != self.in_channels:
            raise ValueError(
                f"expected input (B, {self.in_channels}, {', '.join(map(str, self.image_size))}), got {tuple(x.shape)}"
            )
        return self.proj(x).flatten(2).transpose(1, 2)

    def unpatchify(self, patches: torch.Tensor, channels: int) -> torch.Tensor:
        """(B, N, channels·prod(p)) → (B, channels, *S)."""
        if self.spatial_dims == 2:
            (gh, gw), (ph, pw) = self.grid, self.patch_size
            return rearrange(patches, "b (h w) (c p q) -> b c (h p) (w q)", h=gh, w=gw, c=channels, p=ph, q=pw)
        (gt, gh, gw), (pt, ph, pw) = self.grid, self.patch_size
        return rearrange(
            patches, "b (t h w) (c o p q) -> b c (t o) (h p) (w q)", t=gt, h=gh, w=gw, c=channels, o=pt, p=ph, q=pw
        )
