"""Visual path: every reduction from the shared library gives the announced number of LM-width tokens."""

from __future__ import annotations

import pytest
import torch

from ctvl.errors import ConfigError
from ctvl.report.visual import REDUCTIONS, ReductionConfig, VisualEncoder, count_tokens, select_tokens

CASES = [
    ({"kind": "none"}, (5, 8, 8), 320),
    ({"kind": "pool", "grid": [2, 4, 4]}, (5, 8, 8), 32),
    ({"kind": "divprune", "keep": 40}, (5, 8, 8), 40),
    ({"kind": "divprune", "keep": 400}, (3, 4, 4), 48),  # keep > N keeps all
    ({"kind": "topk", "keep": 24, "regions": [1, 2, 2]}, (5, 8, 8), 24),
    ({"kind": "tokenpacker", "factor": [1, 2, 2]}, (5, 8, 8), 80),
    ({"kind": "tokenpacker", "factor": [2, 2, 2]}, (5, 8, 8), 48),  # odd depth padded
    ({"kind": "mqt", "keep": 16}, (33, 4, 4), 16),
]


@pytest.mark.parametrize("conv", [0, 2])
@pytest.mark.parametrize(("reduction", "grid", "expected"), CASES)
def test_token_counts_and_width(reduction, grid, expected, conv):
    torch.manual_seed(0)
    enc = VisualEncoder(
        in_dim=6, lm_dim=32, reduction=ReductionConfig.from_dict(reduction), conv_layers=conv, conv_width=8
    )
    codes = torch.sign(torch.randn(6, *grid))
    out, _ = enc([codes, codes])
    assert [o.shape for o in out] == [(expected, 32)] * 2
    assert count_tokens(enc.reduction, grid) == expected == enc.num_tokens(grid)
    out[0].sum().backward()
    assert enc.projector.net[0].weight.grad is not None
    if conv:
        assert enc.conv.net[0].weight.grad is not None


def test_conv_stage_mixes_neighbouring_latents():
    enc = VisualEncoder(
        in_dim=4, lm_dim=16, reduction=ReductionConfig(kind="none"), positions=False, conv_layers=1, conv_width=8
    ).eval()
    codes = torch.zeros(4, 1, 3, 3)
    base = enc([codes])[0][0]
    codes[:, 0, 1, 1] = 1.0  # change only the centre latent
    changed = (enc([codes])[0][0] - base).abs().sum(dim=1) > 0
    assert changed.all()  # every token of the 3 x 3 grid sees the centre through the 3x3x3 kernel


def test_every_reduction_is_covered():
    assert {c[0]["kind"] for c in CASES} == set(REDUCTIONS)


def test_positions_separate_identical_codes():
    enc = VisualEncoder(in_dim=4, lm_dim=16, reduction=ReductionConfig(kind="none"))
    out = enc([torch.ones(4, 2, 2, 2)])[0][0]  # the same latent everywhere
    assert torch.cdist(out, out).add(torch.eye(8) * 1e3).min() > 0
    flat = VisualEncoder(in_dim=4, lm_dim=16, reduction=ReductionConfig(kind="none"), positions=False)(
        [torch.ones(4, 2, 2, 2)]
    )[0][0]
    assert torch.allclose(flat, flat[0].expand_as(flat))


def test_bad_configs_and_inputs():
    with pytest.raises(ConfigError):
        ReductionConfig(kind="random")
    with pytest.raises(ConfigError):
        ReductionConfig.from_dict({"kind": "pool", "size": 3})
    with pytest.raises(ConfigError):
        ReductionConfig(kind="pool", grid=[2, 2])
    enc = VisualEncoder(in_dim=6, lm_dim=16, reduction=ReductionConfig())
    with pytest.raises(ConfigError, match="do not match"):
        enc([torch.zeros(5, 2, 2, 2)])


@pytest.mark.parametrize("conv", [0, 2])
@pytest.mark.parametrize("reduction", [c[0] for c in CASES])
def test_precomputed_selection_gives_the_same_tokens(reduction, conv):
    torch.manual_seed(0)
    enc = VisualEncoder(
        in_dim=6, lm_dim=32, reduction=ReductionConfig.from_dict(reduction), conv_layers=conv, conv_width=8
    ).eval()
    codes = [torch.sign(torch.randn(6, 5, 8, 8)), torch.sign(torch.randn(6, 3, 4, 4))]
    direct, _ = enc(codes)
    selections = [select_tokens(c, enc.reduction) for c in codes]
    for a, b in zip(direct, enc(selections)[0]):
        assert torch.allclose(a, b, atol=1e-6)


@pytest.mark.parametrize("conv", [0, 2])
def test_summary_token_and_label_logits(conv):
    enc = VisualEncoder(
        in_dim=6,
        lm_dim=32,
        reduction=ReductionConfig(kind="divprune", keep=10),
        conv_layers=conv,
        conv_width=8,
        summary=True,
    )
    tokens, logits = enc([torch.sign(torch.randn(6, 3, 4, 4)), torch.sign(torch.randn(6, 5, 8, 8))])
    assert [t.shape for t in tokens] == [(11, 32), (11, 32)] and logits.shape == (2, 18)
    assert enc.num_tokens((3, 4, 4)) == 11
    logits.sum().backward()
    assert enc.label_head.weight.grad is not None
