"""The paper-sized tokenizer (96 filters, 4 ResBlocks, 18-bit LFQ) builds and trains a step at 9 x 64 x 64."""

from __future__ import annotations

import pytest
import torch

from ctvl.tokenizers.causal3d import Causal3DConfig, Causal3DTokenizer
from ctvl.tokenizers.causal3d.losses import TokenizerLoss


@pytest.mark.slow  # ~10 s on one core: 188 M parameters
def test_paper_config_forward_backward_step() -> None:
    torch.manual_seed(0)
    model = Causal3DTokenizer(config=Causal3DConfig.paper("8x8x8"))
    assert model.quantizer.codebook_size == 2**18 and model.config.filters == 96
    # the full-size geometry: 241 x 512 x 512 -> 18 x 31 x 64 x 64 latents
    assert model.latent_shape(241, 512, 512) == (18, 31, 64, 64)
    x = torch.rand(1, 1, 9, 64, 64) * 2 - 1
    out = model(x)
    assert out.recon.shape == x.shape and out.codes.shape == (1, 18, 2, 8, 8)
    assert int(out.indices.max()) < 2**18
    loss, logs = TokenizerLoss()(x, out.recon, out.aux_loss)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    before = model.decoder.conv_out.conv.weight.detach().clone()
    opt.step()
    assert not torch.equal(before, model.decoder.conv_out.conv.weight)
    assert set(logs) >= {"l1", "aux", "ssim", "loss"}
