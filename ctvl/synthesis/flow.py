"""Rectified flow in latent space: the training target and the sampler, on MONAI's ``RFlowScheduler``.

Convention (MONAI's): time ``s`` runs over [0, T] (T = ``num_train_timesteps``); ``x_s = (1 - s/T) x_0 +
(s/T) ε`` (``RFlowScheduler.add_noise``), so ``s = T`` is pure noise; the network predicts the velocity
``v = x_0 - ε`` and sampling integrates from noise to data with Euler steps on the scheduler's time grid
(``RFlowScheduler.set_timesteps``).
Training times follow the scheduler's logit-normal (or uniform) law, but are drawn here from per-sample
generators so a batch is a pure function of its sample indices (DDP equals one process; resume is exact).
Classifier-free guidance: ``v = v_null + g (v_text - v_null)``, both in one forward pass of a doubled batch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from ctvl.errors import InputError
from ctvl.synthesis.model import LatentFlowGenerator, SynthesisConfig


def make_scheduler(config: SynthesisConfig):
    """MONAI ``RFlowScheduler`` with continuous time (no rounding of the Euler steps)."""
    from monai.networks.schedulers import RFlowScheduler

    return RFlowScheduler(
        num_train_timesteps=config.num_train_timesteps,
        use_discrete_timesteps=False,
        sample_method=config.sample_method,
        use_timestep_transform=False,
    )


def sample_times(config: SynthesisConfig, generators: Sequence[torch.Generator]) -> torch.Tensor:
    """(B,) training times, one per generator: logit-normal(0, 1) (or uniform) scaled to [0, T]."""
    if config.sample_method == "uniform":
        u = torch.stack([torch.rand((), generator=g) for g in generators])
    else:
        u = torch.sigmoid(torch.stack([torch.randn((), generator=g) for g in generators]))
    return u * config.num_train_timesteps


def flow_loss(
    model: torch.nn.Module,
    scheduler,
    x0: torch.Tensor,
    noise: torch.Tensor,
    times: torch.Tensor,
    context: torch.Tensor,
) -> torch.Tensor:
    """Mean squared error of the predicted velocity.

    Args:
        model: the generator (possibly DDP-wrapped); called as ``model(x_s, times, context)``.
        scheduler: from :func:`make_scheduler`.
        x0: (B, C, t, h, w) normalised clean latents.
        noise: (B, C, t, h, w) standard normal.
        times: (B,) in [0, T].
        context: (B, L, D) cross-attention context.
    """
    xs = scheduler.add_noise(original_samples=x0, noise=noise, timesteps=times)
    v = model(xs, times, context)
    return torch.mean((v.float() - (x0 - noise).float()) ** 2)


@torch.no_grad()
def sample(
    model: LatentFlowGenerator,
    texts: Sequence[torch.Tensor | None],
    shape: tuple[int, int, int],
    *,
    steps: int,
    guidance: float,
    generators: Sequence[torch.Generator],
    progress: Callable[[int, int], None] | None = None,
) -> torch.Tensor:
    """Integrate the flow from noise to latents.

    Args:
        model: the generator, eval mode.
        texts: per sample a prompt context (L_i, 384), or None for the null text (unconditional).
        shape: latent (t, h, w).
        steps: Euler steps (>= 1).
        guidance: classifier-free guidance scale (0 = unconditional, 1 = no guidance).
        generators: one CPU generator per sample (the initial noise; same seed, same sample).
        progress: ``progress(done, steps)`` after each step.

    Returns:
        (B, C, t, h, w) LFQ codes (±1), ready for the tokenizer's decoder.
    """
    if steps < 1:
        raise InputError(f"steps must be >= 1, got {steps}")
    if guidance < 0:
        raise InputError(f"guidance must be >= 0, got {guidance}")
    if len(texts) != len(generators):
        raise InputError(f"{len(texts)} prompts but {len(generators)} random generators")
    device = next(model.parameters()).device
    c = model.config.latent_channels
    x = torch.stack([torch.randn((c, *shape), generator=g) for g in generators]).to(device)  # (B, C, t, h, w)
    b = x.shape[0]
    conditional = any(t is not None and t.numel() > 0 for t in texts)
    if not conditional or guidance == 0.0:
        ctx, doubled = model.context([None] * b), False
    elif guidance == 1.0:
        ctx, doubled = model.context(list(texts)), False
    else:
        ctx, doubled = model.context(list(texts) + [None] * b), True
    scheduler = make_scheduler(model.config)
    scheduler.set_timesteps(num_inference_steps=int(steps), device=device)
    times = list(scheduler.timesteps.tolist()) + [0.0]
    scale = float(model.config.num_train_timesteps)
    for k in range(len(times) - 1):
        s, s_next = float(times[k]), float(times[k + 1])
        if doubled:
            v = model(torch.cat([x, x]), torch.full((2 * b,), s, device=device), ctx)
            v_text, v_null = v[:b], v[b:]
            v = v_null + guidance * (v_text - v_null)
        else:
            v = model(x, torch.full((b,), s, device=device), ctx)
        # Euler step of RFlowScheduler.step, written out: its step() truncates the next time to an int
        x = x + v * ((s - s_next) / scale)
        if progress is not None:
            progress(k + 1, len(times) - 1)
    return model.to_codes(x)
