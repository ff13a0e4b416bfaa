"""The causal 3D encoder: Haar frames -> continuous latents (before quantization).

Conv in, then per level ``num_res_blocks`` ResBlocks and (except after the last level) a strided causal
conv with stride (t, 2, 2), t = 2 where ``temporal_downsample`` says so; then ResBlocks, per-slice GN,
SiLU and a 1x1x1 conv to the token channels. Layout follows the BTB3D / MAGVIT-v2 encoder.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ctvl.tokenizers.causal3d.blocks import ResBlock
from ctvl.tokenizers.causal3d.conv import CausalCache, CausalConv3d, PadMode
from ctvl.tokenizers.causal3d.norm import SliceGroupNorm


class Encoder(nn.Module):
    """Causal encoder.

    Args:
        in_channels: channels of the Haar frames (8 x image channels in 3D, 4 x in 2D).
        out_channels: token channels D (18 in the paper).
        filters: base width.
        channel_mult: width multiplier per level; ``len(channel_mult) - 1`` downsamplings.
        num_res_blocks: ResBlocks per level (and at the end).
        temporal_downsample: per downsampling, whether it also halves T.
        kernel_t: temporal kernel (1 = no mixing across slices).
        pad_mode: temporal front padding of every causal conv.
        max_groups: GroupNorm groups.

    Shapes:
        (B, in_channels, F, H, W) -> (B, D, (F - 1) // 2^n_t + 1, H / 2^(L-1), W / 2^(L-1)).
    """

    def __init__(
        self,
        *,
        in_channels: int,
        out_channels: int,
        filters: int,
        channel_mult: Sequence[int],
        num_res_blocks: int,
        temporal_downsample: Sequence[bool],
        kernel_t: int = 3,
        pad_mode: PadMode = "zeros",
        max_groups: int = 32,
    ) -> None:
        super().__init__()
        if len(temporal_downsample) != len(channel_mult) - 1:
            raise ValueError("temporal_downsample needs one entry per downsampling (len(channel_mult) - 1)")
        blk = {"kernel_t": kernel_t, "pad_mode": pad_mode, "max_groups": max_groups}
        ch = filters * channel_mult[0]
        self.conv_in = CausalConv3d(
            in_channels=in_channels, out_channels=ch, kernel_size=(kernel_t, 3, 3), pad_mode=pad_mode
        )
        self.levels = nn.ModuleList()
        self.downs = nn.ModuleList()
        for i, mult in enumerate(channel_mult):
            out = filters * mult
            blocks = [
                ResBlock(in_channels=ch if j == 0 else out, out_channels=out, **blk) for j in range(num_res_blocks)
            ]
            self.levels.append(nn.ModuleList(blocks))
            ch = out
            if i < len(channel_mult) - 1:
                stride = (2 if temporal_downsample[i] else 1, 2, 2)
                self.downs.append(
                    CausalConv3d(
                        in_channels=ch, out_channels=ch, kernel_size=(kernel_t, 3, 3), stride=stride, pad_mode=pad_mode
                    )
                )
        self.mid = nn.ModuleList(ResBlock(in_channels=ch, out_channels=ch, **blk) for _ in range(num_res_blocks))
        self.norm_out = SliceGroupNorm(channels=ch, max_groups=max_groups)
        self.conv_out = CausalConv3d(in_channels=ch, out_channels=out_channels, kernel_size=1)

    def forward(self, x: torch.Tensor, cache: CausalCache | None = None) -> torch.Tensor:
        """Encode Haar frames (B, C_in, F, H, W) -> latents (B, D, F', H', W').

        With a ``cache`` the frames may come in chunks; a chunk can yield zero latent frames (the strided
        convs wait for enough input), and the concatenation over chunks equals the one-shot output.
        """
        h = self.conv_in(x, cache)  # (B, filters, F, H, W)
        for i, blocks in enumerate(self.levels):
            for block in blocks:
                h = block(h, cache)
            if i < len(self.downs):
                h = self.downs[i](h, cache)  # (B, C, F_i / t, H_i / 2, W_i / 2)
        for block in self.mid:
            h = block(h, cache)
        return self.conv_out(F.silu(self.norm_out(h)), cache)  # (B, D, F', H', W')
