"""1D tokenizers: TiTok shapes (2D/3D), token drop, prefix ordering, MQT prefixes, M3 pooling."""

import pytest
import torch

from ctvl.tokenizers.oned import (
    MQTResampler,
    NestedPooling,
    PatchEmbed,
    TiTok1D,
    TiTokConfig,
    apply_nested_mask,
    sample_keep,
    tail_cut_cycle,
)

# spatial_dims, image_size, patch_size
GEOMETRIES = [
    (2, 16, 4),
    (2, (8, 12), (4, 2)),
    (3, (4, 8, 8), (2, 4, 4)),
]
# quantizer kind, kwargs, index trailing shape
QUANTIZED = [
    (None, {}, None),
    ("vq", {"codebook_size": 64, "codebook_dim": 6}, ()),
    ("fsq", {"levels": (5, 5, 5)}, ()),
    ("lfq", {"bits": 6}, ()),
    ("group_lfq", {"groups": 2, "bits_per_group": 3}, (2,)),
]


def small_config(**overrides) -> TiTokConfig:
    base = dict(width=32, encoder_depth=1, decoder_depth=1, heads=2, num_latent_tokens=6, token_dim=6)
    return TiTokConfig(**{**base, **overrides})


@pytest.mark.parametrize("spatial_dims,image_size,patch_size", GEOMETRIES)
@pytest.mark.parametrize("kind,kwargs,index_tail", QUANTIZED, ids=[str(q[0]) for q in QUANTIZED])
def test_titok_shapes(spatial_dims, image_size, patch_size, kind, kwargs, index_tail):
    torch.manual_seed(0)
    cfg = small_config(
        spatial_dims=spatial_dims,
        image_size=image_size,
        patch_size=patch_size,
        quantizer=kind,
        quantizer_kwargs=kwargs,
        token_drop="nested",
    )
    model = TiTok1D(config=cfg)
    size = (image_size,) * spatial_dims if isinstance(image_size, int) else image_size
    x = torch.randn(3, 1, *size, requires_grad=True)
    out = model(x)
    assert out.reconstruction.shape == x.shape
    assert out.tokens.shape == (3, 6, 6)
    if kind is None:
        assert out.indices is None
    else:
        assert out.indices.shape == (3, 6, *index_tail)
        assert {"codebook_usage", "perplexity"} <= set(out.stats)
    assert out.keep.shape == (3,) and bool(((out.keep >= 1) & (out.keep <= 6)).all())
    (out.reconstruction.square().mean() + out.aux_loss).backward()
    assert x.grad is not None and x.grad.abs().sum() > 0  # gradients reach the input through the quantizer
    model.eval()
    assert model.reconstruct(x, keep=2).shape == x.shape


def test_titok_rejects_wrong_input_shape_and_bad_drop_mode():
    model = TiTok1D(config=small_config(image_size=16, patch_size=4, quantizer=None))
    with pytest.raises(ValueError, match="expected input"):
        model(torch.randn(1, 1, 12, 16))
    with pytest.raises(ValueError, match="token_drop"):
        TiTok1D(config=small_config(token_drop="random"))
    with pytest.raises(ValueError, match="divisible"):
        PatchEmbed(spatial_dims=2, in_channels=1, dim=8, image_size=10, patch_size=4)


@pytest.mark.parametrize("mode", ["none", "nested", "nested_pow2", "tail"])
def test_sample_keep_modes(mode):
    g = torch.Generator().manual_seed(0)
    keep = sample_keep(512, 16, mode, generator=g)
    assert keep.shape == (512,) and int(keep.min()) >= 1 and int(keep.max()) <= 16
    values = set(keep.tolist())
    if mode == "none":
        assert values == {16}
    elif mode == "nested":
        assert len(values) > 10  # per-sample draws cover the range
    elif mode == "nested_pow2":
        assert values == {1, 2, 4, 8, 16}
    else:
        assert len(values) == 1  # one cut per batch


@pytest.mark.parametrize("mode", ["nested", "nested_pow2", "tail"])
def test_full_share_keeps_everything_in_that_share_of_the_draws(mode):
    """With share s a draw keeps all N with probability s + (1 − s) · P(cut = N); tail stays one cut per batch."""
    g = torch.Generator().manual_seed(0)
    draws = [sample_keep(4, 8, mode, generator=g, full_share=0.5) for _ in range(4000)]
    if mode == "tail":
        assert all(len(set(k.tolist())) == 1 for k in draws)
    keep = torch.cat(draws)
    p_cut_full = {"nested": 1 / 8, "nested_pow2": 1 / 4, "tail": 1 / 8}[mode]
    assert float((keep == 8).float().mean()) == pytest.approx(0.5 + 0.5 * p_cut_full, abs=0.03)
    assert set(keep.tolist()) >= {1, 2, 4, 8}  # the cuts still happen
    g = torch.Generator().manual_seed(0)
    assert set(sample_keep(64, 8, "none", generator=g, full_share=0.5).tolist()) == {8}


@pytest.mark.parametrize("share", [-0.1, 1.0])
def test_full_share_out_of_range_is_refused(share):
    with pytest.raises(ValueError, match="full_share"):
        sample_keep(2, 8, "tail", full_share=share)
    with pytest.raises(ValueError, match="full_share"):
        TiTok1D(config=small_config(token_drop="tail", full_share=share))


def test_tail_cut_cycle_trains_every_length_and_the_full_share():
    assert tail_cut_cycle(8) == [1, 2, 3, 4, 5, 6, 7, 8]
    cycle = tail_cut_cycle(8, 0.5)
    assert sorted(set(cycle)) == list(range(1, 9)) and len(cycle) == 16
    assert cycle.count(8) == 9  # 8 extra full-length draws + the uniform one: half of the cycle is extra
    assert tail_cut_cycle(4, 0.25).count(4) == 1 + round(4 * 0.25 / 0.75)


def test_tail_drop_full_share_is_used_by_training_forward():
    torch.manual_seed(0)
    model = TiTok1D(config=small_config(image_size=16, patch_size=4, quantizer=None, token_drop="tail", full_share=0.9))
    model.train()
    with torch.no_grad():
        kept = [int(model(torch.randn(2, 1, 16, 16)).keep[0]) for _ in range(40)]
    assert sum(k == model.num_tokens for k in kept) >= 30  # ~0.9 + 0.1 / K of the batches


def test_apply_nested_mask_replaces_the_tail_only():
    tokens = torch.arange(2 * 4 * 3, dtype=torch.float32).reshape(2, 4, 3)
    mask = torch.full((3,), -1.0)
    out = apply_nested_mask(tokens, torch.tensor([1, 3]), mask)
    assert torch.equal(out[0, :1], tokens[0, :1]) and bool((out[0, 1:] == -1).all())
    assert torch.equal(out[1, :3], tokens[1, :3]) and bool((out[1, 3:] == -1).all())


def test_tail_drop_truncates_the_decoder_sequence():
    torch.manual_seed(0)
    model = TiTok1D(config=small_config(image_size=16, patch_size=4, quantizer=None, token_drop="tail")).train()
    seen = []
    hook = model.decoder.register_forward_hook(lambda m, inp, out: seen.append(inp[0].shape[1]))
    out = model(torch.randn(4, 1, 16, 16))
    hook.remove()
    assert len(set(out.keep.tolist())) == 1
    assert seen == [16 + int(out.keep[0])]  # N patches + the kept prefix only


def test_causal_latents_make_token_prefixes_independent_of_later_latents():
    torch.manual_seed(0)
    model = TiTok1D(config=small_config(image_size=16, patch_size=4, quantizer=None, causal_latents=True)).eval()
    x = torch.randn(2, 1, 16, 16)
    with torch.no_grad():
        before = model.encode(x)[0]
        model.latents[3:] += torch.randn_like(model.latents[3:])
        after = model.encode(x)[0]
    torch.testing.assert_close(after[:, :3], before[:, :3])
    assert not torch.allclose(after[:, 3:], before[:, 3:])


@pytest.mark.parametrize("context_dim", [None, 12])
def test_mqt_prefix_outputs_do_not_depend_on_m(context_dim):
    torch.manual_seed(0)
    resampler = MQTResampler(dim=16, num_queries=8, context_dim=context_dim, depth=2, heads=2).eval()
    context = torch.randn(3, 20, context_dim or 16)
    with torch.no_grad():
        full = resampler(context)
        assert full.shape == (3, 8, 16)
        for m in range(1, 9):
            torch.testing.assert_close(resampler(context, m=m), full[:, :m], atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError):
        resampler(context, m=9)
    assert 1 <= resampler.sample_m() <= 8


def test_mqt_without_causal_mask_would_not_be_prefix_valid():
    """Sanity check of the test above: full attention among queries breaks the prefix property."""
    torch.manual_seed(0)
    resampler = MQTResampler(dim=16, num_queries=8, depth=2, heads=2).eval()
    context = torch.randn(2, 10, 16)
    q = resampler.queries.expand(2, -1, -1)
    with torch.no_grad():
        full = resampler.layers(q, context)
        short = resampler.layers(q[:, :3], context)
    assert not torch.allclose(full[:, :3], short, atol=1e-4)


@pytest.mark.parametrize(
    "spatial_dims,shape,levels,sizes",
    [
        (1, (16,), (16, 4, 1), [16, 4, 1]),
        (2, (8, 8), (8, 4, 2, 1), [64, 16, 4, 1]),
        (3, (4, 8, 8), ((4, 8, 8), (2, 4, 4), 1), [256, 32, 1]),
    ],
)
def test_nested_pooling_levels_are_nested_means(spatial_dims, shape, levels, sizes):
    torch.manual_seed(0)
    pool = NestedPooling(spatial_dims=spatial_dims, levels=levels)
    x = torch.randn(2, 5, *shape)
    outs = pool(x)
    assert [o.shape for o in outs] == [torch.Size([2, n, 5]) for n in sizes]
    torch.testing.assert_close(outs[-1][:, 0], x.flatten(2).mean(-1))  # coarsest = global mean
    # each coarse token is the mean of the finer tokens it covers
    coarse_from_fine = NestedPooling(spatial_dims=spatial_dims, levels=[levels[-2]]).pool(x, 0).mean(1)
    torch.testing.assert_close(coarse_from_fine, outs[-1][:, 0])
