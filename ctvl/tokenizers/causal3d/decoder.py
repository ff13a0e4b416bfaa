"""The causal 3D decoder: quantized latents -> Haar frames, conditioned on the latents.

Mirror of the encoder (BTB3D / MAGVIT-v2 layout): conv in, ResBlocks, then per level (coarse to fine) an
adaptive per-slice GroupNorm conditioned on the quantized latent, ResBlocks and a causal depth-to-space
upsampling (t x 2 x 2; the volume's first frame expands to one frame, the others to t); finally per-slice
GN, SiLU and a causal conv to the Haar channels. Latent frame ``j`` reaches exactly the output frames
that were upsampled from it and the later ones, never an earlier one.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ctvl.tokenizers.causal3d.blocks import CausalUpsample, ResBlock
from ctvl.tokenizers.causal3d.conv import CausalCache, CausalConv3d, PadMode
from ctvl.tokenizers.causal3d.norm import AdaptiveSliceGroupNorm, SliceGroupNorm


class Decoder(nn.Module):
    """Causal decoder with adaptive GroupNorm.

    Args:
        in_channels: token channels D.
        out_channels: Haar channels (8 x image channels in 3D, 4 x in 2D).
        filters, channel_mult, num_res_blocks, temporal_downsample, kernel_t, pad_mode, max_groups:
            as in :class:`~ctvl.tokenizers.causal3d.encoder.Encoder` (the decoder mirrors it).

    Shapes:
        (B, D, n, h, w) -> (B, out_channels, 1 + U * (n - 1), h * 2^(L-1), w * 2^(L-1)),
        U = 2^(number of temporal downsamplings).
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
        ch = filters * channel_mult[-1]
        self.conv_in = CausalConv3d(
            in_channels=in_channels, out_channels=ch, kernel_size=(kernel_t, 3, 3), pad_mode=pad_mode
        )
        self.mid = nn.ModuleList(ResBlock(in_channels=ch, out_channels=ch, **blk) for _ in range(num_res_blocks))
        self.cond_norms = nn.ModuleList()
        self.levels = nn.ModuleList()
        self.ups = nn.ModuleList()
        self.up_strides: list[int] = []
        for i in reversed(range(len(channel_mult))):
            out = filters * channel_mult[i]
            self.cond_norms.append(
                AdaptiveSliceGroupNorm(channels=ch, cond_channels=in_channels, max_groups=max_groups)
            )
            blocks = [
                ResBlock(in_channels=ch if j == 0 else out, out_channels=out, **blk) for j in range(num_res_blocks)
            ]
            self.levels.append(nn.ModuleList(blocks))
            ch = out
            if i > 0:
                t = 2 if temporal_downsample[i - 1] else 1
                self.ups.append(
                    CausalUpsample(in_channels=ch, out_channels=ch, stride_t=t, kernel_t=kernel_t, pad_mode=pad_mode)
                )
                self.up_strides.append(t)
        self.norm_out = SliceGroupNorm(channels=ch, max_groups=max_groups)
        self.conv_out = CausalConv3d(
            in_channels=ch, out_channels=out_channels, kernel_size=(kernel_t, 3, 3), pad_mode=pad_mode
        )

    def forward(self, z: torch.Tensor, cache: CausalCache | None = None) -> torch.Tensor:
        """Decode quantized latents (B, D, n, h, w) -> Haar frames (B, C_out, F, H, W).

        With a ``cache`` the latents may come in chunks (n >= 1 each); the chunk outputs concatenate to
        the one-shot output. The first call on a fresh cache is the start of the volume.
        """
        first = cache is None or not cache.started(self)
        if cache is not None:
            cache.mark_started(self)
        h = self.conv_in(z, cache)  # (B, C, n, h, w)
        for block in self.mid:
            h = block(h, cache)
        time_factor = 1  # temporal upsampling from the latent to the current level
        for i, (norm, blocks) in enumerate(zip(self.cond_norms, self.levels, strict=True)):
            h = norm(h, z, time_factor, first)
            for block in blocks:
                h = block(h, cache)
            if i < len(self.ups):
                h = self.ups[i](h, first, cache)  # (B, C, t*T (- t + 1), 2H, 2W)
                time_factor *= self.up_strides[i]
        return self.conv_out(F.silu(self.norm_out(h)), cache)  # (B, C_out, F, H, W)
