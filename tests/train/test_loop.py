"""Tests for ctvl.train.loop: training, accumulation, resume (in-process crash and SIGKILL), init, errors."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from ctvl.errors import ConfigError
from ctvl.train import TrainConfig, list_checkpoints, load_checkpoint, read_metrics, run_training, train
from ctvl.train.checkpoint import read_checkpoint
from ctvl.train.schedule import lr_at
from tests.train.tiny_task import CrashForTest, NoStartTinyTask, TinyTask

REPO = Path(__file__).resolve().parents[2]


def make_cfg(run_dir: Path, **fields: Any) -> TrainConfig:
    base: dict[str, Any] = {
        "run_name": run_dir.name,
        "output_dir": str(run_dir),
        "steps": 6,
        "batch_size": 8,
        "micro_batch_size": 4,
        "lr": 1e-2,
        "warmup_steps": 2,
        "min_lr": 1e-4,
        "checkpoint_every": 3,
        "keep_last": 5,
        "log_every": 2,
        "device": "cpu",
    }
    base.update(fields)
    return TrainConfig.from_dict(base)


def final_weights(run_dir: Path) -> dict[str, dict[str, torch.Tensor]]:
    return read_checkpoint(list_checkpoints(run_dir)[-1][1])[0]


def assert_same_weights(a: dict[str, dict[str, torch.Tensor]], b: dict[str, dict[str, torch.Tensor]]) -> None:
    assert a.keys() == b.keys()
    for part in a:
        assert a[part].keys() == b[part].keys()
        for key in a[part]:
            torch.testing.assert_close(a[part][key], b[part][key], rtol=1e-5, atol=1e-6, msg=f"{part}/{key}")


def test_training_learns_logs_and_checkpoints(tmp_path: Path) -> None:
    run = tmp_path / "run"
    cfg = make_cfg(
        run,
        steps=40,
        lr=3e-2,
        log_every=10,
        checkpoint_every=20,
        keep_last=1,
        ema_decay=0.9,
        weight_decay=0.01,
        model={"critic": True},
    )
    result = train(TinyTask(), cfg)
    assert (result.step, result.start_step, result.world_size, result.precision) == (40, 0, 1, "fp32")
    assert result.checkpoint == run / "checkpoints" / "step-00000040"
    assert [s for s, _ in list_checkpoints(run)] == [40]  # keep_last=1
    records = read_metrics(result.metrics_path)
    assert [r["step"] for r in records] == [10, 20, 30, 40]
    assert set(records[0]["metrics"]) == {"mae", "adv", "grad_norm", "critic/loss", "critic/real"}
    assert records[-1]["loss"] < 0.5 * records[0]["loss"]  # it learns the teacher
    assert records[-1]["lr"] < records[0]["lr"] and records[-1]["seconds"] > 0
    assert result.loss == pytest.approx(records[-1]["loss"])
    files = sorted(p.name for p in result.checkpoint.iterdir())
    assert files == ["config.json", "ema.safetensors", "extra-critic.safetensors", "model.safetensors", "state.pt"]
    state_dict, config = load_checkpoint(run)
    assert config["task"] == TinyTask().export_config() and config["task_name"] == "tiny"
    assert config["run"]["steps"] == 40 and config["step"] == 40
    model = TinyTask().build_model(cfg)
    model.load_state_dict(state_dict)  # EMA weights load into the inference model


def test_gradient_accumulation_equals_big_batch(tmp_path: Path) -> None:
    big = train(TinyTask(), make_cfg(tmp_path / "big", micro_batch_size=8, grad_clip=0.5))
    small = train(TinyTask(), make_cfg(tmp_path / "small", micro_batch_size=2, grad_clip=0.5))  # 4 micro-steps
    assert_same_weights(final_weights(big.run_dir), final_weights(small.run_dir))
    assert read_metrics(big.metrics_path)[-1]["loss"] == pytest.approx(read_metrics(small.metrics_path)[-1]["loss"])


@pytest.mark.parametrize("task_cls", [TinyTask, NoStartTinyTask])
def test_resume_after_crash_equals_uninterrupted(tmp_path: Path, task_cls: type[TinyTask]) -> None:
    fields = {"steps": 8, "micro_batch_size": 4, "ema_decay": 0.8, "model": {"dropout": 0.3, "critic": True}}
    reference = train(task_cls(), make_cfg(tmp_path / "ref", **fields))
    run = tmp_path / "crash"
    with pytest.raises(CrashForTest):
        train(task_cls(), make_cfg(run, data={"crash_at_step": 5}, **fields))
    assert [s for s, _ in list_checkpoints(run)] == [3]
    assert [r["step"] for r in read_metrics(run / "metrics.jsonl")] == [2, 4]  # step 4 was not checkpointed
    resumed = train(task_cls(), make_cfg(run, **fields), resume=True)
    assert resumed.start_step == 3
    assert_same_weights(final_weights(reference.run_dir), final_weights(run))
    ref_log, new_log = read_metrics(reference.metrics_path), read_metrics(resumed.metrics_path)
    assert [r["step"] for r in new_log] == [2, 4, 6, 8]  # every step once
    assert [r["loss"] for r in new_log] == pytest.approx([r["loss"] for r in ref_log], rel=1e-5)


def test_existing_run_needs_resume_and_finished_run_is_kept(tmp_path: Path) -> None:
    cfg = make_cfg(tmp_path / "run", steps=3)
    train(TinyTask(), cfg)
    with pytest.raises(ConfigError, match="already has checkpoints; pass --resume"):
        train(TinyTask(), cfg)
    before = final_weights(cfg.run_dir)
    again = train(TinyTask(), cfg, resume=True)  # nothing left to do
    assert again.start_step == 3 and again.step == 3
    assert_same_weights(before, final_weights(cfg.run_dir))
    fresh = train(TinyTask(), make_cfg(tmp_path / "new", steps=2), resume=True)  # nothing to resume: fresh
    assert fresh.start_step == 0


def test_init_from_and_frozen_parameters(tmp_path: Path) -> None:
    first = train(TinyTask(), make_cfg(tmp_path / "stage1", steps=4))
    stage1 = load_checkpoint(first.run_dir, weights="model")[0]
    second = train(
        TinyTask(), make_cfg(tmp_path / "stage2", steps=4, init_from=str(first.run_dir), model={"freeze_first": True})
    )
    stage2 = load_checkpoint(second.run_dir, weights="model")[0]
    torch.testing.assert_close(stage2["0.weight"], stage1["0.weight"])  # frozen, loaded from stage 1
    torch.testing.assert_close(stage2["0.bias"], stage1["0.bias"])
    assert not torch.allclose(stage2["3.weight"], stage1["3.weight"])  # trained
    with pytest.raises(ConfigError, match="init_from weights do not fit the model"):
        train(TinyTask(), make_cfg(tmp_path / "bad", steps=1, init_from=str(first.run_dir), model={"hidden": 5}))


def test_diverging_loss_is_reported(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="training diverged: loss is nan at step 3"):
        train(TinyTask(), make_cfg(tmp_path / "nan", steps=6, data={"nan_at_step": 2}))


def test_run_training_from_yaml_with_overrides(tmp_path: Path) -> None:
    path = tmp_path / "tiny.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "output_dir": str(tmp_path / "y"),
                "steps": 50,
                "batch_size": 4,
                "log_every": 1,
                "device": "cpu",
                "model": {"hidden": 8},
            }
        ),
        encoding="utf-8",
    )
    result = run_training(TinyTask(), path, ["steps=2", "model.hidden=4", "checkpoint_every=0"])
    assert result.step == 2 and [s for s, _ in list_checkpoints(result.run_dir)] == [2]
    config = load_checkpoint(result.run_dir)[1]
    assert config["run"]["run_name"] == "tiny" and config["run"]["model"] == {"hidden": 4}
    with pytest.raises(ConfigError, match="batch_size 4 is not a multiple"):
        run_training(TinyTask(), path, ["micro_batch_size=3", "output_dir=" + str(tmp_path / "z")])


def test_sigkill_mid_run_then_resume(tmp_path: Path) -> None:
    run = tmp_path / "killed"
    config = {
        "output_dir": str(run),
        "steps": 40,
        "batch_size": 4,
        "micro_batch_size": 2,
        "lr": 1e-2,
        "warmup_steps": 3,
        "checkpoint_every": 5,
        "keep_last": 20,
        "log_every": 5,
        "ema_decay": 0.9,
        "device": "cpu",
        "model": {"dropout": 0.2},
        "data": {"sleep": 0.05},
    }
    path = tmp_path / "kill.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.train.tiny_task", "--config", str(path)],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 120
    try:
        while not any(s >= 10 for s, _ in list_checkpoints(run)):
            assert proc.poll() is None, f"training ended before it could be killed: {proc.stdout.read().decode()}"
            assert time.monotonic() < deadline, "no checkpoint within 120 s"
            time.sleep(0.02)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    kept = [s for s, _ in list_checkpoints(run)]
    assert kept and max(kept) < 40, kept
    read_checkpoint(list_checkpoints(run)[-1][1])  # the newest checkpoint is complete and readable

    resumed = run_training(TinyTask(), path, ["data.sleep=0"], resume=True)
    assert resumed.start_step == max(kept)  # no checkpointed step lost
    reference = run_training(TinyTask(), path, ["data.sleep=0", f"output_dir={tmp_path / 'ref'}"])
    assert_same_weights(final_weights(reference.run_dir), final_weights(run))
    assert [r["step"] for r in read_metrics(resumed.metrics_path)] == list(range(5, 41, 5))


def test_resume_can_extend_the_run(tmp_path: Path) -> None:
    run = tmp_path / "run"
    train(TinyTask(), make_cfg(run, steps=3, log_every=1, warmup_steps=0))
    extended = train(TinyTask(), make_cfg(run, steps=5, log_every=1, warmup_steps=0), resume=True)
    assert (extended.start_step, extended.step) == (3, 5)
    lrs = [r["lr"] for r in read_metrics(extended.metrics_path)]
    assert len(lrs) == 5
    expected = [lr_at(s, base_lr=1e-2, warmup_steps=0, total_steps=5, min_lr=1e-4) for s in (3, 4)]
    assert lrs[3:] == pytest.approx(expected)  # the new total applies from the first resumed step
    with pytest.raises(ConfigError, match="past steps=4"):
        train(TinyTask(), make_cfg(run, steps=4), resume=True)
