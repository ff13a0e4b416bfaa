"""Tests for ctvl.train.task: sample sharding, device moves, default hooks."""

from __future__ import annotations

from collections import namedtuple

import torch
from torch import nn

from ctvl.train.config import TrainConfig
from ctvl.train.task import sample_indices, to_device
from tests.train.tiny_task import TinyTask


def step_samples(cfg: TrainConfig, world: int, step: int, accum: int) -> list[int]:
    out: list[int] = []
    for rank in range(world):
        for micro in range(step * accum, (step + 1) * accum):
            out.extend(sample_indices(cfg, rank, world, micro))
    return out


def test_sample_indices_same_global_batch_for_any_split() -> None:
    single = TrainConfig(batch_size=8, micro_batch_size=2)  # 1 rank, 4 micro-steps
    ddp = TrainConfig(batch_size=8, micro_batch_size=4)  # 2 ranks, 1 micro-step
    ddp_accum = TrainConfig(batch_size=8, micro_batch_size=2)  # 2 ranks, 2 micro-steps
    for step in range(3):
        expected = list(range(step * 8, step * 8 + 8))
        assert step_samples(single, 1, step, 4) == expected
        assert sorted(step_samples(ddp, 2, step, 1)) == expected
        assert sorted(step_samples(ddp_accum, 2, step, 2)) == expected
    assert list(sample_indices(ddp, 1, 2, 0)) == [4, 5, 6, 7]


def test_to_device_handles_nests() -> None:
    Pair = namedtuple("Pair", "a b")
    batch = {"x": torch.ones(2), "meta": ["id", 3], "pair": Pair(torch.zeros(1), (torch.ones(1),))}
    moved = to_device(batch, torch.device("cpu"))
    assert isinstance(moved["pair"], Pair) and isinstance(moved["pair"].b, tuple)
    assert moved["meta"] == ["id", 3]
    torch.testing.assert_close(moved["x"], batch["x"])


def test_default_hooks() -> None:
    task = TinyTask()
    cfg = TrainConfig(batch_size=4)
    model = task.build_model(cfg)
    model[0].weight.requires_grad_(False)
    params = list(task.trainable_parameters(model))
    assert all(p.requires_grad for p in params) and len(params) == 3
    assert task.extra_modules(cfg, model) == {}
    opt = task.extra_optimizer("d", nn.Linear(1, 1), TrainConfig(lr=0.5))
    assert isinstance(opt, torch.optim.AdamW) and opt.param_groups[0]["lr"] == 0.5
    first = next(task.batches(cfg, 0, 1, seed=3, start=5))
    again = next(task.batches(cfg, 0, 1, seed=3, start=5))
    torch.testing.assert_close(first["x"], again["x"])  # deterministic
    assert first["x"].shape == (4, 6) and first["y"].shape == (4, 3)
