"""FSDP2 + LoRA + activation checkpointing through the shared loop: 2 gloo ranks equal one process, a
sharded checkpoint is full and plain-keyed, resumes, and a resume that changes world size or strategy is
refused."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from ctvl.errors import ConfigError
from ctvl.train import TrainConfig, list_checkpoints, run_training
from ctvl.train.checkpoint import read_checkpoint
from ctvl.train.rng import seed_everything
from ctvl.train.sharding import enable_activation_checkpointing
from tests.ranks import run_ranks
from tests.train.lm_task import TinyLMTask, train_rank

LORA = {"r": 4, "alpha": 8, "dropout": 0.0, "train_embeddings": True}


def _config(tmp_path: Path, **extra: object) -> Path:
    # min_lr = lr: a constant schedule, so a run of 2 steps resumed to 3 equals a run of 3
    raw = {
        "steps": 3,
        "batch_size": 4,
        "micro_batch_size": 1,
        "lr": 1e-2,
        "min_lr": 1e-2,
        "grad_clip": 1.0,
        "checkpoint_every": 1,
        "log_every": 1,
        "device": "cpu",
        "model": {"lora": LORA},
        **extra,
    }
    path = tmp_path / "lm.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return path


def _weights(run: Path, step: int) -> dict[str, torch.Tensor]:
    folder = dict((s, f) for s, f in list_checkpoints(run))[step]
    return read_checkpoint(folder)[0]["model"]


@pytest.mark.slow  # two spawned ranks import torch and transformers
def test_fsdp_lora_two_ranks_equal_one_process_and_resume(tmp_path: Path) -> None:
    cfg = _config(tmp_path, strategy="fsdp", activation_checkpointing=True)
    sharded, single = tmp_path / "fsdp", tmp_path / "single"
    first = run_ranks(train_rank, (str(cfg), [f"output_dir={sharded}", "steps=2"], False))
    assert first == [{"step": 2, "start": 0, "world": 2}] * 2
    resumed = run_ranks(train_rank, (str(cfg), [f"output_dir={sharded}"], True))
    assert resumed == [{"step": 3, "start": 2, "world": 2}] * 2
    one = run_training(TinyLMTask(), cfg, [f"output_dir={single}", "strategy=ddp"])
    assert one.world_size == 1
    got, want = _weights(sharded, 3), _weights(single, 3)
    assert set(got) == set(want) and any("lora_A" in k for k in got)  # full, plain (unsharded) keys
    for key in want:
        torch.testing.assert_close(got[key], want[key], rtol=1e-4, atol=1e-5)
    base = next(k for k in want if k.endswith("q_proj.base_layer.weight"))
    seed_everything(0)  # as the loop does before building
    start = TinyLMTask().build_model(TrainConfig(model={"lora": LORA}, seed=0)).state_dict()[base]
    torch.testing.assert_close(got[base], start)  # the frozen base weights never moved
    state = read_checkpoint(dict(list_checkpoints(sharded))[3])[2]
    assert state["strategy"] == "fsdp" and state["world_size"] == 2
    with pytest.raises(ConfigError, match="written by 2 process"):  # one process may not resume a 2-rank run
        run_training(TinyLMTask(), cfg, [f"output_dir={sharded}", "steps=4"], resume=True)


def test_resume_with_another_strategy_is_refused(tmp_path: Path) -> None:
    cfg = _config(tmp_path, steps=1)
    run = tmp_path / "run"
    run_training(TinyLMTask(), cfg, [f"output_dir={run}"])
    state = read_checkpoint(dict(list_checkpoints(run))[1])[2]
    assert state["strategy"] == "ddp"
    # one process with strategy fsdp trains unsharded (nothing to shard), so it resumes a ddp checkpoint
    out = run_training(TinyLMTask(), cfg, [f"output_dir={run}", "steps=2", "strategy=fsdp"], resume=True)
    assert out.step == 2 and out.start_step == 1


def test_activation_checkpointing_gives_the_same_gradients() -> None:
    torch.manual_seed(0)
    task, cfg = TinyLMTask(), TrainConfig(model={"lora": None})
    plain, ckpt = task.build_model(cfg), task.build_model(cfg)
    ckpt.load_state_dict(plain.state_dict())
    assert enable_activation_checkpointing(task.blocks(ckpt)) == 2
    ids = torch.randint(0, 64, (2, 12))
    for model in (plain, ckpt):
        model.train()
        model(input_ids=ids, labels=ids).loss.backward()
    for (name, a), (_, b) in zip(plain.named_parameters(), ckpt.named_parameters(), strict=True):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-5, atol=1e-6, msg=name)
    assert [n for n, _ in plain.named_parameters()] == [n for n, _ in ckpt.named_parameters()]


def test_checkpointing_without_blocks_and_fsdp_traps_are_refused() -> None:
    with pytest.raises(ConfigError, match="names no blocks"):
        enable_activation_checkpointing([])
    with pytest.raises(ConfigError, match="ema_decay"):
        TrainConfig(strategy="fsdp", ema_decay=0.9)
    with pytest.raises(ConfigError, match="fp16"):
        TrainConfig(strategy="fsdp", precision="fp16")
    with pytest.raises(ConfigError, match="strategy"):
        TrainConfig(strategy="zero3")
