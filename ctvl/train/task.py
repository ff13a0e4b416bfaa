"""The interface a model implements to be trained by :func:`ctvl.train.train`.

A task owns everything model-specific: how to build the network from ``cfg.model``, which
parameters train, where batches come from (``cfg.data``), the loss, optional extra modules with their
own optimiser (a GAN discriminator), and what config an inference user needs (e.g. the preprocessing
spec). The loop owns everything generic: devices, DDP, accumulation, precision, optimiser, schedule,
EMA, logging, checkpoints and resume.

Data contract: ``batches`` yields this rank's **micro-batches** (``cfg`` micro-batch size) forever, and
is deterministic given ``(seed, rank, world_size, start)``. Global step ``s`` consumes micro-batches
``s * accum ... (s + 1) * accum - 1`` of every rank, so a resumed run asks for ``start = s * accum``.
:func:`sample_indices` maps a micro-batch to global sample indices such that one optimiser step sees the
same samples whatever the number of ranks and accumulation steps; use it and DDP training equals
single-process training with the same global batch.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from typing import Any, ClassVar

import torch
from torch import nn

from ctvl.train.config import TrainConfig, accumulation_steps

Metrics = dict[str, "float | torch.Tensor"]


class TrainTask(ABC):
    """Base class of every trainable ctvl model (tokenizer stages, report LM, generator, ...)."""

    name: ClassVar[str] = "task"  # stored in the checkpoint's config.json
    find_unused_parameters: ClassVar[bool] = False  # passed to DDP; True if some steps skip parameters
    step_hooks: ClassVar[bool] = False  # True: the loop calls begin_step (with the step's micro-batches) and end_step

    @abstractmethod
    def build_model(self, cfg: TrainConfig) -> nn.Module:
        """Build the network from ``cfg.model`` (on CPU; the loop moves it). Called after seeding."""

    def trainable_parameters(self, model: nn.Module) -> Iterable[nn.Parameter]:
        """Parameters the optimiser updates; the loop freezes every other parameter of ``model``.

        Default: all with ``requires_grad``. Stage 3 of the tokenizer returns only the decoder's.
        """
        return [p for p in model.parameters() if p.requires_grad]

    def dry_model(self, cfg: TrainConfig) -> nn.Module:
        """The model as configured without reading any data (``--dry-run`` builds it on the meta device).
        Default: :meth:`build_model`; tasks whose model depends on the data override it."""
        return self.build_model(cfg)

    def activation_bytes(self, cfg: TrainConfig, model: nn.Module, micro_batch: int) -> int | None:
        """Estimated activation memory of one micro-batch (``--dry-run``); None when the task cannot say."""
        return None

    def begin_step(self, model: nn.Module, micro_batches: list[Any], step: int, ctx: Any) -> None:
        """Before an optimiser step (only with ``step_hooks``): this rank's micro-batches of the step (on the
        CPU, as ``batches`` yields them) and the :class:`~ctvl.train.distributed.DistContext`, for statistics
        that must cover the whole step on every rank (the LFQ batch entropy)."""
        return None

    def end_step(self, model: nn.Module, step: int, ctx: Any) -> None:
        """After the optimiser steps of ``step`` (only with ``step_hooks``; every rank calls it)."""
        return None

    def blocks(self, model: nn.Module) -> list[nn.Module]:
        """The model's repeated blocks: FSDP shards each one (gathering one block's weights at a time) and
        activation checkpointing recomputes each one in backward. Default: none (FSDP shards the model as
        one unit; activation checkpointing is refused)."""
        return []

    @abstractmethod
    def batches(self, cfg: TrainConfig, rank: int, world_size: int, seed: int, start: int = 0) -> Iterator[Any]:
        """Infinite iterator of this rank's micro-batches, beginning at micro-batch index ``start``.

        A batch is any nest of dicts/lists/tuples of tensors (the loop moves tensors to the device).
        Must be deterministic given the arguments. An implementation without a ``start`` parameter
        is still accepted: the loop then skips ``start`` batches by iterating.
        """

    @abstractmethod
    def loss(self, model: nn.Module, batch: Any, step: int) -> tuple[torch.Tensor, Metrics]:
        """Forward one micro-batch and return ``(scalar loss, metrics)``.

        ``model`` may be wrapped in DDP: call it (``model(x)``) for the forward pass; reach attributes
        through :func:`ctvl.train.distributed.unwrap`. ``step`` is the 0-based optimiser step (for
        annealing). Metrics are scalars (floats or 0-d tensors), the same keys on every rank.
        Extra modules are frozen while this runs, so an adversarial term trains only the model.
        """

    def extra_modules(self, cfg: TrainConfig, model: nn.Module) -> dict[str, nn.Module]:
        """Modules trained beside the model with their own optimiser (e.g. ``{"disc": ...}``).

        Keep a reference to use them in :meth:`loss` / :meth:`extra_loss`; the loop moves them to the
        device in place, checkpoints them as ``extra-<name>.safetensors`` and averages their gradients
        over ranks (they are not DDP-wrapped, so they can be frozen freely). Default: none.
        """
        return {}

    def extra_optimizer(self, name: str, module: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
        """Optimiser of extra module ``name``. Default: AdamW with the run's lr/betas/weight decay.

        The loop drives it with the run's warm-up + cosine schedule, scaled to this optimiser's lr.
        """
        return torch.optim.AdamW(module.parameters(), lr=cfg.lr, betas=tuple(cfg.betas), weight_decay=cfg.weight_decay)

    def extra_loss(self, name: str, module: nn.Module, batch: Any, step: int) -> tuple[torch.Tensor, Metrics] | None:
        """Loss of extra module ``name`` for the micro-batch just used by :meth:`loss` (GAN step).

        Runs after the model's backward pass of the same micro-batch; must not back-propagate into
        the model (use outputs saved, detached, during :meth:`loss`). Return None to skip this
        module on this step (decide by ``step`` alone so every rank agrees). Default: None.
        """
        return None

    def load_initial_weights(self, model: nn.Module, state_dict: dict[str, torch.Tensor]) -> None:
        """Load ``cfg.init_from`` weights (previous curriculum stage). Default: strict load."""
        model.load_state_dict(state_dict)

    def export_config(self) -> dict[str, Any]:
        """Extra JSON stored in every checkpoint's ``config.json`` under ``"task"`` (e.g. preprocessing)."""
        return {}


def sample_indices(cfg: TrainConfig, rank: int, world_size: int, micro_index: int) -> range:
    """Global sample indices of this rank's micro-batch number ``micro_index``.

    Sample stream 0, 1, 2, ...: optimiser step ``s`` owns ``[s * B, (s + 1) * B)`` (B = global batch);
    rank ``r`` owns the ``r``-th contiguous slice of it and splits that into its accumulation micro-batches.

    Args:
        cfg: the run config (batch_size, micro_batch_size).
        rank: this process' rank.
        world_size: number of processes.
        micro_index: 0-based index of the micro-batch on this rank.

    Returns:
        A range of ``micro_batch_size`` sample indices.
    """
    micro, accum = accumulation_steps(cfg, world_size)
    step, within = divmod(micro_index, accum)
    first = step * cfg.batch_size + rank * micro * accum + within * micro
    return range(first, first + micro)


def to_device(batch: Any, device: torch.device) -> Any:
    """Move every tensor of a nest of dicts/lists/tuples to ``device`` (other leaves unchanged)."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, tuple) and hasattr(batch, "_fields"):  # named tuple
        return type(batch)(*(to_device(v, device) for v in batch))
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(v, device) for v in batch)
    return batch
