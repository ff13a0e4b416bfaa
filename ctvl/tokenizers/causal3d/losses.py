"""Training losses of the causal 3D tokenizer.

Generator: ``l1_weight`` x L1 (5 in BTB3D) + the quantizer's auxiliary loss (entropy + commitment, already
weighted and annealed by the quantizer) + ``ssim_weight`` x (1 - SSIM) (MONAI ``SSIMLoss``, per slice)
+ optional ``adversarial_weight`` x GAN term (0.1 in BTB3D). The paper's perceptual term (a pretrained
network) is not available offline and is not faked; per-slice SSIM takes its place as the structural term.

Discriminator (optional): MONAI ``PatchDiscriminator`` on slices with MONAI ``PatchAdversarialLoss``
(hinge), plus the paper's regularisers: LeCAM (Tseng et al., CVPR 2021: EMA anchors of the real and fake
logits) and R1 (gradient penalty on real data). Slices are judged one by one (T folded into the batch), so
the same losses serve single slices, short excerpts and long crops.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from monai.losses import PatchAdversarialLoss, SSIMLoss
from monai.networks.nets import PatchDiscriminator
from torch import nn


@dataclass
class TokenizerLossConfig:
    """Weights of the tokenizer's losses (defaults: BTB3D's, without the perceptual term)."""

    l1_weight: float = 5.0  # L1 reconstruction (BTB3D: 5)
    ssim_weight: float = 1.0  # 1 - SSIM per slice, in place of the unavailable perceptual loss
    ssim_win_size: int = 7  # SSIM Gaussian window (clamped to the slice size)
    aux_weight: float = 1.0  # multiplies the quantizer's (already weighted) aux loss
    adversarial_weight: float = 0.0  # GAN term for the generator (BTB3D: 0.1); 0 = no discriminator
    adversarial_start: int = 0  # training step from which the GAN terms are on
    disc_channels: int = 32  # discriminator base width
    disc_layers: int = 3  # strided layers of the patch discriminator
    lecam_weight: float = 0.0  # LeCAM regulariser of the discriminator (e.g. 0.001)
    lecam_decay: float = 0.999  # EMA decay of the LeCAM anchors
    r1_weight: float = 0.0  # R1 gradient penalty gamma (0 = off)
    in_channels: int = 1  # image channels


def to_slices(x: torch.Tensor) -> torch.Tensor:
    """(B, C, T, H, W) -> (B*T, C, H, W); (B, C, H, W) is returned unchanged."""
    if x.dim() == 4:
        return x
    b, c, t, h, w = x.shape
    return x.transpose(1, 2).reshape(b * t, c, h, w)


class TokenizerLoss(nn.Module):
    """Generator and (optional) discriminator losses for a tokenizer reconstruction.

    Inputs are in [-1, 1]: ``x`` and ``recon`` (B, C, T, H, W) or (B, C, H, W).

    Args:
        config: loss weights; the discriminator exists only when ``adversarial_weight > 0``.
    """

    def __init__(self, *, config: TokenizerLossConfig | None = None) -> None:
        super().__init__()
        self.config = cfg = config or TokenizerLossConfig()
        self.adversarial = PatchAdversarialLoss(criterion="hinge")
        self.discriminator: nn.Module | None = None
        if cfg.adversarial_weight > 0:
            self.discriminator = PatchDiscriminator(
                spatial_dims=2,
                channels=cfg.disc_channels,
                in_channels=cfg.in_channels,
                num_layers_d=cfg.disc_layers,
                norm="INSTANCE",
            )
            self.register_buffer("lecam_real", torch.zeros(()))
            self.register_buffer("lecam_fake", torch.zeros(()))
        self._pending: list[torch.Tensor] = []  # (sum real, n real, sum fake, n fake) per discriminator batch

    def gan_active(self, step: int | None) -> bool:
        """Whether the adversarial terms are on at ``step`` (None: always, if configured)."""
        return self.discriminator is not None and (step is None or step >= self.config.adversarial_start)

    def ssim(self, x: torch.Tensor, recon: torch.Tensor) -> torch.Tensor:
        """Mean 1 - SSIM over slices (data range 2 for [-1, 1] inputs)."""
        xs, rs = to_slices(x), to_slices(recon)
        win = min(self.config.ssim_win_size, *xs.shape[-2:])
        win -= 1 - win % 2  # odd
        return SSIMLoss(spatial_dims=2, data_range=2.0, win_size=win)(rs.float(), xs.float())

    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        if self.discriminator is None:
            raise RuntimeError("the adversarial loss needs a discriminator (loss.adversarial > 0)")
        return self.discriminator(to_slices(x))[-1]  # (B*T, 1, h, w) patch logits

    def generator_loss(
        self, x: torch.Tensor, recon: torch.Tensor, aux_loss: torch.Tensor | float = 0.0, step: int | None = None
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """Total generator loss and its parts (floats for logging).

        Args:
            x: target, (B, C, T, H, W) or (B, C, H, W) in [-1, 1].
            recon: reconstruction, same shape.
            aux_loss: the quantizer's ``aux_loss``.
            step: training step (for ``adversarial_start``).
        """
        cfg = self.config
        l1 = (recon - x).abs().mean()
        total = cfg.l1_weight * l1 + cfg.aux_weight * aux_loss
        logs: dict[str, Any] = {"l1": float(l1.detach()), "aux": float(torch.as_tensor(aux_loss).detach())}
        if cfg.ssim_weight > 0:
            ssim_loss = self.ssim(x, recon)
            total = total + cfg.ssim_weight * ssim_loss
            logs["ssim"] = 1.0 - float(ssim_loss.detach())
        if self.gan_active(step) and cfg.adversarial_weight > 0:
            gen = self.adversarial(self._logits(recon), target_is_real=True, for_discriminator=False)
            total = total + cfg.adversarial_weight * gen
            logs["gan_g"] = float(gen.detach())
        logs["loss"] = float(total.detach())
        return total, logs

    def discriminator_loss(
        self, x: torch.Tensor, recon: torch.Tensor, step: int | None = None
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """Discriminator loss: hinge + LeCAM + R1 (zero and no graph when the GAN is off).

        Args:
            x: real slices/volumes in [-1, 1].
            recon: reconstructions (detached here).
            step: training step.
        """
        if not self.gan_active(step):
            return x.new_zeros(()), {}
        cfg = self.config
        real = x.detach().requires_grad_(cfg.r1_weight > 0)
        d_real, d_fake = self._logits(real), self._logits(recon.detach())
        loss = 0.5 * (
            self.adversarial(d_real, target_is_real=True, for_discriminator=True)
            + self.adversarial(d_fake, target_is_real=False, for_discriminator=True)
        )
        logs = {
            "gan_d": float(loss.detach()),
            "d_real": float(d_real.mean().detach()),
            "d_fake": float(d_fake.mean().detach()),
        }
        if cfg.lecam_weight > 0:  # anchors as of the step's start; this batch joins them in update_anchors
            self._pending.append(
                torch.stack(
                    [
                        d_real.detach().sum(),
                        d_real.new_tensor(float(d_real.numel())),
                        d_fake.detach().sum(),
                        d_fake.new_tensor(float(d_fake.numel())),
                    ]
                ).float()
            )
            lecam = F.relu(d_real - self.lecam_fake).pow(2).mean() + F.relu(self.lecam_real - d_fake).pow(2).mean()
            loss = loss + cfg.lecam_weight * lecam
            logs["lecam"] = float(lecam.detach())
        if cfg.r1_weight > 0:
            (grad,) = torch.autograd.grad(d_real.sum(), real, create_graph=True)
            r1 = grad.pow(2).flatten(1).sum(1).mean()
            loss = loss + 0.5 * cfg.r1_weight * r1
            logs["r1"] = float(r1.detach())
        return loss, logs

    def update_anchors(self, reduce_sum: Callable[[torch.Tensor], torch.Tensor] | None = None) -> None:
        """Move the LeCAM EMA anchors once, by the mean logits of every discriminator batch since the last
        call (the training task calls it once per optimiser step, ``reduce_sum`` summing over ranks), so the
        anchors follow the whole step's batch whatever the number of ranks and micro-batches."""
        if not self._pending:
            return
        total = torch.stack(self._pending).sum(0)  # (4,)
        self._pending = []
        if reduce_sum is not None:
            total = reduce_sum(total.to(self.lecam_real.device))
        decay = self.config.lecam_decay
        self.lecam_real.mul_(decay).add_((1 - decay) * total[0] / total[1])
        self.lecam_fake.mul_(decay).add_((1 - decay) * total[2] / total[3])

    def forward(
        self, x: torch.Tensor, recon: torch.Tensor, aux_loss: torch.Tensor | float = 0.0, step: int | None = None
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """Same as :meth:`generator_loss`."""
        return self.generator_loss(x, recon, aux_loss, step)
