"""MLP projector from tokenizer latents to the LM's embedding width, and 3D positions of visual tokens.

BTB3D maps every 18-channel latent voxel to Llama's 4096-wide embeddings with a two-layer MLP
(18 → 4096 → 4096, GELU), LLaVA-style. A visual token also needs to say *where* it is, most of all after
pruning (DivPrune / top-k keep a few tokens out of the grid): each kept token gets a fixed sin-cos
encoding of its (t, h, w) latent coordinate, normalised to the grid so it means the same thing at any
depth, added after the projection. Parameter-free, so one model serves every grid size.
"""

from __future__ import annotations

import math

import torch
from torch import nn


class MLPProjector(nn.Module):
    """Linear → GELU → Linear (→ GELU → Linear ...) from latent channels to the LM width.

    Args:
        in_dim: latent channels D (18 in the paper, 12 on the CPU tokenizer).
        out_dim: LM hidden size.
        hidden: width of the hidden layer(s); None = ``out_dim`` (the paper's 18 → 4096 → 4096).
        layers: number of Linear layers (>= 1; 1 = a linear projection).
    """

    def __init__(self, *, in_dim: int, out_dim: int, hidden: int | None = None, layers: int = 2) -> None:
        super().__init__()
        if layers < 1:
            raise ValueError(f"projector layers must be >= 1, got {layers}")
        hidden = hidden or out_dim
        dims = [in_dim] + [hidden] * (layers - 1) + [out_dim]
        blocks: list[nn.Module] = []
        for k in range(layers):
            blocks.append(nn.Linear(dims[k], dims[k + 1]))
            if k < layers - 1:
                blocks.append(nn.GELU())
        self.net = nn.Sequential(*blocks)
        self.in_dim, self.out_dim = in_dim, out_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(..., in_dim) → (..., out_dim)."""
        return self.net(x)


class ConvMixer(nn.Module):
    """3x3x3 convolutions over the latent grid before the projector: each token sees its neighbours.

    After Honeybee's C-Abstractor (Cha et al., "Honeybee: Locality-enhanced Projector for Multimodal LLM",
    CVPR 2024): a convolutional projector keeps locality and learns from far fewer examples than attention
    over a flat token list. Probe on phantom latents of the CPU tokenizer (900 training scans, 60 s on one
    core each): a 3-layer, 64-channel stack read the 18 labels at held-out macro-F1 0.36, a 4-layer
    transformer of the same width 0.08. Zero padding at the borders.

    Args:
        in_dim: latent channels D.
        width: channels of every conv layer (the output width).
        layers: number of Conv3d + GELU layers (>= 1).
    """

    def __init__(self, *, in_dim: int, width: int = 64, layers: int = 3) -> None:
        super().__init__()
        if layers < 1:
            raise ValueError(f"conv layers must be >= 1, got {layers}")
        blocks: list[nn.Module] = []
        for k in range(layers):
            blocks += [nn.Conv3d(in_dim if k == 0 else width, width, 3, padding=1), nn.GELU()]
        self.net = nn.Sequential(*blocks)
        self.width = width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, D, t, h, w) → (B, width, t, h, w)."""
        return self.net(x)


def grid_coordinates(indices: torch.Tensor, grid: tuple[int, ...]) -> torch.Tensor:
    """Row-major flat indices → coordinates normalised to [0, 1] per axis.

    Args:
        indices: (..., k) int64 positions in a flattened grid.
        grid: the grid shape, e.g. (t, h, w).

    Returns:
        (..., k, len(grid)) float32; an axis of size 1 maps to 0.
    """
    coords = []
    rest = indices
    for size in reversed(grid):
        coords.append(rest % size)
        rest = rest // size
    out = torch.stack(list(reversed(coords)), dim=-1).float()  # (..., k, A)
    scale = torch.tensor([max(s - 1, 1) for s in grid], dtype=torch.float32, device=indices.device)
    return out / scale


def sincos_positions(coords: torch.Tensor, dim: int, max_period: float = 100.0) -> torch.Tensor:
    """Fixed sin-cos encoding of normalised coordinates.

    Each axis gets ``dim // (2 A)`` frequencies (geometric from 1 to ``max_period`` cycles over the
    grid); the rest of the width is zero.

    Args:
        coords: (..., A) coordinates in [0, 1].
        dim: output width.
        max_period: highest frequency, in cycles over the unit interval, times 2π.

    Returns:
        (..., dim) float32.
    """
    axes = coords.shape[-1]
    per_axis = dim // (2 * axes)
    out = coords.new_zeros(*coords.shape[:-1], dim)
    if per_axis == 0:
        return out
    freqs = torch.exp(torch.linspace(0.0, math.log(max_period), per_axis, device=coords.device)) * math.pi
    angles = coords[..., :, None] * freqs  # (..., A, F)
    enc = torch.cat([angles.sin(), angles.cos()], dim=-1).flatten(-2)  # (..., A * 2F)
    out[..., : enc.shape[-1]] = enc
    return out
