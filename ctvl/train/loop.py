"""The training loop every ctvl model uses: :func:`train` and the entry point :func:`run_training`.

One code path for one process and for ``torchrun`` DDP (ranks from the environment; gloo on CPU,
nccl on GPU). Per optimiser step, each rank runs ``accum`` micro-batches (DDP gradient sync only on
the last, via ``no_sync``), then: unscale (fp16) -> clip -> AdamW step -> warm-up/cosine schedule ->
EMA update; extra modules (a discriminator) get their own gradient average and optimiser step.
Rank 0 writes ``metrics.jsonl``, the progress bar and atomic checkpoints; ``resume=True`` restores
weights, optimiser, scheduler, scaler, EMA, every rank's RNG and the data position, so a resumed run
ends with the same weights as an uninterrupted one (same world size; another world size is refused).

``strategy: fsdp`` shards the model with FSDP2 instead of wrapping it in DDP (each of the task's
:meth:`~ctvl.train.task.TrainTask.blocks` one unit; gradients reduce-scattered every micro-batch), and
``activation_checkpointing`` recomputes those blocks in backward (:mod:`ctvl.train.sharding`). Checkpoints
hold full, plain-keyed weights either way.

Multi-machine runs need the run folder on a shared filesystem (every rank reads the checkpoint).
"""

from __future__ import annotations

import inspect
import itertools
import math
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import ExitStack, contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from ctvl.errors import ConfigError
from ctvl.train.checkpoint import (
    latest_checkpoint,
    load_checkpoint,
    recover_checkpoints,
)
from ctvl.train.config import TrainConfig, accumulation_steps, load_config
from ctvl.train.distributed import (
    DistContext,
    all_reduce_mean,
    average_gradients,
    broadcast_module,
    broadcast_object,
    init_distributed,
    shutdown,
)
from ctvl.train.ema import EMA
from ctvl.train.metrics_log import MetricsLog, ProgressBar
from ctvl.train.precision import Precision, resolve_precision
from ctvl.train.resume import RunParts, restore_run, save_run
from ctvl.train.rng import derive_seed, seed_everything
from ctvl.train.schedule import build_scheduler
from ctvl.train.sharding import (
    enable_activation_checkpointing,
    is_sharded,
    local_norm,
    shard_model,
)
from ctvl.train.task import TrainTask, to_device


@dataclass
class TrainResult:
    """What a finished :func:`train` call reports."""

    run_dir: Path  # folder with checkpoints/ and metrics.jsonl
    step: int  # completed optimiser steps (cfg.steps)
    start_step: int  # step the run started from (0, or the checkpoint it resumed)
    loss: float | None  # mean loss of the last logged window (None if no step ran)
    checkpoint: Path | None  # newest checkpoint folder
    seconds: float  # training time, including time before a resume
    metrics_path: Path  # the JSONL log
    world_size: int  # number of processes
    precision: str  # precision actually used: fp32 | bf16 | fp16
    device: str  # this rank's device


def run_training(
    task: TrainTask, config_path: str | Path, overrides: Sequence[str] = (), resume: bool = False
) -> TrainResult:
    """Load a YAML config with ``key=value`` overrides and train (also under ``torchrun -m ctvl ...``).

    Raises:
        ConfigError: bad config, or an existing run without ``resume``.
    """
    return train(task, load_config(config_path, overrides), resume=resume)


def train(task: TrainTask, cfg: TrainConfig, resume: bool = False) -> TrainResult:
    """Train ``task`` as configured; single process or one rank of a torchrun job.

    Args:
        task: the model's :class:`~ctvl.train.task.TrainTask`.
        cfg: the run config.
        resume: continue from the newest checkpoint in ``cfg.run_dir`` (a fresh start if there is none).

    Raises:
        ConfigError: invalid batch split, the run folder already has checkpoints and ``resume`` is
            False, ``init_from`` weights that do not fit, or a loss that became NaN/inf.
    """
    ctx = init_distributed(cfg.device)
    try:
        return _train(task, cfg, resume, ctx)
    finally:
        shutdown(ctx)


def _train(task: TrainTask, cfg: TrainConfig, resume: bool, ctx: DistContext) -> TrainResult:
    _, accum = accumulation_steps(cfg, ctx.world_size)
    precision, note = resolve_precision(cfg.precision, ctx.device)
    run_dir = cfg.run_dir
    restored = recover_checkpoints(run_dir) if ctx.is_main else []  # a save killed mid-swap: the old one returns
    found = latest_checkpoint(run_dir) if ctx.is_main else None
    found = broadcast_object(None if found is None else str(found), ctx)
    if found is not None and not resume:
        raise ConfigError(
            f"run folder {run_dir} already has checkpoints; pass --resume to continue it,"
            " or set output_dir/run_name to start a new run"
        )
    ckpt = Path(found) if (found is not None and resume) else None

    parts = _build(task, cfg, ctx, precision, init=ckpt is None)
    start, elapsed = 0, 0.0
    window: dict[str, list[torch.Tensor]] = {}  # per-step metric values since the last log record
    if ckpt is not None:
        start, elapsed, window = restore_run(parts, ckpt, ctx)
        if start > cfg.steps:
            raise ConfigError(
                f"the newest checkpoint {ckpt} is at step {start}, past steps={cfg.steps};"
                " raise steps or start a new run"
            )
    else:
        seed_everything(derive_seed(cfg.seed, ctx.rank))  # training-time randomness differs per rank
    batches = _batch_stream(task, cfg, ctx, start * accum)

    log = MetricsLog(path=run_dir / "metrics.jsonl", enabled=ctx.is_main, resume_step=start if ckpt else None)
    last_loss: float | None = None
    newest = ckpt
    began, window_began = time.perf_counter(), time.perf_counter()
    window_steps = 0  # steps timed by this process in the current window
    try:
        with ProgressBar(total=cfg.steps, start=start, description=cfg.run_name, enabled=ctx.is_main) as bar:
            single = (
                "strategy fsdp with one process: nothing to shard, the model trains whole"
                if cfg.strategy == "fsdp" and not ctx.is_distributed
                else None
            )
            notes = [
                note,
                single,
                *(f"restored {p} (its re-save was interrupted)" for p in restored),
                f"resumed from {ckpt}" if ckpt else None,
            ]
            for msg in filter(None, notes):
                bar.note(msg)
            for step in range(start, cfg.steps):
                lr = float(parts.optimizer.param_groups[0]["lr"])  # the lr this step uses
                values = _train_step(task, cfg, parts, precision, batches, step, accum, ctx)
                done, window_steps = step + 1, window_steps + 1
                _check_finite(values, done, run_dir, ctx)  # every step: a diverged model is never checkpointed
                for key, value in values.items():
                    window.setdefault(key, []).append(value)
                if done % cfg.log_every == 0 or done == cfg.steps:
                    now = time.perf_counter()
                    record = _reduce_window(window, ctx)
                    last_loss = record.pop("loss")
                    log.write(
                        {
                            "step": done,
                            "loss": last_loss,
                            "lr": lr,
                            "seconds": elapsed + now - began,
                            "step_seconds": (now - window_began) / window_steps,
                            "metrics": record,
                        }
                    )
                    bar.update(done, f"loss {last_loss:.4g}  lr {lr:.3g}")
                    window, window_began, window_steps = {}, now, 0
                else:
                    bar.update(done)
                if (cfg.checkpoint_every and done % cfg.checkpoint_every == 0) or done == cfg.steps:
                    seconds = elapsed + time.perf_counter() - began
                    newest = save_run(task, cfg, parts, ctx, done, seconds, precision, window)
    finally:
        log.close()
    return TrainResult(
        run_dir=run_dir,
        step=cfg.steps,
        start_step=start,
        loss=last_loss,
        checkpoint=newest if newest is not None else latest_checkpoint(run_dir),
        seconds=elapsed + time.perf_counter() - began,
        metrics_path=run_dir / "metrics.jsonl",
        world_size=ctx.world_size,
        precision=precision.name,
        device=str(ctx.device),
    )


def _build(task: TrainTask, cfg: TrainConfig, ctx: DistContext, precision: Precision, init: bool) -> RunParts:
    """Model (seeded identically on every rank), optional init weights, extras, EMA, optimisers."""
    seed_everything(cfg.seed)
    model = task.build_model(cfg)
    if init and cfg.init_from:
        state, _ = load_checkpoint(cfg.init_from, weights="model")
        try:
            task.load_initial_weights(model, state)
        except RuntimeError as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ConfigError(f"init_from weights do not fit the model: {first}", path=cfg.init_from) from None
    model.to(ctx.device)
    trainable = list(task.trainable_parameters(model))
    if not trainable:
        raise ConfigError("the task returned no trainable parameters; nothing to train")
    keep = {id(p) for p in trainable}
    for p in model.parameters():
        p.requires_grad_(id(p) in keep)
    blocks = task.blocks(model) if (cfg.activation_checkpointing or cfg.strategy == "fsdp") else []
    if cfg.activation_checkpointing:
        enable_activation_checkpointing(blocks)
    if cfg.strategy == "fsdp" and ctx.is_distributed:
        names = [name for name, p in model.named_parameters() if id(p) in keep]
        shard_model(model, blocks, ctx, precision)
        by_name = dict(model.named_parameters())  # sharded: the parameters are new (DTensor) objects
        trainable = [by_name[name] for name in names]
    extras = dict(task.extra_modules(cfg, model))
    for module in extras.values():
        module.to(ctx.device)
        broadcast_module(module, ctx)
    ema = EMA(model=model, decay=cfg.ema_decay) if cfg.ema_decay else None
    decay = [p for p in trainable if p.ndim >= 2]  # weights decay; biases and norm gains do not
    no_decay = [p for p in trainable if p.ndim < 2]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    optimizer = torch.optim.AdamW([g for g in groups if g["params"]], lr=cfg.lr, betas=tuple(cfg.betas))

    def schedule(opt: torch.optim.Optimizer) -> torch.optim.lr_scheduler.LambdaLR:
        floor = cfg.min_lr * float(opt.param_groups[0]["lr"]) / cfg.lr
        return build_scheduler(opt, warmup_steps=cfg.warmup_steps, total_steps=cfg.steps, min_lr=floor)

    extra_optimizers = {name: task.extra_optimizer(name, m, cfg) for name, m in extras.items()}
    wrapped: nn.Module = model
    if ctx.is_distributed and not is_sharded(model):
        wrapped = DistributedDataParallel(
            model,
            device_ids=[ctx.device.index] if ctx.device.type == "cuda" else None,
            find_unused_parameters=task.find_unused_parameters,
        )
    return RunParts(
        model=model,
        wrapped=wrapped,
        trainable=trainable,
        optimizer=optimizer,
        scheduler=schedule(optimizer),
        scaler=torch.amp.GradScaler(ctx.device.type, enabled=precision.use_scaler),
        ema=ema,
        extras=extras,
        extra_optimizers=extra_optimizers,
        extra_schedulers={name: schedule(opt) for name, opt in extra_optimizers.items()},
    )


def _batch_stream(task: TrainTask, cfg: TrainConfig, ctx: DistContext, start: int) -> Iterator[Any]:
    """This rank's micro-batches from index ``start`` (skipping if the task cannot start there itself)."""
    if "start" in inspect.signature(task.batches).parameters:
        return iter(task.batches(cfg, ctx.rank, ctx.world_size, cfg.seed, start=start))
    return itertools.islice(iter(task.batches(cfg, ctx.rank, ctx.world_size, cfg.seed)), start, None)


@contextmanager
def _frozen(modules: Iterable[nn.Module]) -> Iterator[None]:
    """Temporarily stop gradients into ``modules`` (extras, while the model's loss runs)."""
    params = [p for m in modules for p in m.parameters() if p.requires_grad]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(True)


def _scalar(key: str, value: Any) -> torch.Tensor:
    t = value.detach() if isinstance(value, torch.Tensor) else torch.tensor(float(value))
    if t.numel() != 1:
        raise TypeError(f"metric '{key}' must be a scalar, got shape {tuple(t.shape)}")
    return t.reshape(()).float()


def _train_step(
    task: TrainTask,
    cfg: TrainConfig,
    parts: RunParts,
    precision: Precision,
    batches: Iterator[Any],
    step: int,
    accum: int,
    ctx: DistContext,
) -> dict[str, torch.Tensor]:
    """One optimiser step over ``accum`` micro-batches; returns this rank's step-mean metrics."""
    sums: dict[str, torch.Tensor] = {}
    ran: set[str] = set()
    scaler = parts.scaler

    def add(key: str, value: Any) -> None:
        sums[key] = sums.get(key, 0.0) + _scalar(key, value).to(ctx.device) / accum

    step_batches = [next(batches) for _ in range(accum)] if task.step_hooks else None
    if step_batches is not None:
        with precision.autocast():  # statistics under the same autocast as the loss
            task.begin_step(parts.wrapped, step_batches, step, ctx)
    for micro in range(accum):
        batch = to_device(step_batches[micro] if step_batches is not None else next(batches), ctx.device)
        sync = micro == accum - 1 or not isinstance(parts.wrapped, DistributedDataParallel)
        with ExitStack() as stack:
            stack.enter_context(nullcontext() if sync else parts.wrapped.no_sync())
            stack.enter_context(_frozen(parts.extras.values()))
            with precision.autocast():
                loss, metrics = task.loss(parts.wrapped, batch, step)
            scaler.scale(loss / accum).backward()
        add("loss", loss)
        for key, value in metrics.items():
            add(key, value)
        for name, module in parts.extras.items():
            with precision.autocast():
                out = task.extra_loss(name, module, batch, step)
            if out is None:
                continue
            extra_loss, extra_metrics = out
            scaler.scale(extra_loss / accum).backward()
            ran.add(name)
            add(f"{name}/loss", extra_loss)
            for key, value in extra_metrics.items():
                add(f"{name}/{key}", value)

    scaler.unscale_(parts.optimizer)
    if cfg.grad_clip > 0:
        sums["grad_norm"] = local_norm(torch.nn.utils.clip_grad_norm_(parts.trainable, cfg.grad_clip))
    scaler.step(parts.optimizer)
    parts.optimizer.zero_grad(set_to_none=True)
    for name in sorted(ran):
        params = [p for p in parts.extras[name].parameters() if p.requires_grad]
        average_gradients(params, ctx)
        optimizer = parts.extra_optimizers[name]
        scaler.unscale_(optimizer)
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        scaler.step(optimizer)
        optimizer.zero_grad(set_to_none=True)
    scaler.update()
    parts.scheduler.step()
    for scheduler in parts.extra_schedulers.values():
        scheduler.step()
    if task.step_hooks:
        task.end_step(parts.wrapped, step, ctx)
    if parts.ema is not None:
        parts.ema.update(parts.model)
    return sums


def _check_finite(values: dict[str, torch.Tensor], step: int, run_dir: Path, ctx: DistContext) -> None:
    """Stop (on every rank alike) when this step's loss, or an extra module's, is NaN or infinite.

    The losses are averaged over ranks first (a NaN anywhere makes the mean NaN), so all ranks raise
    together instead of leaving the others waiting in a collective.
    """
    keys = [k for k in sorted(values) if k == "loss" or k.endswith("/loss")]
    means = all_reduce_mean(torch.stack([values[k].float() for k in keys]), ctx).tolist()
    for key, value in zip(keys, means, strict=True):
        if not math.isfinite(value):
            what = "loss" if key == "loss" else f"{key[: -len('/loss')]} loss"
            raise ConfigError(
                f"training diverged: {what} is {value} at step {step} of run {run_dir};"
                " no checkpoint was written for it; lower lr or set grad_clip"
            )


def _reduce_window(window: dict[str, list[torch.Tensor]], ctx: DistContext) -> dict[str, float]:
    """Mean of each metric over the window's steps, then over ranks (a collective: every rank calls it)."""
    keys = sorted(window)
    means = torch.stack([torch.stack(window[k]).mean() for k in keys])
    values = all_reduce_mean(means, ctx).tolist()
    return dict(zip(keys, values, strict=True))
