"""Haar front end: exact inverse, first-slice rule, chunked transform equals the whole."""

from __future__ import annotations

import pytest
import torch

from ctvl.tokenizers.causal3d.haar import (
    frames_to_volume,
    haar_forward,
    haar_inverse,
    num_bands,
    volume_to_frames,
)


@pytest.mark.parametrize("temporal", [True, False])
def test_haar_inverse_is_exact_and_orthonormal(temporal: bool) -> None:
    x = torch.randn(2, 3, 6, 8, 10, dtype=torch.float64)
    y = haar_forward(x, temporal)
    nb = num_bands(temporal)
    assert y.shape == ((2, 3 * nb, 3, 4, 5) if temporal else (2, 3 * nb, 6, 4, 5))
    torch.testing.assert_close(haar_inverse(y, temporal), x, rtol=0, atol=1e-12)
    torch.testing.assert_close(y.pow(2).sum(), x.pow(2).sum())  # energy preserved
    # band 0 is the (scaled) local mean: constant input -> only band 0 is non-zero
    c = torch.full((1, 1, 2 if temporal else 1, 2, 2), 0.5, dtype=torch.float64)
    yc = haar_forward(c, temporal)
    assert yc[:, 0].item() == pytest.approx(0.5 * (nb**0.5))
    assert yc[:, 1:].abs().max().item() == pytest.approx(0.0, abs=1e-12)


def test_haar_float32_inverse_within_rounding() -> None:
    x = torch.rand(1, 1, 10, 64, 64) * 2 - 1
    assert (haar_inverse(haar_forward(x)) - x).abs().max() < 1e-6


@pytest.mark.parametrize("t, frames", [(1, 1), (3, 2), (9, 5), (33, 17)])
def test_first_slice_repeated_and_dropped(t: int, frames: int) -> None:
    x = torch.randn(1, 1, t, 4, 4)
    y = volume_to_frames(x)
    assert y.shape == (1, 8, frames, 2, 2)
    torch.testing.assert_close(frames_to_volume(y), x, rtol=0, atol=1e-6)
    # frame 0 holds only slice 0 (paired with its copy): no high band along T
    assert y[:, 4:, 0].abs().max() < 1e-6  # bands with the temporal high-pass are channels 4..7
    # a single slice goes the same way as the first slice of a volume
    torch.testing.assert_close(volume_to_frames(x[:, :, :1]), y[:, :, :1])


def test_haar_rejects_odd_sizes() -> None:
    with pytest.raises(ValueError, match="even"):
        haar_forward(torch.zeros(1, 1, 2, 5, 4))
    with pytest.raises(ValueError, match="multiple"):
        haar_inverse(torch.zeros(1, 7, 1, 2, 2))


def test_chunked_frames_equal_whole_volume() -> None:
    x = torch.randn(1, 2, 17, 8, 8)
    whole = volume_to_frames(x)  # 9 frames
    # frames [0, 3) from slices [0, 5), frames [3, 9) from slices [5, 17)
    parts = torch.cat((volume_to_frames(x[:, :, :5]), volume_to_frames(x[:, :, 5:], first=False)), dim=2)
    torch.testing.assert_close(parts, whole)
    back = torch.cat((frames_to_volume(whole[:, :, :3]), frames_to_volume(whole[:, :, 3:], first=False)), dim=2)
    torch.testing.assert_close(back, x, rtol=0, atol=1e-6)
