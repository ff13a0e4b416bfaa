"""SynthesisTask on the shared loop: batches are a function of sample indices; the paper config takes a step."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ctvl.errors import ConfigError
from ctvl.synthesis.task import SynthesisTask
from ctvl.train import TrainConfig, load_config, train
from tests.report.factory import tiny_dataset, tiny_tokenizer_bundle
from tests.synthesis.factory import TINY_MODEL

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def parts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("synthesis-task")
    return {
        "root": root,
        "data": tiny_dataset(root / "data", train=6, valid=0),
        "tokenizer": tiny_tokenizer_bundle(root / "tokenizer"),
    }


def config(parts: dict[str, Path], name: str, **kw) -> TrainConfig:
    base = dict(
        run_name=name,
        output_dir=str(parts["root"] / name),
        steps=2,
        batch_size=4,
        lr=1e-3,
        checkpoint_every=0,
        log_every=1,
        device="cpu",
        model={**TINY_MODEL, "prefix_prob": 0.5},
        data={
            "root": str(parts["data"]),
            "tokenizer": str(parts["tokenizer"]),
            "cache_dir": str(parts["root"] / "cache"),
        },
    )
    return TrainConfig(**{**base, **kw})


def first_batches(task: SynthesisTask, cfg: TrainConfig, world: int, rank: int, k: int, start: int = 0) -> list:
    it = task.batches(cfg, rank, world, cfg.seed, start=start)
    return [next(it) for _ in range(k)]


def test_prepare_stores_stats_prompts_and_the_export(parts):
    task = SynthesisTask()
    cfg = config(parts, "prep")
    model = task.build_model(cfg)
    assert task.codes is not None and task.codes.shape[1] == 6  # tiny tokenizer: 6 token channels
    assert torch.allclose(task.codes.mean(dim=(0, 2, 3, 4)), torch.zeros(6), atol=1e-5)
    assert torch.equal(model.latent_mean, task.stats[0])
    assert len(task.contexts) == 6 and all(len(c) == 6 for c in task.contexts)  # 3 + 3 mixes per scan
    export = task.export_config()
    assert export["tokenizer"]["token_channels"] == 6 and export["preprocessing"]["depth"] == 17
    assert export["text_encoder"]["max_tokens"] == TINY_MODEL.get("max_text_tokens", 256)


def test_two_ranks_see_the_samples_of_one(parts):
    task = SynthesisTask()
    cfg1 = config(parts, "ddp1")
    task.build_model(cfg1)
    cfg2 = config(parts, "ddp2", micro_batch_size=2)
    one = first_batches(task, cfg1, 1, 0, 3)
    r0, r1 = first_batches(task, cfg2, 2, 0, 3), first_batches(task, cfg2, 2, 1, 3)
    for b, a0, a1 in zip(one, r0, r1):
        for key in ("x0", "noise", "times"):
            assert torch.equal(b[key], torch.cat([a0[key], a1[key]]))
        assert [t is None for t in b["texts"]] == [t is None for t in a0["texts"] + a1["texts"]]
    assert len({b["x0"].shape[2] for b in one + first_batches(task, cfg1, 1, 0, 8, start=3)}) > 1  # prefixes


def test_resume_start_gives_the_same_batch(parts):
    task = SynthesisTask()
    cfg = config(parts, "resume")
    task.build_model(cfg)
    later = first_batches(task, cfg, 1, 0, 4)[3]
    assert torch.equal(first_batches(task, cfg, 1, 0, 1, start=3)[0]["noise"], later["noise"])


def test_training_runs_and_reports_finite_loss(parts):
    result = train(SynthesisTask(), config(parts, "run", steps=3))
    assert result.step == 3 and result.loss is not None and torch.isfinite(torch.tensor(result.loss))


def test_unknown_data_key_is_refused(parts):
    cfg = config(parts, "bad")
    cfg.data["tokeniser"] = "x"
    with pytest.raises(ConfigError, match="unknown synthesis data key"):
        SynthesisTask().build_model(cfg)


@pytest.mark.parametrize("name", ["phantom-cpu-synthesis", "ctrate-paper-synthesis"])
def test_shipped_configs_build_and_take_a_step_at_reduced_size(parts, name):
    """Both recipes go through the same code: the paper's 4-level UNet, 2 ResBlocks, accumulation."""
    small = {
        "model.channels": "[16,32,32,32]" if name.startswith("ctrate") else "[16,32,32]",
        "model.norm_num_groups": "8",
        "model.num_head_channels": "16",
        "model.cross_attention_dim": "32",
    }
    overrides = [f"{k}={v}" for k, v in small.items()] + [
        f"output_dir={parts['root'] / name}",
        "steps=1",
        "batch_size=2",
        "micro_batch_size=1",
        "device=cpu",
        "checkpoint_every=0",
        "precision=fp32",
        f"data.root={parts['data']}",
        f"data.tokenizer={parts['tokenizer']}",
        f"data.cache_dir={parts['root'] / 'cache'}",
    ]
    cfg = load_config(REPO / "configs" / f"{name}.yaml", overrides)
    full = load_config(REPO / "configs" / f"{name}.yaml")
    assert cfg.model["attention_levels"] == full.model["attention_levels"]
    result = train(SynthesisTask(), cfg)
    assert result.step == 1 and torch.isfinite(torch.tensor(result.loss))
