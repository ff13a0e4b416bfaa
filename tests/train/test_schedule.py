"""Tests for ctvl.train.schedule: linear warm-up then cosine decay to a floor."""

from __future__ import annotations

import math

import pytest
import torch

from ctvl.train.schedule import build_scheduler, lr_at


def test_warmup_is_linear_and_reaches_peak() -> None:
    kw = {"base_lr": 1e-3, "warmup_steps": 4, "total_steps": 20, "min_lr": 1e-5}
    assert [lr_at(s, **kw) for s in range(4)] == pytest.approx([2.5e-4, 5e-4, 7.5e-4, 1e-3])
    assert lr_at(4, **kw) == pytest.approx(1e-3)  # cosine starts at the peak


def test_cosine_values() -> None:
    kw = {"base_lr": 1.0, "warmup_steps": 10, "total_steps": 110, "min_lr": 0.1}
    assert lr_at(60, **kw) == pytest.approx(0.55)  # half way: (peak + floor) / 2
    assert lr_at(35, **kw) == pytest.approx(0.1 + 0.45 * (1 + math.cos(math.pi * 0.25)))
    assert lr_at(110, **kw) == pytest.approx(0.1)  # floor just after the last step
    assert lr_at(500, **kw) == pytest.approx(0.1)  # stays there if training is extended
    after = [lr_at(s, **kw) for s in range(10, 110)]
    assert all(a > b for a, b in zip(after, after[1:]))  # strictly decreasing


def test_no_warmup() -> None:
    assert lr_at(0, base_lr=2.0, warmup_steps=0, total_steps=4) == pytest.approx(2.0)
    assert lr_at(2, base_lr=2.0, warmup_steps=0, total_steps=4) == pytest.approx(1.0)


def test_scheduler_drives_optimizer_and_resumes() -> None:
    kw = {"warmup_steps": 3, "total_steps": 12, "min_lr": 1e-4}
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.AdamW([param], lr=1e-2)
    sched = build_scheduler(opt, **kw)
    seen = []
    for _ in range(6):
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    expected = [lr_at(s, base_lr=1e-2, **kw) for s in range(12)]
    assert seen == pytest.approx(expected[:6])

    # a new optimiser + scheduler restored from the state dicts continues with the same values
    opt2 = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=1e-2)
    sched2 = build_scheduler(opt2, **kw)
    opt2.load_state_dict(opt.state_dict())
    sched2.load_state_dict(sched.state_dict())
    rest = []
    for _ in range(6):
        rest.append(opt2.param_groups[0]["lr"])
        opt2.step()
        sched2.step()
    assert rest == pytest.approx(expected[6:])
