"""Tokenizer losses: L1 x 5 + quantizer aux + SSIM (MONAI), optional PatchGAN with LeCAM and R1."""

from __future__ import annotations

import pytest
import torch

from ctvl.tokenizers.causal3d.losses import TokenizerLoss, TokenizerLossConfig, to_slices


def test_perfect_reconstruction_costs_only_the_aux_loss() -> None:
    x = torch.rand(2, 1, 5, 32, 32) * 2 - 1
    loss, logs = TokenizerLoss()(x, x.clone(), aux_loss=torch.tensor(0.25))
    assert logs["l1"] == 0.0 and logs["ssim"] == pytest.approx(1.0, abs=1e-4)
    assert float(loss) == pytest.approx(0.25, abs=1e-4)


def test_weights_and_gradients() -> None:
    torch.manual_seed(0)
    x = torch.rand(1, 1, 3, 24, 24) * 2 - 1
    recon = (x + 0.2 * torch.randn_like(x)).requires_grad_()
    loss, logs = TokenizerLoss(config=TokenizerLossConfig(ssim_weight=0.0))(x, recon)
    assert float(loss.detach()) == pytest.approx(5 * logs["l1"], rel=1e-5) and "ssim" not in logs
    loss_ssim, logs_ssim = TokenizerLoss()(x, recon)
    assert float(loss_ssim.detach()) == pytest.approx(5 * logs["l1"] + 1 - logs_ssim["ssim"], rel=1e-4)
    loss_ssim.backward()
    assert recon.grad is not None and recon.grad.abs().sum() > 0


def test_single_slices_and_images_work() -> None:
    x = torch.rand(2, 1, 1, 16, 16) * 2 - 1
    y = x + 0.1
    a, _ = TokenizerLoss()(x, y)
    b, _ = TokenizerLoss()(x[:, :, 0], y[:, :, 0])
    torch.testing.assert_close(a, b)
    assert to_slices(torch.zeros(2, 3, 4, 5, 6)).shape == (8, 3, 5, 6)


def test_adversarial_terms_with_lecam_and_r1() -> None:
    torch.manual_seed(0)
    cfg = TokenizerLossConfig(
        adversarial_weight=0.1, adversarial_start=10, disc_channels=8, lecam_weight=0.01, r1_weight=1.0
    )
    crit = TokenizerLoss(config=cfg)
    assert crit.discriminator is not None
    x = torch.rand(1, 1, 3, 32, 32) * 2 - 1
    recon = (x + 0.3 * torch.randn_like(x)).requires_grad_()
    # before the start step: no GAN terms at all
    g0, logs0 = crit.generator_loss(x, recon, step=0)
    d0, dlogs0 = crit.discriminator_loss(x, recon, step=0)
    assert "gan_g" not in logs0 and float(d0) == 0.0 and not dlogs0
    g1, logs1 = crit.generator_loss(x, recon, step=10)
    assert "gan_g" in logs1
    assert float(g1.detach()) == pytest.approx(float(g0.detach()) + 0.1 * logs1["gan_g"], rel=1e-4)
    d1, dlogs1 = crit.discriminator_loss(x, recon, step=10)
    assert {"gan_d", "lecam", "r1"} <= set(dlogs1) and torch.isfinite(d1)
    d1.backward()
    disc_grads = [p.grad for p in crit.discriminator.parameters()]
    assert all(g is not None for g in disc_grads)
    assert recon.grad is None  # the discriminator step never reaches the generator
    assert float(crit.lecam_real) == 0.0  # the anchors move once per optimiser step, not per batch
    crit.update_anchors()
    assert float(crit.lecam_real) == pytest.approx(0.001 * float(dlogs1["d_real"]), rel=1e-5)  # EMA anchors moved
