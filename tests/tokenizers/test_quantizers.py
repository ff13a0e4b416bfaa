"""Quantizers: shapes for every layout, gradients, index ↔ code round trips, usage floors."""

import math

import pytest
import torch
from vector_quantize_pytorch import LFQ as LibLFQ

from ctvl.tokenizers.quantizers import QUANTIZERS, Quantizer, build_quantizer, codebook_stats
from ctvl.tokenizers.quantizers.lfq import LFQ, bit_table, split_bits

# kind, dim, kwargs: the comparable ~10-bit settings the benchmark uses
KINDS = [
    ("fsq", 6, {"levels": (8, 5, 5, 5)}),
    ("lfq", 6, {"bits": 10}),
    ("group_lfq", 6, {"groups": 2, "bits_per_group": 5}),
    ("vq", 6, {"codebook_size": 256, "codebook_dim": 4}),
    ("msrvq", 6, {"codebook_size": 64, "scales": (1, 2)}),
]

# layout name, input shape without (B, C), spatial_dims for msrvq, channel_last
LAYOUTS = [
    ("seq", (7,), 1, True),
    ("2d", (6, 5), 2, False),
    ("3d", (3, 4, 5), 3, False),
]


def make(kind: str, dim: int, kwargs: dict, spatial_dims: int, channel_last: bool) -> Quantizer:
    extra = {"spatial_dims": spatial_dims} if kind == "msrvq" else {}
    return build_quantizer(kind, dim, channel_last=channel_last, **kwargs, **extra)


def make_input(dim: int, spatial: tuple, channel_last: bool, batch: int = 2) -> torch.Tensor:
    shape = (batch, *spatial, dim) if channel_last else (batch, dim, *spatial)
    return torch.randn(shape)


@pytest.mark.parametrize("layout,spatial,spatial_dims,channel_last", LAYOUTS, ids=[lay[0] for lay in LAYOUTS])
@pytest.mark.parametrize("kind,dim,kwargs", KINDS, ids=[k[0] for k in KINDS])
def test_shapes_and_gradients(kind, dim, kwargs, layout, spatial, spatial_dims, channel_last):
    torch.manual_seed(0)
    q = make(kind, dim, kwargs, spatial_dims, channel_last).train()
    x = make_input(dim, spatial, channel_last).requires_grad_(True)
    out = q(x)
    assert out.quantized.shape == x.shape
    if kind == "group_lfq":
        assert out.indices.shape == (2, *spatial, kwargs["groups"])
    elif kind == "msrvq":
        shapes = q.scale_shapes(spatial)
        assert out.indices.shape == (2, sum(math.prod(s) for s in shapes)) and shapes[-1] == spatial
    else:
        assert out.indices.shape == (2, *spatial)
    assert out.indices.dtype == torch.long
    assert int(out.indices.min()) >= 0 and int(out.indices.max()) < q.codebook_size
    assert out.aux_loss.ndim == 0 and torch.isfinite(out.aux_loss)
    assert {"codebook_usage", "perplexity"} <= set(out.stats)
    assert 0 < out.stats["codebook_usage"] <= 1 and out.stats["perplexity"] >= 1
    # gradients reach the encoder through the straight-through path
    (out.quantized * torch.randn_like(out.quantized)).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


@pytest.mark.parametrize("kind,dim,kwargs", KINDS, ids=[k[0] for k in KINDS])
def test_encoder_gradient_through_quantizer_in_a_model(kind, dim, kwargs):
    torch.manual_seed(0)
    encoder = torch.nn.Conv2d(1, dim, 3, padding=1)
    q = make(kind, dim, kwargs, 2, False).train()
    out = q(encoder(torch.randn(2, 1, 8, 8)))
    (out.quantized.square().mean() + out.aux_loss).backward()
    assert encoder.weight.grad is not None and encoder.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("layout,spatial,spatial_dims,channel_last", LAYOUTS, ids=[lay[0] for lay in LAYOUTS])
@pytest.mark.parametrize("kind,dim,kwargs", KINDS, ids=[k[0] for k in KINDS])
def test_indices_to_codes_round_trip(kind, dim, kwargs, layout, spatial, spatial_dims, channel_last):
    torch.manual_seed(0)
    q = make(kind, dim, kwargs, spatial_dims, channel_last).eval()
    x = make_input(dim, spatial, channel_last)
    with torch.no_grad():
        out = q(x)
        if kind == "msrvq":
            codes = q.indices_to_codes(out.indices, spatial_shape=spatial)
        else:
            codes = q.indices_to_codes(out.indices)
    torch.testing.assert_close(codes, out.quantized, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("kind,dim,kwargs", KINDS[1:3], ids=[k[0] for k in KINDS[1:3]])
def test_every_code_survives_requantization(kind, dim, kwargs):
    """index → code → quantize → the same index, for every code of LFQ / grouped LFQ."""
    q = build_quantizer(kind, 10, **kwargs).eval()  # dim = bits: no projection, codes are inputs
    n = q.codebook_size
    if kind == "group_lfq":
        idx = torch.stack([torch.arange(n), torch.arange(n).flip(0)], dim=-1)[None]  # (1, n, G)
    else:
        idx = torch.arange(n)[None]  # (1, n)
    codes = q.indices_to_codes(idx)  # (1, C, n)
    assert codes.shape == (1, 10, n) and set(codes.unique().tolist()) == {-1.0, 1.0}
    assert torch.equal(q(codes).indices, idx)


def test_fsq_codes_are_a_bijection_of_indices():
    q = build_quantizer("fsq", 4, levels=(8, 5, 5, 5)).eval()
    codes = q.indices_to_codes(torch.arange(1000)[None])  # (1, 4, 1000)
    assert codes.shape == (1, 4, 1000) and codes.abs().max() <= 1
    assert torch.unique(codes[0].T, dim=0).shape[0] == 1000
    assert torch.equal(q.fsq.codes_to_indices(codes[0].T).long(), torch.arange(1000))
    # a quantized output decodes back to itself (the forward direction of the round trip)
    out = q(torch.randn(2, 4, 9, 9) * 3)
    torch.testing.assert_close(q.indices_to_codes(out.indices), out.quantized)


# usage floors on random N(0, 1) inputs (eval, no training): measured ~1.0 for the 10-bit
# quantizers and ~0.84 for the randomly initialised msrvq codebook; floors leave a margin.
USAGE_FLOOR = {"fsq": 0.9, "lfq": 0.9, "group_lfq": 0.9, "vq": 0.9, "msrvq": 0.5}


@pytest.mark.parametrize("kind,dim,kwargs", KINDS, ids=[k[0] for k in KINDS])
def test_usage_on_random_inputs_above_floor(kind, dim, kwargs):
    torch.manual_seed(0)
    dim = {"fsq": 4, "lfq": 10, "group_lfq": 10, "vq": 8}.get(kind, dim)  # no projections
    kwargs = {**kwargs, "codebook_size": 1024, "codebook_dim": 8} if kind == "vq" else kwargs
    q = make(kind, dim, kwargs, 2, False).eval()
    with torch.no_grad():
        stats = q(torch.randn(16, dim, 32, 32)).stats
    assert stats["codebook_usage"] >= USAGE_FLOOR[kind]
    assert stats["perplexity"] >= 0.5 * USAGE_FLOOR[kind] * q.codebook_size


def test_lfq_matches_vector_quantize_pytorch_on_small_codebooks():
    """Our factorised entropy equals the library's materialised one; indices and codes agree."""
    torch.manual_seed(0)
    ours = LFQ(dim=6, entropy_weight=1.0, entropy_weight_start=None, commitment_weight=0.25, inv_temperature=1.0)
    lib = LibLFQ(dim=6, entropy_loss_weight=1.0, commitment_loss_weight=0.25)
    z = torch.randn(3, 6, 5, 4) * 0.5
    (lq, lidx, laux), breakdown = lib.train()(z, inv_temperature=1.0, return_loss_breakdown=True)
    out = ours.train()(z)
    assert torch.equal(out.indices, lidx.long())
    torch.testing.assert_close(out.quantized, lq)
    assert out.stats["per_sample_entropy"] == pytest.approx(float(breakdown.per_sample_entropy), rel=1e-4)
    assert out.stats["batch_entropy"] == pytest.approx(float(breakdown.batch_entropy), rel=1e-4)
    assert float(out.aux_loss) == pytest.approx(float(laux), rel=1e-4, abs=1e-5)


def test_lfq_18_bits_factorises_the_batch_entropy():
    q = LFQ(dim=18, bits=18).train()
    assert q.codebook_size == 2**18 and q.entropy_groups == [9, 9]
    x = torch.randn(2, 18, 4, 16, 16, requires_grad=True)
    out = q(x)
    out.aux_loss.backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    # batch entropy of two 9-bit halves is at most 18 ln 2 and positive
    assert 0 < out.stats["batch_entropy"] <= 18 * math.log(2) + 1e-4
    assert split_bits(18, 10) == [9, 9] and split_bits(10, 10) == [10] and split_bits(11, 4) == [4, 4, 3]


def test_lfq_entropy_weight_anneals_and_set_step_overrides():
    q = LFQ(dim=4, entropy_weight=0.1, entropy_weight_start=0.3, entropy_anneal_steps=2000).train()
    x = torch.randn(2, 4, 3, 3)
    assert q(x).stats["entropy_weight"] == pytest.approx(0.3)
    assert q(x).stats["entropy_weight"] == pytest.approx(0.3 - 0.2 / 2000)  # advanced by one step
    q.set_step(1000)
    assert q(x).stats["entropy_weight"] == pytest.approx(0.2)
    q.set_step(5000)
    assert q(x).stats["entropy_weight"] == pytest.approx(0.1)
    assert "entropy_weight" in q.state_dict() or any("step" in k for k in q.state_dict())  # resumable


def test_lfq_commitment_default_is_a_quarter_and_eval_has_no_aux():
    q = build_quantizer("lfq", 4)
    assert q.commitment_weight == 0.25
    assert float(q.eval()(torch.randn(2, 4, 3)).aux_loss) == 0.0


def test_group_lfq_pooled_batch_entropy_differs_from_per_group():
    torch.manual_seed(0)
    z = torch.randn(64, 2, 3)
    z[:, 1] = z[:, 0]  # both groups use identical codes: pooled entropy == per-group entropy
    pooled = build_quantizer("group_lfq", 6, groups=2, bits_per_group=3)
    per_group = build_quantizer("group_lfq", 6, groups=2, bits_per_group=3, batch_entropy="per_group")
    torch.testing.assert_close(pooled.entropy_loss(z)[1], per_group.entropy_loss(z)[1])
    z[:, 1] = -3.0  # second group always emits code 0: pooling mixes it into the shared histogram
    assert float(pooled.entropy_loss(z)[1]) != pytest.approx(float(per_group.entropy_loss(z)[1]))


@pytest.mark.parametrize("kind", ["fsq", "lfq", "group_lfq"])
def test_quantization_runs_in_fp32_under_bf16_autocast(kind):
    torch.manual_seed(0)
    dim = 10 if kind != "fsq" else 4
    kwargs = {"groups": 2, "bits_per_group": 5} if kind == "group_lfq" else {}
    q = build_quantizer(kind, dim, **kwargs).eval()
    x = torch.randn(4, dim, 16, 16)
    ref = q(x).indices
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = q(x.bfloat16()).indices
    assert (got == ref).float().mean() > 0.9  # only inputs rounded by the bf16 cast itself may move
    # FSQ in bf16 would collapse neighbouring levels; in fp32 every code is reachable
    assert q(x.bfloat16()).stats["codebook_usage"] > 0.5


def test_msrvq_scales_are_clipped_and_end_at_full_size():
    q = build_quantizer("var", 4, spatial_dims=3, scales=(1, 2, (2, 4, 4), 16), codebook_size=16)
    assert q.scale_shapes((3, 8, 8)) == [(1, 1, 1), (2, 2, 2), (2, 4, 4), (3, 8, 8)]
    with pytest.raises(ValueError, match="spatial_shape"):
        q.indices_to_codes(torch.zeros(1, 5, dtype=torch.long))


def test_index_bits_and_bits_per_token():
    q = build_quantizer("fsq", 4, levels=(8, 5, 5, 5))
    out = q(torch.randn(2, 4, 4, 4))
    assert q.bits_per_token == pytest.approx(math.log2(1000))
    assert q.index_bits(out.indices) == pytest.approx(16 * math.log2(1000))
    g = build_quantizer("glfq", 16, groups=8, bits_per_group=8)
    assert g.bits_per_token == 64 and g.index_bits(g(torch.randn(1, 16, 2, 2)).indices) == 4 * 64


def test_build_quantizer_rejects_unknown_kind():
    with pytest.raises(ValueError, match="unknown quantizer"):
        build_quantizer("pq", 4)
    assert set(QUANTIZERS) == {"fsq", "lfq", "group_lfq", "vq", "msrvq"}


def test_codebook_stats_uniform_and_single_code():
    assert codebook_stats(torch.arange(8), 8) == {"codebook_usage": 1.0, "perplexity": pytest.approx(8.0)}
    assert codebook_stats(torch.zeros(5, dtype=torch.long), 4) == {"codebook_usage": 0.25, "perplexity": 1.0}


def test_bit_table_is_msb_first():
    assert bit_table(2).tolist() == [[0, 0], [0, 1], [1, 0], [1, 1]]
