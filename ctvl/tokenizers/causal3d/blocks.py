"""Building blocks shared by the encoder and the decoder: residual block and causal upsampling.

Every block takes an optional :class:`~ctvl.tokenizers.causal3d.conv.CausalCache` and passes it to its
causal convs, so the same block runs one-shot or chunk by chunk with identical results.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ctvl.tokenizers.causal3d.conv import CausalCache, CausalConv3d, PadMode
from ctvl.tokenizers.causal3d.norm import SliceGroupNorm


class ResBlock(nn.Module):
    """Per-slice GN -> SiLU -> causal conv, twice, plus a (1x1x1 conv) shortcut.

    Args:
        in_channels: C_in.
        out_channels: C_out.
        kernel_t: temporal kernel of the convs (3 for the 3D tokenizer, 1 for the slice-wise baseline).
        pad_mode: temporal front padding of the causal convs.
        max_groups: GroupNorm groups (gcd with the channel count).

    Shapes:
        (B, C_in, T, H, W) -> (B, C_out, T, H, W).
    """

    def __init__(
        self,
        *,
        in_channels: int,
        out_channels: int,
        kernel_t: int = 3,
        pad_mode: PadMode = "zeros",
        max_groups: int = 32,
    ) -> None:
        super().__init__()
        k = (kernel_t, 3, 3)
        self.norm0 = SliceGroupNorm(channels=in_channels, max_groups=max_groups)
        self.conv0 = CausalConv3d(
            in_channels=in_channels, out_channels=out_channels, kernel_size=k, pad_mode=pad_mode, bias=False
        )
        self.norm1 = SliceGroupNorm(channels=out_channels, max_groups=max_groups)
        self.conv1 = CausalConv3d(
            in_channels=out_channels, out_channels=out_channels, kernel_size=k, pad_mode=pad_mode, bias=False
        )
        self.shortcut = (
            CausalConv3d(in_channels=in_channels, out_channels=out_channels, kernel_size=1, bias=False)
            if in_channels != out_channels
            else None
        )

    def forward(self, x: torch.Tensor, cache: CausalCache | None = None) -> torch.Tensor:
        """(B, C_in, T, H, W) -> (B, C_out, T, H, W)."""
        h = self.conv0(F.silu(self.norm0(x)), cache)
        h = self.conv1(F.silu(self.norm1(h)), cache)
        skip = x if self.shortcut is None else self.shortcut(x, cache)
        return skip + h


class CausalUpsample(nn.Module):
    """Depth-to-space upsampling by (t, 2, 2), causal along T.

    A causal conv predicts ``t * 2 * 2`` sub-voxels per voxel, which are rearranged into space and slices.
    The very first frame of the volume expands to one frame only (its last sub-frame), later frames to
    ``t`` frames, so ``1 + n`` frames become ``1 + t * n``: the inverse of the encoder's strided conv.

    Args:
        in_channels: C_in.
        out_channels: C_out.
        stride_t: temporal factor t (1 or 2).
        kernel_t: temporal kernel of the conv.
        pad_mode: temporal front padding.

    Shapes:
        (B, C_in, T, H, W) -> (B, C_out, t*T - (t - 1 if first else 0), 2H, 2W).
    """

    def __init__(
        self, *, in_channels: int, out_channels: int, stride_t: int, kernel_t: int = 3, pad_mode: PadMode = "zeros"
    ) -> None:
        super().__init__()
        self.stride_t, self.out_channels = stride_t, out_channels
        self.conv = CausalConv3d(
            in_channels=in_channels,
            out_channels=out_channels * stride_t * 4,
            kernel_size=(kernel_t, 3, 3),
            pad_mode=pad_mode,
        )

    def forward(self, x: torch.Tensor, first: bool, cache: CausalCache | None = None) -> torch.Tensor:
        """Upsample (B, C_in, T, H, W); ``first``: the chunk starts at frame 0 of the volume."""
        y = self.conv(x, cache)  # (B, C_out*t*4, T, H, W)
        b, _, t, h, w = y.shape
        s = self.stride_t
        y = y.reshape(b, self.out_channels, s, 2, 2, t, h, w)
        y = y.permute(0, 1, 5, 2, 6, 3, 7, 4).reshape(b, self.out_channels, t * s, 2 * h, 2 * w)
        if first and s > 1 and t > 0:
            y = y[:, :, s - 1 :]
        return y
