"""Learning-rate schedule: linear warm-up, then cosine decay to a floor.

Written as a plain function driven by :class:`torch.optim.lr_scheduler.LambdaLR` (which owns the
state, ``state_dict()`` and resume). Why not a built-in: torch's ``CosineAnnealingLR`` has no warm-up
and chaining it with ``LinearLR`` through ``SequentialLR`` cannot start from an exact fraction, and
``transformers``' schedules start warm-up at lr = 0 (a wasted step) and cost a heavy import. The
formula is five lines and tested value by value.

Step ``s`` is 0-based: the learning rate used for the (s+1)-th optimiser step.
"""

from __future__ import annotations

import functools
import math

import torch


def lr_at(step: int, *, base_lr: float, warmup_steps: int, total_steps: int, min_lr: float = 0.0) -> float:
    """Learning rate of optimiser step ``step`` (0-based).

    Warm-up: ``base_lr * (step + 1) / warmup_steps`` for ``step < warmup_steps`` (so the last warm-up
    step uses exactly ``base_lr``). Then cosine from ``base_lr`` (at ``step == warmup_steps``) towards
    ``min_lr`` (reached at ``step == total_steps``, i.e. just after the last step).

    Args:
        step: optimiser step index, 0-based.
        base_lr: peak learning rate.
        warmup_steps: number of warm-up steps (0 = none).
        total_steps: total optimiser steps of the run.
        min_lr: floor of the cosine.

    Returns:
        The learning rate (a float).
    """
    if step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    decay_steps = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / decay_steps)
    return min_lr + 0.5 * (base_lr - min_lr) * (1.0 + math.cos(math.pi * progress))


def _factor(step: int, *, base_lr: float, warmup_steps: int, total_steps: int, min_lr: float) -> float:
    """LambdaLR multiplier: lr_at / base_lr (a module-level function so schedulers pickle)."""
    return lr_at(step, base_lr=base_lr, warmup_steps=warmup_steps, total_steps=total_steps, min_lr=min_lr) / base_lr


def build_scheduler(
    optimizer: torch.optim.Optimizer, *, warmup_steps: int, total_steps: int, min_lr: float
) -> torch.optim.lr_scheduler.LambdaLR:
    """A LambdaLR that sets each param group's lr to ``lr_at(step)`` scaled to the group's initial lr.

    The optimiser's param groups must hold the peak lr when this is called. ``min_lr`` is taken
    relative to the first group's lr (groups with other peak lrs get the same relative floor).

    Args:
        optimizer: the optimiser to drive; call ``scheduler.step()`` after each ``optimizer.step()``.
        warmup_steps: linear warm-up steps.
        total_steps: total optimiser steps.
        min_lr: absolute floor for the first param group.
    """
    base_lr = float(optimizer.param_groups[0]["lr"])
    fn = functools.partial(_factor, base_lr=base_lr, warmup_steps=warmup_steps, total_steps=total_steps, min_lr=min_lr)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda=fn)


def refresh_lr(scheduler: torch.optim.lr_scheduler.LambdaLR) -> None:
    """Re-evaluate the current lr after ``load_state_dict`` (the restored lr belongs to the old schedule).

    Needed when a run is resumed with a different ``steps``: the optimiser state carries the lr the old
    schedule chose for the next step; this recomputes it with the new one (identical when unchanged).
    """
    for group, base, fn in zip(scheduler.optimizer.param_groups, scheduler.base_lrs, scheduler.lr_lambdas, strict=True):
        group["lr"] = base * fn(scheduler.last_epoch)
