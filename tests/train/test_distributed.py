"""Tests for ctvl.train.distributed: torchrun environment, and 2-process DDP (gloo) == single process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from ctvl.errors import ConfigError
from ctvl.train import list_checkpoints, read_metrics, run_training
from ctvl.train.checkpoint import read_checkpoint
from ctvl.train.distributed import env_ranks, init_distributed, resolve_device, shutdown, unwrap
from tests.train.tiny_task import TinyTask

REPO = Path(__file__).resolve().parents[2]


def test_env_ranks(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(var, raising=False)
    assert env_ranks() == (0, 1, 0)
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert env_ranks() == (3, 4, 1)
    monkeypatch.setenv("RANK", "4")
    with pytest.raises(ConfigError, match="inconsistent torchrun environment"):
        env_ranks()
    monkeypatch.setenv("RANK", "x")
    with pytest.raises(ConfigError, match="must be integers"):
        env_ranks()


def test_single_process_context(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    ctx = init_distributed("cpu")
    assert (ctx.rank, ctx.world_size, ctx.backend, ctx.is_main, ctx.is_distributed) == (0, 1, None, True, False)
    assert ctx.device == torch.device("cpu")
    shutdown(ctx)  # nothing to tear down
    model = torch.nn.Linear(1, 1)
    assert unwrap(model) is model


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU error")
def test_cuda_request_without_gpu() -> None:
    with pytest.raises(ConfigError, match="no CUDA GPU is visible"):
        resolve_device("cuda")


@pytest.mark.slow  # three Python processes import torch (about 12 s on two idle cores)
def test_two_process_ddp_equals_single_process(tmp_path: Path) -> None:
    config = {
        "steps": 6,
        "batch_size": 8,
        "micro_batch_size": 2,
        "lr": 1e-2,
        "warmup_steps": 2,
        "min_lr": 1e-4,
        "grad_clip": 0.5,
        "ema_decay": 0.8,
        "checkpoint_every": 3,
        "log_every": 2,
        "device": "cpu",
        "model": {"critic": True},
    }  # 2 ranks x 2 micro-steps x 2 = 8 = 1 rank x 4 micro-steps x 2
    path = tmp_path / "ddp.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    ddp_dir, single_dir = tmp_path / "ddp", tmp_path / "single"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(var, None)
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "tests.train.tiny_task",
        "--config",
        str(path),
        f"output_dir={ddp_dir}",
    ]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert proc.stdout.count("done step=6 start=0 world=2") == 2  # both ranks finished

    single = run_training(TinyTask(), path, [f"output_dir={single_dir}"])
    assert single.world_size == 1
    ddp_parts, ddp_config, ddp_state = read_checkpoint(list_checkpoints(ddp_dir)[-1][1])
    one_parts, _, _ = read_checkpoint(list_checkpoints(single_dir)[-1][1])
    assert set(ddp_parts) == {"model", "ema", "extra-critic"} == set(one_parts)
    for part in ddp_parts:  # model, EMA and the extra module's separately averaged gradients
        for key in one_parts[part]:
            torch.testing.assert_close(ddp_parts[part][key], one_parts[part][key], rtol=1e-5, atol=1e-6)
    assert ddp_config["world_size"] == 2 and len(ddp_state["rng"]) == 2  # one RNG state per rank
    ddp_log, one_log = read_metrics(ddp_dir / "metrics.jsonl"), read_metrics(single.metrics_path)
    assert [r["step"] for r in ddp_log] == [2, 4, 6]  # rank 0 alone writes the log
    assert [r["loss"] for r in ddp_log] == pytest.approx([r["loss"] for r in one_log], rel=1e-5)
    assert json.loads((list_checkpoints(ddp_dir)[-1][1] / "config.json").read_text())["step"] == 6
