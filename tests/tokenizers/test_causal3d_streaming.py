"""Flat-memory inference: streaming decode == one-shot, stream encode == causal, windowed tiling."""

from __future__ import annotations

import pytest
import torch

from ctvl.errors import InputError
from ctvl.tokenizers.causal3d import Causal3DConfig, Causal3DTokenizer, CausalCache
from ctvl.tokenizers.causal3d.streaming import encode_windowed, iter_decode, iter_encode, window_plan


@pytest.fixture(scope="module")
def model() -> Causal3DTokenizer:
    torch.manual_seed(0)
    return Causal3DTokenizer(config=Causal3DConfig.cpu(filters=8, token_channels=6)).eval()


def _volume(t: int, h: int = 16, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(1, 1, t, h, h, generator=g) * 2 - 1


@pytest.mark.parametrize("depth", [1, 9, 41])
@pytest.mark.parametrize("chunk", [1, 2, 3])
def test_streaming_decode_equals_one_shot(model: Causal3DTokenizer, depth: int, chunk: int) -> None:
    n = 1 + (depth - 1) // 8
    g = torch.Generator().manual_seed(depth)
    codes = torch.randn(1, 6, n, 2, 2, generator=g).sign()  # random LFQ codes
    with torch.no_grad():
        one_shot = model.decode_codes(codes)
    streamed = model.decode(codes, chunk_latents=chunk)
    assert one_shot.shape == streamed.shape == (1, 1, depth, 16, 16)
    torch.testing.assert_close(streamed, one_shot, rtol=1e-5, atol=1e-5)


def test_streaming_decode_from_indices_and_crop(model: Causal3DTokenizer) -> None:
    x = _volume(20, 14)
    tokens = model.encode(x)
    assert tokens.shape == (20, 14, 14) and tokens.codes.shape == (1, 6, 4, 2, 2)
    from_codes = model.decode(tokens)
    from_indices = model.decode(tokens.indices, shape=tokens.shape, chunk_latents=2)
    assert from_codes.shape == x.shape
    torch.testing.assert_close(from_indices, from_codes, rtol=1e-5, atol=1e-5)
    with pytest.raises(InputError, match="tokens"):
        list(iter_decode(model, torch.zeros(1, 5, 2, 2, 2)))
    with pytest.raises(InputError, match="crop"):
        model.decode(tokens.codes, shape=(99, 14, 14))


@pytest.mark.parametrize("depth", [1, 9, 23, 41])
@pytest.mark.parametrize("chunk", [1, 3, 8])
def test_stream_encode_equals_causal_encode(model: Causal3DTokenizer, depth: int, chunk: int) -> None:
    x = _volume(depth, seed=depth)
    with torch.no_grad():
        causal = model.encode_latents(model.pad(x))
        streamed = torch.cat(list(iter_encode(model, x, "stream", chunk)), dim=2)
    assert streamed.shape == causal.shape == (1, 6, 1 + (depth + 6) // 8, 2, 2)
    torch.testing.assert_close(streamed, causal, rtol=1e-5, atol=1e-5)


def test_encode_modes_tokens(model: Causal3DTokenizer) -> None:
    x = _volume(33)
    stream, causal, windowed = (model.encode(x, mode=m) for m in ("stream", "causal", "windowed"))
    assert stream.codes.shape == causal.codes.shape == windowed.codes.shape == (1, 6, 5, 2, 2)
    torch.testing.assert_close(stream.codes, causal.codes)
    # windowed: same first window, then each window restarts the causal context
    torch.testing.assert_close(windowed.codes[:, :, :2], causal.codes[:, :, :2])
    with pytest.raises(ValueError, match="mode"):
        model.encode(x, mode="bogus")


def test_window_plan_matches_the_curriculum() -> None:
    # 9-slice windows (5 Haar frames), stride 8, one shared slice; first keeps 2 latents, then 1 each
    assert window_plan(33, 8) == [(0, 9, 2), (8, 9, 1), (16, 9, 1), (24, 9, 1)]
    assert window_plan(1, 8) == [(0, 1, 1)]
    assert window_plan(9, 8) == [(0, 9, 2)]
    assert window_plan(41, 8, window_latents=2) == [(0, 17, 3), (16, 17, 2), (32, 9, 1)]
    for depth in (1, 9, 33, 241):
        assert sum(keep for _, _, keep in window_plan(depth, 8)) == 1 + (depth - 1) // 8


@pytest.mark.parametrize("depth", [1, 9, 12, 33])
def test_windowed_encode_shapes_and_single_window(model: Causal3DTokenizer, depth: int) -> None:
    x = _volume(depth, seed=3)
    with torch.no_grad():
        windowed = torch.cat(list(iter_encode(model, x, "windowed", 2)), dim=2)
        causal = model.encode_latents(model.pad(x))
    assert windowed.shape == causal.shape
    fits = model.padded_shape(depth, 16, 16)[0] <= 9
    if fits:  # one window: identical to the causal encode
        torch.testing.assert_close(windowed, causal, rtol=1e-5, atol=1e-5)
    else:  # latent j of window w covers the same slices, with a shorter context
        torch.testing.assert_close(windowed[:, :, :2], causal[:, :, :2], rtol=1e-5, atol=1e-5)


def test_windowed_latent_is_the_encode_of_its_window(model: Causal3DTokenizer) -> None:
    x = _volume(33, seed=4)
    with torch.no_grad():
        windowed = encode_windowed(model, x)
        third = model.encode_latents(x[:, :, 16:25])  # window 2: slices 16..24
    torch.testing.assert_close(windowed[:, :, 3], third[:, :, 1], rtol=1e-5, atol=1e-5)


def test_windowed_training_path_is_differentiable() -> None:
    torch.manual_seed(0)
    m = Causal3DTokenizer(config=Causal3DConfig.cpu(filters=8, token_channels=6))
    x = _volume(25)
    z = encode_windowed(m, x, windows_per_batch=2)
    z.square().mean().backward()
    assert m.encoder.conv_in.conv.weight.grad.abs().sum() > 0


def test_cache_does_not_grow_with_depth(model: Causal3DTokenizer) -> None:
    """The decoder's carried state after n chunks is the same size for any n (flat memory)."""
    sizes = []
    for n in (3, 12):
        cache = CausalCache()
        with torch.no_grad():
            for _ in range(n):
                frames = model.decoder(torch.randn(1, 6, 1, 2, 2).sign(), cache)
                assert frames.shape[2] in (1, 4)  # 1 Haar frame for latent 0, then 4 per latent
        sizes.append(cache.nbytes())
    assert sizes[0] == sizes[1] > 0


def test_inference_restores_training_mode() -> None:
    torch.manual_seed(0)
    m = Causal3DTokenizer(config=Causal3DConfig.cpu(filters=8, token_channels=6))
    assert m.training
    tokens = m.encode(_volume(9))
    assert m.training and not tokens.codes.requires_grad
    m.decode(tokens)
    assert m.training


def test_inference_keeps_per_module_modes() -> None:
    torch.manual_seed(0)
    m = Causal3DTokenizer(config=Causal3DConfig.cpu(filters=8, token_channels=6))
    m.encoder.eval()  # stage 3: frozen encoder in eval, decoder training
    m.decode(m.encode(_volume(9)))
    assert not m.encoder.training and m.decoder.training and m.training
