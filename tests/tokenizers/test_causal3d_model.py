"""The causal 3D tokenizer: shapes for any depth, causality, single slice == 2D path, gradients, config."""

from __future__ import annotations

import pytest
import torch

from ctvl.errors import ConfigError, InputError
from ctvl.tokenizers.causal3d import Causal3DConfig, Causal3DTokenizer


def small_model(**overrides) -> Causal3DTokenizer:
    torch.manual_seed(0)
    cfg = Causal3DConfig.cpu(filters=8, token_channels=6, **overrides)
    return Causal3DTokenizer(config=cfg)


@pytest.fixture(scope="module")
def model() -> Causal3DTokenizer:
    return small_model()


@pytest.mark.parametrize(
    "t, latent_t",
    [(1, 1), (9, 2), (17, 3), (33, 5), (2, 2), (5, 2), (12, 3), (20, 4)],  # odd depths padded to 1 + 8k
)
def test_shapes_any_depth(model: Causal3DTokenizer, t: int, latent_t: int) -> None:
    x = torch.rand(2, 1, t, 32, 32) * 2 - 1
    out = model(x)
    assert out.recon.shape == x.shape
    assert out.codes.shape == (2, 6, latent_t, 4, 4)
    assert out.indices.shape == (2, latent_t, 4, 4)
    assert model.latent_shape(t, 32, 32) == (6, latent_t, 4, 4)
    assert torch.isfinite(out.recon).all() and out.aux_loss.dim() == 0


def test_in_plane_sizes_are_padded_and_cropped(model: Causal3DTokenizer) -> None:
    x = torch.rand(1, 1, 9, 30, 20) * 2 - 1
    assert model.padded_shape(9, 30, 20) == (9, 32, 24)
    out = model(x)
    assert out.recon.shape == x.shape and out.codes.shape == (1, 6, 2, 4, 3)
    # padding uses the pad value (air) at the end only
    padded = model.pad(x)
    assert padded.shape == (1, 1, 9, 32, 24) and (padded[..., 30:, :] == -1).all()
    torch.testing.assert_close(padded[..., :30, :20], x)


@pytest.mark.parametrize("changed", [1, 4, 8, 9, 16, 20])
def test_causality_end_to_end(model: Causal3DTokenizer, changed: int) -> None:
    """Changing slice s never changes latents before frame ceil(s / 8) nor slices before that group."""
    torch.manual_seed(1)
    x = torch.rand(1, 1, 25, 16, 16) * 2 - 1
    x2 = x.clone()
    x2[:, :, changed] = -x2[:, :, changed]
    with torch.no_grad():
        z, z2 = (model.encode_latents(v) for v in (x, x2))
        y, y2 = (model.decode_codes(model.quantizer(v).quantized) for v in (z, z2))
    j = -(-changed // 8)  # first latent frame that sees slice `changed`
    torch.testing.assert_close(z2[:, :, :j], z[:, :, :j], rtol=0, atol=0)
    assert (z2[:, :, j] - z[:, :, j]).abs().max() > 0
    first_slice = 8 * (j - 1) + 1  # decoded slices before latent j's group do not change
    torch.testing.assert_close(y2[:, :, :first_slice], y[:, :, :first_slice], rtol=0, atol=0)


def test_decoder_causality(model: Causal3DTokenizer) -> None:
    codes = torch.randn(1, 6, 4, 2, 2).sign()
    with torch.no_grad():
        y = model.decode_codes(codes)
        codes2 = codes.clone()
        codes2[:, :, 2] = -codes2[:, :, 2]
        y2 = model.decode_codes(codes2)
    assert y.shape == (1, 1, 25, 16, 16)
    torch.testing.assert_close(y2[:, :, :9], y[:, :, :9], rtol=0, atol=0)  # latent 2 -> slices 9..16
    assert (y2[:, :, 9:17] - y[:, :, 9:17]).flatten(3).abs().amax(-1).min() > 0


def test_single_slice_is_the_2d_path(model: Causal3DTokenizer) -> None:
    """A (B, C, H, W) image, a T = 1 volume and slice 0 of a volume share one latent."""
    torch.manual_seed(2)
    vol = torch.rand(2, 1, 17, 32, 32) * 2 - 1
    with torch.no_grad():
        out_img = model(vol[:, :, 0])
        out_t1 = model(vol[:, :, :1])
        z_vol = model.encode_latents(vol)
        z_img = model.encode_latents(vol[:, :, :1])
    assert out_img.recon.shape == (2, 1, 32, 32) and out_img.codes.shape == (2, 6, 1, 4, 4)
    torch.testing.assert_close(out_img.recon, out_t1.recon[:, :, 0])
    torch.testing.assert_close(z_img[:, :, 0], z_vol[:, :, 0], rtol=1e-5, atol=1e-5)
    # T = 1 inference works (the reference encode() fails for a single slice)
    tokens = model.encode(vol[:, :, 0])
    assert tokens.indices.shape == (2, 1, 4, 4) and tokens.shape == (1, 32, 32)
    assert model.decode(tokens).shape == (2, 1, 1, 32, 32)


@pytest.mark.parametrize("encode_mode", ["causal", "windowed"])
def test_gradients_reach_every_parameter(encode_mode: str) -> None:
    m = small_model()
    x = torch.rand(1, 1, 17, 16, 16) * 2 - 1
    out = m(x, encode_mode=encode_mode)
    ((out.recon - x).abs().mean() + out.aux_loss).backward()
    missing = [n for n, p in m.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing
    assert m.encoder.conv_in.conv.weight.grad.abs().sum() > 0  # straight-through reaches the encoder


def test_8x16x16_compression_and_shapes() -> None:
    m = small_model(channel_mult=(1, 1, 2, 2), temporal_downsample=(False, True, True))
    assert m.config.compression == "8x16x16"
    out = m(torch.rand(1, 1, 9, 32, 32) * 2 - 1)
    assert out.codes.shape == (1, 6, 2, 2, 2) and out.recon.shape == (1, 1, 9, 32, 32)


def test_paper_config_geometry() -> None:
    c8, c16 = Causal3DConfig.paper("8x8x8"), Causal3DConfig.paper("8x16x16")
    assert (c8.filters, c8.token_channels, c8.num_res_blocks, c8.compression) == (96, 18, 4, "8x8x8")
    assert c16.compression == "8x16x16" and c16.channel_mult == (1, 2, 2, 4)
    with pytest.raises(ConfigError):
        Causal3DConfig.paper("4x4x4")


def test_config_roundtrip_and_validation() -> None:
    cfg = Causal3DConfig.cpu(pad_mode="replicate")
    assert Causal3DConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ConfigError, match="unknown"):
        Causal3DConfig.from_dict({"filterz": 3})
    with pytest.raises(ConfigError):
        Causal3DConfig(channel_mult=(1, 2), temporal_downsample=(True, True))
    with pytest.raises(ConfigError):
        Causal3DConfig(pad_mode="reflect")


def test_replicate_padding_model_runs() -> None:
    m = small_model(pad_mode="replicate")
    assert m(torch.rand(1, 1, 9, 16, 16)).recon.shape == (1, 1, 9, 16, 16)


def test_bad_input_is_an_input_error(model: Causal3DTokenizer) -> None:
    with pytest.raises(InputError, match="tokenizer input"):
        model(torch.zeros(1, 2, 9, 16, 16))
    with pytest.raises(InputError):
        model.encode(torch.zeros(16, 16))


def test_fsq_bottleneck_option() -> None:
    m = small_model(quantizer="fsq", quantizer_kwargs={"levels": [8, 5, 5, 5]})
    x = torch.rand(1, 1, 9, 16, 16) * 2 - 1
    out = m(x)
    assert out.recon.shape == x.shape and out.codes.shape == (1, 6, 2, 2, 2)
    tokens = m.encode(x)
    assert m.decode(tokens.indices, shape=tokens.shape).shape == x.shape
