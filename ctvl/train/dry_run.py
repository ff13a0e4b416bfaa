"""``--dry-run``: what a training config would put on each GPU, without data, weights or a GPU.

The task builds its model on PyTorch's ``meta`` device (shapes only, no memory, no data read:
:meth:`~ctvl.train.task.TrainTask.dry_model`), and this module counts total and trainable parameters and
estimates the memory per GPU of the run's strategy and world size:

* **weights** fp32 master copies, 4 B per parameter;
* **gradients** 4 B per trainable parameter; DDP also keeps its fp32 communication buckets (another 4 B);
* **AdamW** two fp32 moments, 8 B per trainable parameter;
* with ``strategy: fsdp`` those three are divided by the world size, plus the largest block gathered
  whole (twice: FSDP2 prefetches the next block) in the compute dtype, and its unsharded gradients;
* **activations** from the task when it can say (:meth:`~ctvl.train.task.TrainTask.activation_bytes`: the
  report LM gives an analytic transformer estimate); otherwise reported as not estimated.

Not counted: the CUDA context (~0.5-1 GB), allocator fragmentation and temporary buffers, so leave
10-20 % headroom. The numbers are an estimate to choose a strategy with, not a measurement.
"""

from __future__ import annotations

from typing import Any

import torch

from ctvl.errors import ConfigError
from ctvl.train.config import TrainConfig, accumulation_steps, load_config
from ctvl.train.task import TrainTask

GIB = 1024**3


def _numel(params: Any) -> int:
    return sum(int(p.numel()) for p in params)


def compute_bytes(cfg: TrainConfig) -> int:
    """Bytes per value of the forward pass: 2 in bf16/fp16 (``auto`` means bf16 on a GPU), 4 in fp32."""
    return 4 if cfg.precision == "fp32" or cfg.device == "cpu" else 2


def estimate(task: TrainTask, cfg: TrainConfig, world_size: int) -> dict[str, Any]:
    """Parameters and per-GPU memory of ``cfg`` on ``world_size`` GPUs (a JSON-ready mapping).

    Raises:
        ConfigError: the config is invalid, or its batch does not split over ``world_size`` ranks.
    """
    micro, accum = accumulation_steps(cfg, world_size)
    with torch.device("meta"):
        model = task.dry_model(cfg)
    trainable_params = list(task.trainable_parameters(model))
    total, trainable = _numel(model.parameters()), _numel(trainable_params)
    keep = {id(p) for p in trainable_params}
    sharded = cfg.strategy == "fsdp" and world_size > 1
    state = {"weights": 4 * total, "gradients": 4 * trainable, "adamw": 8 * trainable}
    if sharded:
        state = {k: v / world_size for k, v in state.items()}
        blocks = task.blocks(model)
        largest = max(blocks, key=lambda b: _numel(b.parameters()), default=None)
        if largest is not None:
            size = _numel(largest.parameters())
            state["gathered_blocks"] = 2 * size * compute_bytes(cfg)
            state["block_gradients"] = 4 * sum(int(p.numel()) for p in largest.parameters() if id(p) in keep)
    elif world_size > 1:
        state["ddp_buckets"] = 4 * trainable
    activations = task.activation_bytes(cfg, model, micro)
    parts = {**state, **({"activations": activations} if activations is not None else {})}
    per_gpu = sum(parts.values())
    return {
        "strategy": cfg.strategy if world_size > 1 else f"{cfg.strategy} (one process: nothing sharded)",
        "world_size": world_size,
        "micro_batch_size": micro,
        "accumulation_steps": accum,
        "activation_checkpointing": cfg.activation_checkpointing,
        "parameters": {"total": total, "trainable": trainable, "frozen": total - trainable},
        "memory_gib": {k: round(v / GIB, 3) for k, v in parts.items()},
        "per_gpu_gib": round(per_gpu / GIB, 2),
        "activations_estimated": activations is not None,
        "notes": list(getattr(task, "dry_notes", [])),
        "note": "estimate; excludes the CUDA context, allocator fragmentation and temporaries (leave 10-20 %)",
    }


def format_estimate(result: dict[str, Any], config: str) -> str:
    """A few readable lines of :func:`estimate`'s result."""
    p = result["parameters"]
    lines = [
        f"{config}: {p['total'] / 1e6:,.1f} M parameters, {p['trainable'] / 1e6:,.2f} M trainable "
        f"({100 * p['trainable'] / max(p['total'], 1):.2f} %)",
        f"strategy {result['strategy']}, {result['world_size']} GPU(s), micro-batch {result['micro_batch_size']} x "
        f"{result['accumulation_steps']} accumulation, activation checkpointing "
        f"{'on' if result['activation_checkpointing'] else 'off'}",
        "memory per GPU (GiB): " + ", ".join(f"{k} {v:,.2f}" for k, v in result["memory_gib"].items()),
        f"total per GPU: {result['per_gpu_gib']:,.2f} GiB"
        + ("" if result["activations_estimated"] else " + activations (not estimated for this model)"),
        *(f"note: {n}" for n in result["notes"]),
        f"({result['note']})",
    ]
    return "\n".join(lines)


def lm_activation_bytes(
    *,
    layers: int,
    hidden: int,
    kv_hidden: int,
    intermediate: int,
    vocab: int,
    tokens: int,
    batch: int,
    value_bytes: int,
    checkpointing: bool,
    lora_dropout: bool,
) -> int:
    """Analytic activation memory of one micro-batch through a Llama-style decoder (SDPA attention).

    Per layer the autograd graph keeps about ``tokens * batch * (6 h + 2 h_kv + 4 i)`` values (norm inputs,
    q/k/v, attention output, o-proj input, gate/up outputs, SiLU input, down-proj input; SDPA keeps no
    ``tokens^2`` matrix), plus ``5 h + i`` per token for the inputs LoRA dropout copies. With checkpointing
    only each layer's input stays (``h`` per token) and one layer is rebuilt at a time. The logits
    (``tokens * vocab``, and their fp32 copy for the loss) come on top: at 33k tokens they dominate.
    """
    per_token = 6 * hidden + 2 * kv_hidden + 4 * intermediate + (5 * hidden + intermediate if lora_dropout else 0)
    one_layer = tokens * batch * per_token * value_bytes
    kept = layers * tokens * batch * hidden * value_bytes + one_layer if checkpointing else layers * one_layer
    logits = tokens * batch * vocab * (value_bytes + 4)
    return int(kept + logits)


def dry_run(task: TrainTask, config_path: str, overrides: list[str], world_size: int) -> dict[str, Any]:
    """Load a YAML config (with ``key=value`` overrides) and :func:`estimate` it on ``world_size`` GPUs."""
    if world_size < 1:
        raise ConfigError(f"--gpus must be >= 1, got {world_size}")
    return {"config": str(config_path), **estimate(task, load_config(config_path, overrides), world_size)}
