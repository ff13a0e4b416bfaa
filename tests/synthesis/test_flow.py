"""Rectified flow: the loss is MONAI's interpolation + velocity target; sampling is seeded and guided."""

from __future__ import annotations

import pytest
import torch

from ctvl.errors import InputError
from ctvl.synthesis.flow import flow_loss, make_scheduler, sample, sample_times
from ctvl.synthesis.model import LatentFlowGenerator, SynthesisConfig

TINY = {
    "latent_channels": 4,
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


def gens(*seeds: int) -> list[torch.Generator]:
    return [torch.Generator().manual_seed(s) for s in seeds]


def test_times_are_in_range_and_seeded(model):
    t = sample_times(model.config, gens(*range(200)))
    assert t.shape == (200,) and 0 <= t.min() and t.max() <= 1000
    assert torch.equal(t, sample_times(model.config, gens(*range(200))))
    assert 350 < float(t.median()) < 650  # logit-normal(0, 1) is centred on T / 2


def test_loss_is_the_velocity_error_at_the_interpolated_point(model):
    x0, noise = torch.randn(2, 4, 2, 4, 4), torch.randn(2, 4, 2, 4, 4)
    times = torch.tensor([250.0, 750.0])
    ctx = model.context([None, None])
    xs = (1 - times / 1000)[:, None, None, None, None] * x0 + (times / 1000)[:, None, None, None, None] * noise
    with torch.no_grad():
        expected = torch.mean((model(xs, times, ctx) - (x0 - noise)) ** 2)
        got = flow_loss(model, make_scheduler(model.config), x0, noise, times, ctx)
    assert torch.allclose(got, expected, atol=1e-6)


def test_sampling_is_seeded_and_returns_codes(model):
    texts = [torch.randn(5, 384), None]
    a = sample(model, texts, (2, 4, 4), steps=3, guidance=2.0, generators=gens(1, 2))
    b = sample(model, texts, (2, 4, 4), steps=3, guidance=2.0, generators=gens(1, 2))
    c = sample(model, texts, (2, 4, 4), steps=3, guidance=2.0, generators=gens(3, 2))
    assert a.shape == (2, 4, 2, 4, 4) and set(a.unique().tolist()) <= {-1.0, 1.0}
    assert torch.equal(a, b) and not torch.equal(a[0], c[0])


def test_guidance_zero_is_the_unconditional_model(model):
    text = [torch.randn(5, 384)]
    zero = sample(model, text, (2, 4, 4), steps=2, guidance=0.0, generators=gens(4))
    uncond = sample(model, [None], (2, 4, 4), steps=2, guidance=3.0, generators=gens(4))
    assert torch.equal(zero, uncond)


@pytest.mark.parametrize("kw, match", [({"steps": 0}, "steps"), ({"guidance": -1.0}, "guidance")])
def test_bad_settings_are_refused(model, kw, match):
    args = {"steps": 2, "guidance": 1.0, **kw}
    with pytest.raises(InputError, match=match):
        sample(model, [None], (1, 4, 4), generators=gens(0), **args)
