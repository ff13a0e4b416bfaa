"""Exponential moving average (EMA) of a model's weights.

Built on :class:`torch.optim.swa_utils.AveragedModel` with ``get_ema_multi_avg_fn`` (torch's fused
``_foreach_lerp_``): after each optimiser step ``ema = decay * ema + (1 - decay) * weights``; the first
update copies the weights. Parameters are averaged; buffers (e.g. BatchNorm running statistics and
integer counters) are copied from the model, because averaging an integer counter is meaningless.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn


class EMA:
    """EMA shadow of a model (kept on the model's device, same dtype).

    Args:
        model: the (unwrapped) model to track; it is deep-copied once.
        decay: weight of the old average per update, in (0, 1), e.g. 0.999.
    """

    def __init__(self, *, model: nn.Module, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay must be in (0, 1), got {decay}")
        self.decay = decay
        self.averaged = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=False)
        self.averaged.requires_grad_(False)

    @property
    def module(self) -> nn.Module:
        """The averaged model (same class and state-dict keys as the tracked model)."""
        return self.averaged.module

    @property
    def num_updates(self) -> int:
        """How many times :meth:`update` has run."""
        return int(self.averaged.n_averaged.item())

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Fold the model's current weights into the average and copy its buffers."""
        self.averaged.update_parameters(model)
        for shadow, current in zip(self.module.buffers(), model.buffers(), strict=True):
            shadow.copy_(current)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The averaged weights, with the tracked model's keys (what inference loads)."""
        return self.module.state_dict()

    def load_state_dict(self, state_dict: dict[str, torch.Tensor], num_updates: int) -> None:
        """Restore averaged weights and the update count (so a resumed run continues the same average)."""
        self.module.load_state_dict(state_dict)
        self.averaged.n_averaged.fill_(num_updates)
