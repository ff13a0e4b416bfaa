"""The 2D slice-wise baseline: no mixing across slices, same token budget as the 3D tokenizer."""

from __future__ import annotations

import pytest
import torch

from ctvl.errors import ConfigError
from ctvl.tokenizers.causal3d import Causal3DConfig, SliceTokenizer, latent_values, slicewise_config


@pytest.fixture(scope="module")
def baseline() -> SliceTokenizer:
    torch.manual_seed(0)
    return SliceTokenizer.matching(Causal3DConfig.cpu(filters=8, token_channels=8))


def test_paper_budget_match() -> None:
    cfg3d = Causal3DConfig.paper()
    cfg2d = slicewise_config(cfg3d)
    assert cfg2d.compression == "1x16x16" and cfg2d.token_channels == 9
    assert cfg2d.filters == cfg3d.filters and cfg2d.num_res_blocks == cfg3d.num_res_blocks
    assert cfg2d.kernel_t == 1 and not any(cfg2d.temporal_downsample)
    v3, v2 = latent_values(cfg3d, (241, 512, 512)), latent_values(cfg2d, (241, 512, 512))
    assert v3 == 18 * 31 * 64 * 64
    assert v2 <= v3 and v2 / v3 > 0.97  # 9 * 241 * 32 * 32: the same bits per volume up to the first frame
    # matching at a given depth rounds the channels to that depth's budget
    at33 = slicewise_config(cfg3d, depth=33)
    assert abs(latent_values(at33, (33, 64, 64)) / latent_values(cfg3d, (33, 64, 64)) - 1) < 0.05


def test_needs_a_3d_config_and_a_2d_one() -> None:
    with pytest.raises(ConfigError):
        slicewise_config(slicewise_config(Causal3DConfig.cpu()))
    with pytest.raises(ConfigError):
        SliceTokenizer(config=Causal3DConfig.cpu())


@pytest.mark.parametrize("t", [1, 2, 7])
def test_any_depth_and_shapes(baseline: SliceTokenizer, t: int) -> None:
    x = torch.rand(2, 1, t, 32, 32) * 2 - 1
    out = baseline(x)
    assert out.recon.shape == x.shape
    assert out.codes.shape == (2, 4, t, 2, 2)  # 16x16 in-plane, 4 = 4 * 8 / 8 channels


def test_no_mixing_across_slices(baseline: SliceTokenizer) -> None:
    torch.manual_seed(1)
    x = torch.rand(1, 1, 6, 32, 32) * 2 - 1
    x2 = x.clone()
    x2[:, :, 3] = -x2[:, :, 3]
    with torch.no_grad():
        z, z2 = baseline.encode_latents(x), baseline.encode_latents(x2)
        y, y2 = (baseline.decode_codes(baseline.quantizer(v).quantized) for v in (z, z2))
    others = [0, 1, 2, 4, 5]
    torch.testing.assert_close(z2[:, :, others], z[:, :, others], rtol=0, atol=0)
    torch.testing.assert_close(y2[:, :, others], y[:, :, others], rtol=0, atol=0)
    assert (z2[:, :, 3] - z[:, :, 3]).abs().max() > 0


def test_slice_in_volume_equals_slice_alone(baseline: SliceTokenizer) -> None:
    x = torch.rand(1, 1, 5, 32, 32) * 2 - 1
    with torch.no_grad():
        vol = baseline(x).recon
        alone = baseline(x[:, :, 2]).recon  # (B, C, H, W) image
    torch.testing.assert_close(alone, vol[:, :, 2], rtol=1e-5, atol=1e-5)


def test_inference_paths_agree(baseline: SliceTokenizer) -> None:
    x = torch.rand(1, 1, 7, 32, 32) * 2 - 1
    a, b = baseline.encode(x, mode="windowed"), baseline.encode(x, mode="stream", chunk=2)
    torch.testing.assert_close(a.codes, b.codes)
    with torch.no_grad():
        ref = baseline.decode_codes(a.codes)
    torch.testing.assert_close(baseline.decode(a, chunk_latents=3), ref, rtol=1e-5, atol=1e-5)
