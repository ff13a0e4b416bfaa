"""The flow UNet: config checks, any number of latent frames, exact-zero text padding, code snapping."""

from __future__ import annotations

import pytest
import torch

from ctvl.errors import ConfigError
from ctvl.synthesis.model import LatentFlowGenerator, SynthesisConfig

TINY = {
    "latent_channels": 6,
    "channels": [16, 32],
    "attention_levels": [False, True],
    "norm_num_groups": 8,
    "num_head_channels": 16,
    "cross_attention_dim": 32,
}


@pytest.fixture(scope="module")
def model() -> LatentFlowGenerator:
    torch.manual_seed(0)
    return LatentFlowGenerator(config=SynthesisConfig.from_dict(dict(TINY))).eval()


@pytest.mark.parametrize(
    "bad, match",
    [
        ({"nope": 1}, "unknown synthesis model key"),
        ({"attention_levels": [True]}, "same length"),
        ({"norm_num_groups": 5}, "must divide"),
        ({"attention_levels": [False, False]}, "at least one"),
        ({"p_uncond": 1.0}, "p_uncond"),
        ({"latents": "continuous"}, "latents"),
        ({"sample_method": "x"}, "sample_method"),
    ],
)
def test_config_refuses_bad_values(bad, match):
    with pytest.raises(ConfigError, match=match):
        SynthesisConfig.from_dict({**TINY, **bad})


def test_config_round_trips():
    cfg = SynthesisConfig.from_dict(dict(TINY))
    assert SynthesisConfig.from_dict(cfg.to_dict()) == cfg
    assert cfg.multiple == 2


@pytest.mark.parametrize("frames", [1, 2, 3, 5])
def test_any_number_of_latent_frames(model: LatentFlowGenerator, frames: int):
    x = torch.randn(2, 6, frames, 4, 4)
    ctx = model.context([torch.randn(5, 384), None])
    with torch.no_grad():
        v = model(x, torch.tensor([10.0, 900.0]), ctx)
    assert v.shape == x.shape and torch.isfinite(v).all()


def test_context_pads_with_exact_zeros_and_uses_the_null_text(model: LatentFlowGenerator):
    text = torch.randn(3, 384)
    ctx = model.context([text, None, torch.zeros(0, 384)])
    assert ctx.shape == (3, 4, 32)  # the longest row: the 4-token null text
    assert torch.equal(ctx[0, 3], torch.zeros(32))  # padding after a 3-token prompt
    assert torch.allclose(ctx[1], model.text_proj(model.null_text)) and torch.allclose(ctx[1], ctx[2])


def test_a_prompt_in_a_longer_batch_keeps_its_rows_and_gets_zero_rows_after(model: LatentFlowGenerator):
    text = torch.randn(7, 384)
    alone = model.context([text])
    padded = model.context([text, torch.randn(9, 384)])[:1]
    assert torch.allclose(padded[0, :7], alone[0], atol=1e-6) and torch.equal(padded[0, 7:], torch.zeros(2, 32))


def test_codes_survive_normalisation(model: LatentFlowGenerator):
    model.set_latent_stats(torch.linspace(-0.5, 0.5, 6), torch.linspace(0.5, 1.0, 6))
    codes = torch.sign(torch.randn(2, 6, 3, 4, 4))
    assert torch.equal(model.to_codes(model.normalize(codes)), codes)
    assert set(model.to_codes(torch.randn(1, 6, 2, 4, 4)).unique().tolist()) <= {-1.0, 1.0}
    assert "latent_mean" in model.state_dict() and "latent_std" in model.state_dict()


def test_pooled_text_starts_as_the_cross_attention_model_and_then_reads_the_first_row():
    torch.manual_seed(0)
    plain = LatentFlowGenerator(config=SynthesisConfig.from_dict(dict(TINY))).eval()
    torch.manual_seed(0)
    pooled = LatentFlowGenerator(config=SynthesisConfig.from_dict({**TINY, "pooled_text": True})).eval()
    with torch.no_grad():  # MONAI zero-initialises the output convolution: give every weight a value
        for q in plain.parameters():
            q.copy_(torch.randn_like(q) * 0.1)
    pooled.load_state_dict(plain.state_dict(), strict=False)  # same UNet, text projection and null text
    x, t = torch.randn(2, 6, 2, 4, 4), torch.tensor([10.0, 900.0])
    text = torch.randn(5, 384)
    ctx = pooled.context([text, None])
    with torch.no_grad():
        # the MLP's last layer starts at zero: the global path adds nothing yet
        assert torch.allclose(pooled(x, t, ctx), plain(x, t, ctx), atol=1e-6)
        for p in pooled.unet.class_embedding[2].parameters():
            p.normal_()
        before = pooled(x, t, ctx)
        changed = text.clone()
        changed[0] += 1.0  # only the pooled row differs
        after = pooled(x, t, pooled.context([changed, None]))
    assert not torch.allclose(before[0], after[0]) and torch.allclose(before[1], after[1])
    assert isinstance(pooled.unet.class_embedding, torch.nn.Sequential)
