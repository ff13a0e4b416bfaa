"""Process-group setup and the few collectives the training loop needs.

The same code runs as one process or under ``torchrun`` (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``MASTER_ADDR``/``MASTER_PORT`` in the environment, as torchrun sets them). Backend: ``nccl`` when the
device is a GPU, ``gloo`` on CPU. Every collective here is a no-op when ``world_size == 1``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from ctvl.errors import ConfigError


@dataclass(frozen=True)
class DistContext:
    """Where this process sits in the job."""

    rank: int = 0  # global rank
    world_size: int = 1  # number of processes
    local_rank: int = 0  # rank on this machine (selects the GPU)
    device: torch.device = torch.device("cpu")  # the device this rank trains on
    backend: str | None = None  # "gloo" | "nccl" | None (single process)
    owns_group: bool = False  # True when init_distributed created the process group

    @property
    def is_main(self) -> bool:
        """Rank 0: the one that writes checkpoints, logs and the progress bar."""
        return self.rank == 0

    @property
    def is_distributed(self) -> bool:
        """More than one process."""
        return self.world_size > 1


def env_ranks() -> tuple[int, int, int]:
    """(rank, world_size, local_rank) from torchrun's environment variables (0, 1, 0 when absent)."""
    try:
        rank = int(os.environ.get("RANK", "0"))
        world = int(os.environ.get("WORLD_SIZE", "1"))
        local = int(os.environ.get("LOCAL_RANK", str(rank)))
    except ValueError:
        raise ConfigError("RANK/WORLD_SIZE/LOCAL_RANK must be integers (as torchrun sets them)") from None
    if world < 1 or not 0 <= rank < world:
        raise ConfigError(f"inconsistent torchrun environment: RANK={rank}, WORLD_SIZE={world}")
    return rank, world, local


def resolve_device(preference: str, local_rank: int = 0) -> torch.device:
    """Pick the training device: ``auto`` -> ``cuda:LOCAL_RANK`` if a GPU is visible, else ``cpu``.

    Raises:
        ConfigError: ``cuda`` requested but no GPU (or not enough GPUs for the local rank).
    """
    if preference == "cpu" or (preference == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise ConfigError("device 'cuda' was requested but no CUDA GPU is visible; set device=cpu or device=auto")
    count = torch.cuda.device_count()
    if local_rank >= count:
        raise ConfigError(f"LOCAL_RANK {local_rank} needs GPU {local_rank} but only {count} GPU(s) are visible")
    torch.cuda.set_device(local_rank)
    return torch.device("cuda", local_rank)


def init_distributed(device_preference: str = "auto") -> DistContext:
    """Join the torchrun process group if there is one and choose this rank's device.

    Reuses an already initialised default group (e.g. from a test harness) without taking ownership.

    Args:
        device_preference: ``auto`` | ``cpu`` | ``cuda`` (the config's ``device``).
    """
    rank, world, local = env_ranks()
    device = resolve_device(device_preference, local)
    if world == 1 and not dist.is_initialized():
        return DistContext(device=device)
    backend = "nccl" if device.type == "cuda" else "gloo"
    owns = False
    if not dist.is_initialized():
        kwargs = {"device_id": device} if device.type == "cuda" else {}  # binds NCCL to this rank's GPU
        dist.init_process_group(backend=backend, init_method="env://", rank=rank, world_size=world, **kwargs)
        owns = True
    else:
        backend = dist.get_backend()
        rank, world = dist.get_rank(), dist.get_world_size()
    return DistContext(rank=rank, world_size=world, local_rank=local, device=device, backend=backend, owns_group=owns)


def shutdown(ctx: DistContext) -> None:
    """Destroy the process group if :func:`init_distributed` created it."""
    if ctx.owns_group and dist.is_initialized():
        dist.destroy_process_group()


def unwrap(model: nn.Module) -> nn.Module:
    """The plain module inside a ``DistributedDataParallel`` wrapper (or the module itself)."""
    return model.module if isinstance(model, DistributedDataParallel) else model


def barrier(ctx: DistContext) -> None:
    """Wait for every rank."""
    if ctx.is_distributed:
        dist.barrier()


def all_reduce_mean(values: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    """Mean of a tensor over ranks (returns a new tensor; the input is not modified)."""
    out = values.detach().clone()
    if ctx.is_distributed:
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
        out /= ctx.world_size
    return out


def all_reduce_sum(values: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    """Sum of a tensor over ranks (a new tensor; the input is not modified)."""
    out = values.detach().clone()
    if ctx.is_distributed:
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out


def gather_objects(obj: Any, ctx: DistContext) -> list[Any]:
    """Every rank's picklable ``obj``, indexed by rank (on every rank)."""
    if not ctx.is_distributed:
        return [obj]
    out: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj: Any, ctx: DistContext) -> Any:
    """Rank 0's picklable ``obj`` on every rank."""
    if not ctx.is_distributed:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


@torch.no_grad()
def broadcast_module(module: nn.Module, ctx: DistContext) -> None:
    """Copy rank 0's parameters and buffers into ``module`` on every rank (as DDP does at start)."""
    if not ctx.is_distributed:
        return
    for tensor in list(module.parameters()) + list(module.buffers()):
        dist.broadcast(tensor.data, src=0)


def average_gradients(params: Iterable[nn.Parameter], ctx: DistContext) -> None:
    """All-reduce (mean) the ``.grad`` of ``params`` over ranks; missing grads count as zeros.

    Used for the task's extra modules (e.g. a discriminator), which are not wrapped in DDP so the loop
    can freeze them while the main model trains.
    """
    if not ctx.is_distributed:
        return
    for param in params:
        if param.grad is None:
            param.grad = torch.zeros_like(param)
        dist.all_reduce(param.grad, op=dist.ReduceOp.SUM)
        param.grad /= ctx.world_size
