"""Causal conv, per-slice norms and causal upsampling: shapes, causality, streaming == one-shot."""

from __future__ import annotations

import pytest
import torch

from ctvl.tokenizers.causal3d.blocks import CausalUpsample, ResBlock
from ctvl.tokenizers.causal3d.conv import CausalCache, CausalConv3d
from ctvl.tokenizers.causal3d.norm import AdaptiveSliceGroupNorm, SliceGroupNorm, expand_condition, groups_for


def _stream(module, x: torch.Tensor, sizes: list[int], **kw) -> torch.Tensor:
    cache, outs, t0 = CausalCache(), [], 0
    for n in sizes:
        outs.append(module(x[:, :, t0 : t0 + n], cache=cache, **kw))
        t0 += n
    assert t0 == x.shape[2]
    return torch.cat(outs, dim=2)


@pytest.mark.parametrize(
    "kernel, stride, t_in, t_out, hw_out",
    [
        (3, 1, 1, 1, 8),
        (3, 1, 7, 7, 8),
        ((3, 3, 3), (2, 2, 2), 9, 5, 4),
        ((3, 3, 3), (2, 2, 2), 1, 1, 4),
        ((1, 3, 3), (1, 2, 2), 6, 6, 4),
        ((4, 3, 3), (2, 1, 1), 5, 3, 8),
    ],
)
def test_causal_conv_shapes(kernel, stride, t_in, t_out, hw_out) -> None:
    conv = CausalConv3d(in_channels=2, out_channels=3, kernel_size=kernel, stride=stride)
    assert conv(torch.randn(1, 2, t_in, 8, 8)).shape == (1, 3, t_out, hw_out, hw_out)


@pytest.mark.parametrize("pad_mode", ["zeros", "replicate"])
@pytest.mark.parametrize("stride_t", [1, 2])
def test_causal_conv_never_sees_the_future(pad_mode: str, stride_t: int) -> None:
    torch.manual_seed(0)
    conv = CausalConv3d(in_channels=2, out_channels=2, kernel_size=3, stride=(stride_t, 1, 1), pad_mode=pad_mode)
    x = torch.randn(1, 2, 9, 6, 6)
    y = conv(x)
    for t in range(1, 9):
        x2 = x.clone()
        x2[:, :, t] += 1.0
        y2 = conv(x2)
        first_affected = -(-t // stride_t)  # output j sees inputs up to stride_t * j
        torch.testing.assert_close(y2[:, :, :first_affected], y[:, :, :first_affected], rtol=0, atol=0)
        assert (y2[:, :, first_affected] - y[:, :, first_affected]).abs().max() > 0


@pytest.mark.parametrize("pad_mode", ["zeros", "replicate"])
@pytest.mark.parametrize(
    "kernel, stride", [((3, 3, 3), 1), ((3, 3, 3), (2, 2, 2)), ((4, 1, 1), (2, 1, 1)), ((1, 3, 3), 1)]
)
@pytest.mark.parametrize("sizes", [[1] * 11, [1, 4, 6], [2, 3, 0, 6], [11]])
def test_causal_conv_streaming_equals_one_shot(pad_mode, kernel, stride, sizes) -> None:
    torch.manual_seed(1)
    conv = CausalConv3d(in_channels=3, out_channels=4, kernel_size=kernel, stride=stride, pad_mode=pad_mode)
    x = torch.randn(2, 3, 11, 8, 8)
    torch.testing.assert_close(_stream(conv, x, sizes), conv(x), rtol=1e-5, atol=1e-6)


def test_cache_holds_only_the_needed_frames() -> None:
    conv = CausalConv3d(in_channels=1, out_channels=1, kernel_size=(3, 1, 1), stride=(2, 1, 1))
    cache = CausalCache()
    for _ in range(20):
        conv(torch.randn(1, 1, 3, 4, 4), cache=cache)
        assert cache.get(conv).shape[2] <= conv.kernel_t - 1 + conv.stride_t - 1


def test_slice_group_norm_never_mixes_slices() -> None:
    torch.manual_seed(0)
    norm = SliceGroupNorm(channels=8, max_groups=4)
    x = torch.randn(2, 8, 5, 6, 6)
    y = norm(x)
    x2 = x.clone()
    x2[:, :, 3] = x2[:, :, 3] * 10 + 3
    y2 = norm(x2)
    keep = [0, 1, 2, 4]
    torch.testing.assert_close(y2[:, :, keep], y[:, :, keep])
    # each slice is normalised on its own: per (slice, group) mean 0 / std 1
    g = y.transpose(1, 2).reshape(2, 5, 4, -1)
    torch.testing.assert_close(g.mean(-1), torch.zeros(2, 5, 4), atol=1e-5, rtol=0)
    assert groups_for(96) == 32 and groups_for(24) == 8 and groups_for(12, 32) == 4


def test_expand_condition_maps_latent_frames_causally() -> None:
    z = torch.arange(3.0).reshape(1, 1, 3, 1, 1)  # latent frames 0, 1, 2
    full = expand_condition(z, 4, first=True, size=(2, 2))
    assert full.shape == (1, 1, 9, 2, 2)
    # decoder frame tau is conditioned on latent ceil(tau / 4)
    assert full[0, 0, :, 0, 0].tolist() == [0, 1, 1, 1, 1, 2, 2, 2, 2]
    later = expand_condition(z[:, :, 1:], 4, first=False, size=(2, 2))
    torch.testing.assert_close(later, full[:, :, 1:])


def test_adaptive_norm_is_per_slice_and_conditioned() -> None:
    torch.manual_seed(0)
    norm = AdaptiveSliceGroupNorm(channels=8, cond_channels=3, max_groups=4)
    x, z = torch.randn(1, 8, 5, 4, 4), torch.randn(1, 3, 2, 2, 2)
    y = norm(x, z, time_factor=4, first=True)
    z2 = z.clone()
    z2[:, :, 1] += 1.0  # latent frame 1 conditions frames 1..4 only
    y2 = norm(x, z2, time_factor=4, first=True)
    torch.testing.assert_close(y2[:, :, :1], y[:, :, :1])
    assert ((y2 - y)[0, :, 1:].abs().amax(dim=(0, 2, 3)) > 0).all()  # every one of frames 1..4 changes


@pytest.mark.parametrize("stride_t", [1, 2])
def test_causal_upsample_frame_rule_and_streaming(stride_t: int) -> None:
    torch.manual_seed(0)
    up = CausalUpsample(in_channels=4, out_channels=3, stride_t=stride_t)
    x = torch.randn(1, 4, 5, 4, 4)
    y = up(x, first=True)
    assert y.shape == (1, 3, 1 + stride_t * 4, 8, 8)  # 1 + n frames -> 1 + t n
    cache = CausalCache()
    parts = [up(x[:, :, :2], first=True, cache=cache), up(x[:, :, 2:], first=False, cache=cache)]
    torch.testing.assert_close(torch.cat(parts, dim=2), y, rtol=1e-5, atol=1e-6)


def test_resblock_streaming_equals_one_shot_and_shapes() -> None:
    torch.manual_seed(0)
    block = ResBlock(in_channels=4, out_channels=8, max_groups=4)
    x = torch.randn(1, 4, 7, 6, 6)
    y = block(x)
    assert y.shape == (1, 8, 7, 6, 6)
    torch.testing.assert_close(_stream(block, x, [3, 1, 3]), y, rtol=1e-5, atol=1e-6)
