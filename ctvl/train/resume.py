"""A training run's state: the parts :func:`~ctvl.train.loop.train` builds, saved and restored whole.

:func:`save_run` writes one atomic checkpoint (full, plain-keyed weights also when sharded; EMA, extra
modules, optimisers, schedulers, scaler, every rank's RNG state, the data position and the open
metrics window); :func:`restore_run` loads all of it back, refusing a checkpoint from another world
size or sharding strategy, so a resumed run ends with the same weights as an uninterrupted one.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ctvl.errors import ConfigError
from ctvl.train.checkpoint import read_checkpoint, save_checkpoint
from ctvl.train.config import TrainConfig
from ctvl.train.distributed import DistContext, all_reduce_mean, barrier, gather_objects
from ctvl.train.ema import EMA
from ctvl.train.precision import Precision
from ctvl.train.rng import capture_rng_state, restore_rng_state
from ctvl.train.schedule import refresh_lr
from ctvl.train.sharding import (
    full_model_state,
    full_optimizer_state,
    is_sharded,
    load_full_model_state,
    load_full_optimizer_state,
)
from ctvl.train.task import TrainTask


@dataclass
class RunParts:
    """Everything built for one run: the parts a checkpoint saves and a resume restores."""

    model: nn.Module  # the plain model
    wrapped: nn.Module  # DDP wrapper (or the model itself)
    trainable: list[nn.Parameter]
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    scaler: torch.amp.GradScaler
    ema: EMA | None
    extras: dict[str, nn.Module]
    extra_optimizers: dict[str, torch.optim.Optimizer]
    extra_schedulers: dict[str, torch.optim.lr_scheduler.LambdaLR]


def restore_run(parts: RunParts, ckpt: Path, ctx: DistContext) -> tuple[int, float, dict[str, list[torch.Tensor]]]:
    """Load a checkpoint into every part; returns (step, elapsed seconds, open metrics window)."""
    weights, _, state = read_checkpoint(ckpt, map_location="cpu")
    if state is None or "model" not in weights:
        raise ConfigError("checkpoint has no state.pt/model.safetensors; it cannot be resumed", path=ckpt)
    saved_world = int(state.get("world_size", 1))
    if saved_world != ctx.world_size:  # the data order and every rank's random state depend on it
        raise ConfigError(
            f"checkpoint was written by {saved_world} process(es) but this run has {ctx.world_size}; "
            f"resume with torchrun --nproc_per_node {saved_world}, or start a new run",
            path=ckpt,
        )
    saved_strategy, strategy = state.get("strategy", "ddp"), "fsdp" if is_sharded(parts.model) else "ddp"
    if saved_strategy != strategy:  # the optimiser state is keyed differently
        raise ConfigError(
            f"checkpoint was trained with strategy {saved_strategy}, this run uses {strategy}; "
            f"set strategy: {saved_strategy} to resume it",
            path=ckpt,
        )
    load_full_model_state(parts.model, weights["model"])
    if parts.ema is not None and "ema" in weights:
        parts.ema.load_state_dict(weights["ema"], int(state.get("ema_updates", 1)))
    for name, module in parts.extras.items():
        module.load_state_dict(weights[f"extra-{name}"])
        parts.extra_optimizers[name].load_state_dict(state["extra_optimizers"][name])
        parts.extra_schedulers[name].load_state_dict(state["extra_schedulers"][name])
        refresh_lr(parts.extra_schedulers[name])
    load_full_optimizer_state(parts.model, parts.optimizer, state["optimizer"])
    parts.scheduler.load_state_dict(state["scheduler"])
    refresh_lr(parts.scheduler)
    parts.scaler.load_state_dict(state["scaler"])
    rngs = state["rng"]
    restore_rng_state(rngs[ctx.rank])
    window = {k: list(v.to(ctx.device).unbind(0)) for k, v in state.get("window", {}).items()}
    return int(state["step"]), float(state.get("seconds", 0.0)), window


def save_run(
    task: TrainTask,
    cfg: TrainConfig,
    parts: RunParts,
    ctx: DistContext,
    step: int,
    seconds: float,
    precision: Precision,
    window: dict[str, list[torch.Tensor]],
) -> Path | None:
    """Checkpoint after ``step`` steps (rank 0 writes; every rank contributes its RNG state).

    The open metrics window (steps since the last log record, averaged over ranks) is saved too, so
    the first record after a resume equals the uninterrupted run's.
    """
    rngs = gather_objects(capture_rng_state(), ctx)
    open_window = {k: all_reduce_mean(torch.stack(window[k]), ctx).cpu() for k in sorted(window)}
    model_state = full_model_state(parts.model)  # collectives when sharded: every rank takes part
    optimizer_state = full_optimizer_state(parts.model, parts.optimizer)
    path = None
    if ctx.is_main:
        weights = {"model": model_state}
        if parts.ema is not None:
            weights["ema"] = parts.ema.state_dict()
        for name, module in parts.extras.items():
            weights[f"extra-{name}"] = module.state_dict()
        config = {
            "run": cfg.to_dict(),
            "task": task.export_config(),
            "task_name": task.name,
            "world_size": ctx.world_size,
            "precision": precision.name,
        }
        state = {
            "step": step,
            "seconds": seconds,
            "world_size": ctx.world_size,
            "rng": rngs,
            "strategy": "fsdp" if is_sharded(parts.model) else "ddp",
            "optimizer": optimizer_state,
            "scheduler": parts.scheduler.state_dict(),
            "scaler": parts.scaler.state_dict(),
            "ema_updates": parts.ema.num_updates if parts.ema is not None else 0,
            "window": open_window,
            "extra_optimizers": {n: o.state_dict() for n, o in parts.extra_optimizers.items()},
            "extra_schedulers": {n: s.state_dict() for n, s in parts.extra_schedulers.items()},
        }
        path = save_checkpoint(cfg.run_dir, step, weights, config, state, cfg.keep_last)
    barrier(ctx)
    return path
