"""Part 2 of ``ctvl bench quantizers``: a TiTok-style 1D tokenizer trained with nested dropout or tail drop,
and its held-out reconstruction error against the number of kept tokens.

The 1D tokenizers get their own, larger phantom set (256 + 8 patients, :func:`oned_data`): with the
quantizers' 32 patients (1,056 slices) the model over-fitted (training MSE 0.009, held-out 0.014 at
8 tokens) and the held-out curve of 2 patients said more about them than about the token order.

Shapes: slices (N, 1, H, W) in [-1, 1]; ``error_vs_kept`` rows {kept_tokens, mse, psnr}.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import replace

import torch
import torch.nn.functional as F

from ctvl.bench.bench_data import BenchConfig, BenchData, batches, phantom_data
from ctvl.psnr import psnr_from_mse
from ctvl.tokenizers.oned import TiTok1D, TiTokConfig, tail_cut_cycle


def train_titok(
    model: TiTok1D,
    data: torch.Tensor,
    steps: int,
    batch: int,
    lr: float,
    gen: torch.Generator,
    tick: Callable[[], None] = lambda: None,
) -> None:
    """Train a 1D tokenizer (its token-drop mode is applied inside ``forward`` in training).

    AdamW with a linear warm-up over the first 10% of the steps (transformers plateau without it), then a
    cosine decay to 5% of ``lr``: with tail drop every step trains one prefix length, and at a constant
    rate the last few draws decide which lengths the final weights favour (the curve came out
    non-monotone); the decay averages the objective over all lengths.
    """
    opt = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.99), weight_decay=0.0)
    warmup = max(1, steps // 10)

    def factor(s: int) -> float:
        if s < warmup:
            return (s + 1) / warmup
        progress = (s - warmup) / max(1, steps - warmup)
        return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * progress))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
    model.train()
    cycle = tail_cut_cycle(model.config.num_latent_tokens, model.config.full_share)
    cuts: list[int] = []
    for step in range(steps):
        x = data[torch.randint(0, len(data), (batch,), generator=gen)]
        if model.quantizer is not None:
            model.quantizer.set_step(step)
        keep = None
        if model.config.token_drop == "tail":  # one cut per batch, stratified: each length once per cycle
            if not cuts:
                cuts = [cycle[i] for i in torch.randperm(len(cycle), generator=gen).tolist()]
            keep = cuts.pop()
        out = model(x, keep=keep)
        loss = F.mse_loss(out.reconstruction, x) + out.aux_loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        tick()


@torch.no_grad()
def error_vs_kept(model: TiTok1D, data: torch.Tensor, kept: Sequence[int], batch: int = 32) -> list[dict[str, float]]:
    """Held-out MSE / PSNR when decoding from the first k tokens, for each k."""
    model.eval()
    rows = []
    for k in kept:
        se = sum(float(F.mse_loss(model.reconstruct(x, k), x, reduction="sum")) for x in batches(data, batch))
        mse = se / data.numel()
        rows.append({"kept_tokens": int(k), "mse": mse, "psnr": psnr_from_mse(mse)})
    return rows


def oned_config(cfg: BenchConfig, token_drop: str, image_size: Sequence[int]) -> TiTokConfig:
    """The benchmark's TiTok: FSQ tokens (``cfg.oned_levels``), causal latents, 2 + 2 layers of width 64;
    ``cfg.oned_full_share`` of the draws keep all tokens (with the papers' uniform draws the curves came
    out flat or rising past 4 tokens for some seeds)."""
    return TiTokConfig(
        spatial_dims=2,
        image_size=tuple(image_size),
        patch_size=cfg.oned_patch,
        width=64,
        encoder_depth=2,
        decoder_depth=2,
        heads=4,
        num_latent_tokens=cfg.oned_tokens,
        token_dim=len(cfg.oned_levels),
        quantizer="fsq",
        quantizer_kwargs={"levels": tuple(cfg.oned_levels)},
        token_drop=token_drop,
        causal_latents=True,
        full_share=cfg.oned_full_share if token_drop != "none" else 0.0,
    )


def oned_data(cfg: BenchConfig) -> BenchData:
    """The 1D tokenizers' phantom set: ``cfg.oned_train_cases`` + ``cfg.oned_test_cases`` patients."""
    return phantom_data(replace(cfg, train_cases=cfg.oned_train_cases, test_cases=cfg.oned_test_cases))
