"""The real tokenizer task is exact under DDP and accumulation: the LFQ batch entropy and the LeCAM anchors
cover the whole step, so 2 ranks or 4 micro-batches give the gradients, losses and anchors of one process
with the whole batch.

Gradients are compared, not trained weights: AdamW turns float noise in near-zero gradients into steps of
about the learning rate, whatever the gradients' agreement.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from ctvl.data.phantom import write_dataset
from ctvl.tokenizers.causal3d.task import TokenizerTask
from ctvl.train import load_config, read_metrics, run_training
from ctvl.train.distributed import init_distributed, shutdown
from ctvl.train.rng import seed_everything
from tests.ranks import run_ranks

SPEC = {"preset": "cpu", "size": [32, 32], "depth": 17, "spacing": [11.25, 11.25, 22.5]}
MODEL = {
    "filters": 4,
    "channel_mult": [1, 2, 2],
    "num_res_blocks": 1,
    "token_channels": 4,
    "quantizer": "lfq",
    "quantizer_kwargs": {"entropy_anneal_steps": 4},
    "loss": {"adversarial_weight": 0.1, "adversarial_start": 0, "disc_channels": 4, "lecam_weight": 0.01},
}
BATCH = 4


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("phantoms")
    write_dataset(root, 4, 0, split="train", shape=(32, 32, 17))
    cfg = {
        "steps": 2,
        "batch_size": BATCH,
        "lr": 1e-3,
        "log_every": 1,
        "checkpoint_every": 0,
        "device": "cpu",
        "model": MODEL,
        "data": {"root": str(root), "preprocessing": SPEC, "stage": 1},
    }
    path = root / "tok.yaml"
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    return path


def step_gradients(config: str, micro: int, hooks: bool = True) -> dict[str, Any]:
    """One optimiser step's gradients as the loop forms them (mean over ranks of sum(loss / accum)), the
    discriminator's too, the step-mean loss and the LeCAM anchors after the step."""
    ctx = init_distributed("cpu")
    try:
        cfg = load_config(config, [f"micro_batch_size={micro}"])
        task = TokenizerTask()
        seed_everything(cfg.seed)
        model = task.build_model(cfg)
        disc = task.extra_modules(cfg, model)["disc"]
        accum = BATCH // (micro * ctx.world_size)
        micro_batches = list(itertools.islice(task.batches(cfg, ctx.rank, ctx.world_size, cfg.seed), accum))
        if hooks:
            task.begin_step(model, micro_batches, 0, ctx)
        loss_sum = 0.0
        for batch in micro_batches:
            for p in disc.parameters():
                p.requires_grad_(False)
            loss, _ = task.loss(model, batch, 0)
            (loss / accum).backward()
            for p in disc.parameters():
                p.requires_grad_(True)
            d_loss, _ = task.extra_loss("disc", disc, batch, 0)
            (d_loss / accum).backward()
            loss_sum += float(loss.detach()) / accum
        if hooks:
            task.end_step(model, 0, ctx)
        grads = {f"model.{n}": p.grad for n, p in model.named_parameters() if p.grad is not None}
        grads |= {f"disc.{n}": p.grad for n, p in disc.named_parameters() if p.grad is not None}
        loss_t = torch.tensor(loss_sum)
        if ctx.is_distributed:
            for g in [*grads.values(), loss_t]:
                torch.distributed.all_reduce(g)
                g /= ctx.world_size
        return {
            "grads": {k: g.clone() for k, g in grads.items()},
            "loss": float(loss_t),
            "anchors": (float(disc.lecam_real), float(disc.lecam_fake)),
        }
    finally:
        shutdown(ctx)


def rank_gradients(config: str, micro: int) -> dict[str, Any]:
    """:func:`step_gradients` on one spawned rank, tensors as numpy arrays (they cross the process boundary)."""
    out = step_gradients(config, micro)
    return {**out, "grads": {k: g.numpy() for k, g in out["grads"].items()}}


def _tensors(out: dict[str, Any]) -> dict[str, Any]:
    return {**out, "grads": {k: torch.from_numpy(g) for k, g in out["grads"].items()}}


def relative_error(a: dict[str, Any], b: dict[str, Any]) -> float:
    """|grad a - grad b| / |grad b| over all parameters together."""
    num = sum(float((a["grads"][k] - b["grads"][k]).pow(2).sum()) for k in b["grads"])
    return (num / sum(float(g.pow(2).sum()) for g in b["grads"].values())) ** 0.5


def _close(a: dict[str, Any], b: dict[str, Any]) -> None:
    assert set(a["grads"]) == set(b["grads"]) and len(a["grads"]) > 10
    # fp32 (the LFQ entropy runs in fp32 at inverse temperature 100): measured ~1e-4; per micro-batch: ~0.3
    assert relative_error(a, b) < 1e-3
    assert a["loss"] == pytest.approx(b["loss"], rel=1e-6)
    assert a["anchors"] == pytest.approx(b["anchors"], rel=1e-5) and a["anchors"][0] != 0.0


def test_accumulation_gives_the_big_batch_gradients(config: Path) -> None:
    big = step_gradients(str(config), micro=BATCH)
    _close(step_gradients(str(config), micro=1), big)  # 4 micro-batches of 1
    per_micro = step_gradients(str(config), micro=1, hooks=False)  # what the loss was before: per micro-batch
    assert per_micro["loss"] != pytest.approx(big["loss"], rel=1e-4) and relative_error(per_micro, big) > 0.05


@pytest.mark.slow  # two spawned ranks import torch and MONAI
def test_two_ranks_give_the_one_process_gradients(config: Path, tmp_path: Path) -> None:
    big = step_gradients(str(config), micro=BATCH)
    ranks = run_ranks(rank_gradients, (str(config), 1))  # 2 ranks x 2 micro-batches x 1
    _close(_tensors(ranks[0]), big)
    _close(_tensors(ranks[1]), big)
    # and through the whole loop: 2 ranks with accumulation log the single process' losses
    run_ranks(run_training, (TokenizerTask(), str(config), [f"output_dir={tmp_path / 'ddp'}", "micro_batch_size=1"]))
    one = run_training(TokenizerTask(), config, [f"output_dir={tmp_path / 'one'}", "micro_batch_size=4"])
    ddp_log, one_log = read_metrics(tmp_path / "ddp" / "metrics.jsonl"), read_metrics(one.metrics_path)
    assert [r["loss"] for r in ddp_log] == pytest.approx([r["loss"] for r in one_log], rel=1e-4)
