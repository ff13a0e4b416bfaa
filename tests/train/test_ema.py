"""Tests for ctvl.train.ema: EMA math, buffers, state restore."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ctvl.train.ema import EMA


def test_ema_math_matches_closed_form() -> None:
    model = nn.Linear(3, 2)
    ema = EMA(model=model, decay=0.9)
    values = [torch.full_like(model.weight, v) for v in (1.0, 2.0, 4.0, -1.0)]
    expected = None
    for v in values:
        with torch.no_grad():
            model.weight.copy_(v)
        ema.update(model)
        expected = v.clone() if expected is None else 0.9 * expected + 0.1 * v  # first update copies
    assert ema.num_updates == 4
    torch.testing.assert_close(ema.module.weight, expected)
    # 1 -> 0.9*1+0.1*2 = 1.1 -> 0.9*1.1+0.1*4 = 1.39 -> 0.9*1.39-0.1 = 1.151
    assert ema.module.weight[0, 0].item() == pytest.approx(1.151, abs=1e-6)
    torch.testing.assert_close(ema.module.bias, model.bias)  # the bias never changed


def test_ema_copies_buffers_and_keeps_keys() -> None:
    model = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4))
    ema = EMA(model=model, decay=0.5)
    model.train()
    model(torch.randn(8, 4))  # changes running stats and num_batches_tracked
    ema.update(model)
    torch.testing.assert_close(ema.module[1].running_mean, model[1].running_mean)
    assert int(ema.module[1].num_batches_tracked) == 1
    assert set(ema.state_dict()) == set(model.state_dict())
    assert not any(p.requires_grad for p in ema.module.parameters())


def test_ema_state_restore_continues_identically() -> None:
    torch.manual_seed(0)
    model = nn.Linear(2, 2)
    ema = EMA(model=model, decay=0.8)
    ema.update(model)
    with torch.no_grad():
        model.weight.add_(1.0)
    ema.update(model)
    restored = EMA(model=nn.Linear(2, 2), decay=0.8)
    restored.load_state_dict(ema.state_dict(), ema.num_updates)
    with torch.no_grad():
        model.weight.mul_(3.0)
    ema.update(model)
    restored.update(model)  # must average, not copy (the count was restored)
    torch.testing.assert_close(restored.module.weight, ema.module.weight)
    assert restored.num_updates == 3


def test_invalid_decay() -> None:
    with pytest.raises(ValueError, match="decay"):
        EMA(model=nn.Linear(1, 1), decay=1.0)
