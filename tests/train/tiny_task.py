"""A tiny regression task for the training-loop tests (runs in milliseconds per step on one core).

Sample ``i`` is drawn from its own generator seeded by ``(seed, i)``: ``x ~ N(0, 1)^6`` and
``y = A x + 0.1 * noise`` with a fixed teacher ``A``. So the data stream is deterministic, needs no
files, and any rank can produce any sample (:func:`ctvl.train.sample_indices`).

``model:`` options: ``hidden`` (16), ``dropout`` (0.0), ``critic`` (false: add a discriminator-style
extra module with its own optimiser), ``freeze_first`` (false: train only the last layer).
``data:`` options (for failure tests): ``sleep`` (seconds per micro-batch), ``crash_at_step`` (raise
before that step), ``nan_at_step`` (return a NaN loss from that step on).

Run as a script (also under torchrun): ``python -m tests.train.tiny_task --config C [--resume] [k=v ...]``.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from ctvl.train import TrainConfig, TrainTask, run_training, sample_indices
from ctvl.train.rng import derive_seed

IN_FEATURES, OUT_FEATURES = 6, 3


class CrashForTest(RuntimeError):
    """Raised by ``data.crash_at_step`` to simulate a crash mid-run."""


def make_sample(seed: int, index: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample ``index`` of the stream: ``(x (6,), y (3,))``."""
    teacher = torch.Generator().manual_seed(derive_seed(seed, 10**9))
    a = torch.randn(OUT_FEATURES, IN_FEATURES, generator=teacher)
    gen = torch.Generator().manual_seed(derive_seed(seed, index))
    x = torch.randn(IN_FEATURES, generator=gen)
    y = a @ x + 0.1 * torch.randn(OUT_FEATURES, generator=gen)
    return x, y


class TinyTask(TrainTask):
    """MLP regression, optionally with an adversarial critic (exercises the extra-module hook)."""

    name = "tiny"

    def __init__(self) -> None:
        self.critic: nn.Module | None = None
        self._fake: torch.Tensor | None = None
        self.cfg: TrainConfig | None = None

    def build_model(self, cfg: TrainConfig) -> nn.Module:
        self.cfg = cfg
        hidden = int(cfg.model.get("hidden", 16))
        return nn.Sequential(
            nn.Linear(IN_FEATURES, hidden),
            nn.GELU(),
            nn.Dropout(float(cfg.model.get("dropout", 0.0))),
            nn.Linear(hidden, OUT_FEATURES),
        )

    def trainable_parameters(self, model: nn.Module) -> list[nn.Parameter]:
        if self.cfg is not None and self.cfg.model.get("freeze_first", False):
            return list(model[3].parameters())
        return super().trainable_parameters(model)

    def batches(
        self, cfg: TrainConfig, rank: int, world_size: int, seed: int, start: int = 0
    ) -> Iterator[dict[str, torch.Tensor]]:
        micro = start
        while True:
            pairs = [make_sample(seed, i) for i in sample_indices(cfg, rank, world_size, micro)]
            yield {"x": torch.stack([p[0] for p in pairs]), "y": torch.stack([p[1] for p in pairs])}  # (B, 6), (B, 3)
            micro += 1

    def loss(self, model: nn.Module, batch: dict[str, torch.Tensor], step: int) -> tuple[torch.Tensor, dict]:
        data = self.cfg.data if self.cfg is not None else {}
        if data.get("sleep"):
            time.sleep(float(data["sleep"]))
        if data.get("crash_at_step") is not None and step >= int(data["crash_at_step"]):
            raise CrashForTest(f"crash requested at step {step}")
        pred = model(batch["x"])  # (B, 3)
        loss = F.mse_loss(pred, batch["y"])
        metrics = {"mae": (pred - batch["y"]).abs().mean()}
        if self.critic is not None:
            adv = F.softplus(-self.critic(pred)).mean()
            loss = loss + 0.01 * adv
            metrics["adv"] = adv
            self._fake = pred.detach()
        if data.get("nan_at_step") is not None and step >= int(data["nan_at_step"]):
            loss = loss * float("nan")
        return loss, metrics

    def extra_modules(self, cfg: TrainConfig, model: nn.Module) -> dict[str, nn.Module]:
        if not cfg.model.get("critic", False):
            return {}
        self.critic = nn.Sequential(nn.Linear(OUT_FEATURES, 8), nn.GELU(), nn.Linear(8, 1))
        return {"critic": self.critic}

    def extra_loss(self, name: str, module: nn.Module, batch: Any, step: int) -> tuple[torch.Tensor, dict] | None:
        real, fake = module(batch["y"]), module(self._fake)  # (B, 1) each
        loss = F.softplus(-real).mean() + F.softplus(fake).mean()
        return loss, {"real": real.mean()}

    def export_config(self) -> dict[str, Any]:
        return {"preprocessing": {"kind": "tiny", "in_features": IN_FEATURES}}


class NoStartTinyTask(TinyTask):
    """Same data, but ``batches`` has no ``start`` parameter (the loop must skip by iterating)."""

    def batches(  # type: ignore[override]
        self, cfg: TrainConfig, rank: int, world_size: int, seed: int
    ) -> Iterator[dict[str, torch.Tensor]]:
        return super().batches(cfg, rank, world_size, seed, start=0)


def main(argv: list[str] | None = None) -> int:
    """Train TinyTask from a config file (used by the subprocess and torchrun tests)."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", required=True)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    result = run_training(TinyTask(), args.config, args.overrides, resume=args.resume)
    print(f"done step={result.step} start={result.start_step} world={result.world_size}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
