"""ctvl.train: one training loop for every ctvl model.

A model implements :class:`TrainTask` (build the network, yield batches, compute the loss); a YAML file
in ``configs/`` becomes a :class:`TrainConfig`; :func:`run_training` / :func:`train` run it in one
process or under ``torchrun`` DDP, with gradient accumulation, mixed precision on GPU, warm-up + cosine
LR, optional EMA, a JSONL metrics log, atomic safetensors checkpoints and exact ``resume``.
:func:`load_checkpoint` and :func:`save_bundle` serve inference.

Example::

    from ctvl.train import run_training
    result = run_training(MyTask(), "configs/phantom-cpu.yaml", ["steps=200"], resume=False)
    state_dict, config = load_checkpoint(result.run_dir)
"""

from ctvl.train.checkpoint import latest_checkpoint, list_checkpoints, load_checkpoint, save_bundle
from ctvl.train.config import TrainConfig, accumulation_steps, apply_overrides, load_config, parse_overrides
from ctvl.train.distributed import DistContext, unwrap
from ctvl.train.ema import EMA
from ctvl.train.loop import TrainResult, run_training, train
from ctvl.train.metrics_log import read_metrics
from ctvl.train.schedule import build_scheduler, lr_at
from ctvl.train.task import TrainTask, sample_indices, to_device

__all__ = [
    "EMA",
    "DistContext",
    "TrainConfig",
    "TrainResult",
    "TrainTask",
    "accumulation_steps",
    "apply_overrides",
    "build_scheduler",
    "latest_checkpoint",
    "list_checkpoints",
    "load_checkpoint",
    "load_config",
    "lr_at",
    "parse_overrides",
    "read_metrics",
    "run_training",
    "sample_indices",
    "save_bundle",
    "to_device",
    "train",
    "unwrap",
]
