"""Memory engines of the training loop: activation checkpointing and FSDP2 sharding, and the checkpoint
state dicts that go with them.

Both are PyTorch's own: :func:`torch.utils.checkpoint.checkpoint` (non-reentrant) recomputes one block's
activations in backward, and :func:`torch.distributed.fsdp.fully_shard` (FSDP2) shards parameters,
gradients and AdamW states over the ranks, gathering one block's weights at a time. ctvl only decides
*which* modules are the units (the task's :meth:`~ctvl.train.task.TrainTask.blocks`) and keeps the
checkpoint format the same as an unsharded run's (full, plain-keyed state dicts on rank 0), so a bundle
exported from an FSDP run loads like any other.

Checkpointing patches the block's ``forward`` on the instance rather than wrapping the module, so parameter
names (and with them checkpoints, LoRA adapters and FSDP units) do not change.
"""

from __future__ import annotations

import functools
from typing import Any

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from ctvl.errors import ConfigError
from ctvl.train.distributed import DistContext
from ctvl.train.precision import Precision


def enable_activation_checkpointing(blocks: list[nn.Module]) -> int:
    """Recompute each block's forward in backward instead of keeping its activations.

    Args:
        blocks: the repeated units (e.g. transformer decoder layers); their inputs are kept, their inner
            activations are recomputed.

    Returns:
        The number of blocks checkpointed.

    Raises:
        ConfigError: no blocks (the task does not name any).
    """
    if not blocks:
        raise ConfigError("activation_checkpointing: this task names no blocks to checkpoint; set it to false")
    for block in blocks:
        if getattr(block, "_ctvl_checkpointed", False):
            continue
        inner = block.forward

        @functools.wraps(inner)
        def forward(*args: Any, _inner: Any = inner, _block: nn.Module = block, **kwargs: Any) -> Any:
            if not (_block.training and torch.is_grad_enabled()):
                return _inner(*args, **kwargs)  # inference: nothing to save, nothing to recompute
            return checkpoint(_inner, *args, use_reentrant=False, **kwargs)

        block.forward = forward  # type: ignore[method-assign]
        block._ctvl_checkpointed = True  # type: ignore[attr-defined]
    return len(blocks)


def shard_model(model: nn.Module, blocks: list[nn.Module], ctx: DistContext, precision: Precision) -> nn.Module:
    """Shard ``model`` in place with FSDP2: each block its own unit, then the rest as the root unit.

    With bf16 on a GPU the sharded fp32 master weights are gathered as bf16 for compute and gradients are
    reduced in fp32 (:class:`~torch.distributed.fsdp.MixedPrecisionPolicy`). Parameters become DTensors:
    fetch them again by name after this call.

    Args:
        model: the task's model, on its device, every rank initialised identically.
        blocks: units to shard separately (may be empty: one unit).
        ctx: the distributed context (world size >= 2).
        precision: the run's precision.
    """
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    policy = MixedPrecisionPolicy()
    if precision.name == "bf16" and ctx.device.type == "cuda":
        policy = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
    for block in blocks:
        fully_shard(block, mp_policy=policy)
    fully_shard(model, mp_policy=policy)
    return model


def is_sharded(model: nn.Module) -> bool:
    """Whether ``model`` was sharded by :func:`shard_model`."""
    from torch.distributed.fsdp import FSDPModule

    return isinstance(model, FSDPModule)


def _options(**kwargs: Any) -> Any:
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    return StateDictOptions(full_state_dict=True, **kwargs)


def full_model_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The whole model's state dict on the CPU, keyed as an unsharded model's (a collective when sharded:
    every rank calls it; the values are complete on rank 0)."""
    if not is_sharded(model):
        return model.state_dict()
    from torch.distributed.checkpoint.state_dict import get_model_state_dict

    return get_model_state_dict(model, options=_options(cpu_offload=True))


def load_full_model_state(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Load a full (plain-keyed) state dict into a sharded or unsharded model; every rank passes the same."""
    if not is_sharded(model):
        model.load_state_dict(state)
        return
    from torch.distributed.checkpoint.state_dict import set_model_state_dict

    set_model_state_dict(model, state, options=_options())


def full_optimizer_state(model: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """The optimiser state: ``optimizer.state_dict()`` unsharded, the full FQN-keyed state when sharded
    (a collective)."""
    if not is_sharded(model):
        return optimizer.state_dict()
    from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

    return get_optimizer_state_dict(model, optimizer, options=_options(cpu_offload=True))


def load_full_optimizer_state(model: nn.Module, optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> None:
    """Inverse of :func:`full_optimizer_state`."""
    if not is_sharded(model):
        optimizer.load_state_dict(state)
        return
    from torch.distributed.checkpoint.state_dict import set_optimizer_state_dict

    set_optimizer_state_dict(model, optimizer, state, options=_options())


def local_norm(total: torch.Tensor) -> torch.Tensor:
    """A gradient norm as a plain tensor (``clip_grad_norm_`` returns a DTensor over sharded gradients)."""
    full = getattr(total, "full_tensor", None)
    return (full() if callable(full) else total).detach().float()
