"""``--dry-run``: parameter counts on the meta device equal a real build's; memory follows the strategy;
the paper configs of all three models dry-run from the command line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ctvl.cli import main
from ctvl.errors import ConfigError
from ctvl.train import TrainConfig
from ctvl.train.dry_run import GIB, estimate, lm_activation_bytes
from tests.train.lm_task import TinyLMTask

REPO = Path(__file__).resolve().parents[2]
LORA = {"r": 4, "alpha": 8, "dropout": 0.0}


def test_counts_equal_a_real_build_and_memory_follows_the_strategy() -> None:
    cfg = TrainConfig(batch_size=8, model={"lora": LORA})
    real = TinyLMTask().build_model(cfg)
    total = sum(p.numel() for p in real.parameters())
    trainable = sum(p.numel() for p in real.parameters() if p.requires_grad)
    one = estimate(TinyLMTask(), cfg, 1)
    assert one["parameters"] == {"total": total, "trainable": trainable, "frozen": total - trainable}
    assert 0 < trainable < total  # LoRA: the base LM is frozen
    gib = one["memory_gib"]
    assert gib["weights"] == round(4 * total / GIB, 3) and gib["adamw"] == round(8 * trainable / GIB, 3)
    ddp = estimate(TinyLMTask(), cfg, 4)
    assert "ddp_buckets" in ddp["memory_gib"] and ddp["micro_batch_size"] == 2
    sharded = estimate(TinyLMTask(), TrainConfig(batch_size=8, strategy="fsdp", model={"lora": LORA}), 4)
    assert sharded["memory_gib"]["weights"] == pytest.approx(gib["weights"] / 4, abs=1e-3)
    assert "gathered_blocks" in sharded["memory_gib"] and "ddp_buckets" not in sharded["memory_gib"]
    assert not one["activations_estimated"]  # the tiny task does not estimate activations
    with pytest.raises(ConfigError, match="not a multiple"):
        estimate(TinyLMTask(), cfg, 3)


def test_lm_activations_shrink_with_checkpointing() -> None:
    kw = dict(
        layers=32,
        hidden=4096,
        kv_hidden=1024,
        intermediate=14336,
        vocab=32000,
        tokens=33280,
        batch=1,
        value_bytes=2,
        lora_dropout=False,
    )
    full, ckpt = lm_activation_bytes(checkpointing=False, **kw), lm_activation_bytes(checkpointing=True, **kw)
    logits = 33280 * 32000 * 6
    assert ckpt < full / 5 and ckpt > logits  # 32 layer inputs + one layer + the logits
    assert full - logits == 32 * 33280 * (6 * 4096 + 2 * 1024 + 4 * 14336) * 2


@pytest.mark.parametrize(
    "command,config,total_b",
    [
        (["train", "report"], "ctrate-paper-report.yaml", (7.0, 8.5)),
        (["train", "tokenizer"], "ctrate-paper-tokenizer-s1.yaml", (0.05, 0.5)),
        (["train", "synthesis"], "ctrate-paper-synthesis.yaml", (0.1, 1.0)),
    ],
)
def test_paper_configs_dry_run(command: list[str], config: str, total_b: tuple[float, float], capsys) -> None:
    assert main([*command, "--config", str(REPO / "configs" / config), "--dry-run", "--gpus", "8", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert total_b[0] < out["parameters"]["total"] / 1e9 < total_b[1] and out["per_gpu_gib"] > 0
    if command[1] == "report":  # LoRA + FSDP + checkpointing: fits an 80 GB GPU, the plain recipe would not
        assert out["strategy"] == "fsdp" and out["parameters"]["trainable"] < 0.1 * out["parameters"]["total"]
        assert out["activations_estimated"] and out["per_gpu_gib"] < 70
        assert (
            main(
                [
                    *command,
                    "--config",
                    str(REPO / "configs" / config),
                    "--dry-run",
                    "--gpus",
                    "8",
                    "--json",
                    "strategy=ddp",
                    "activation_checkpointing=false",
                    "model.lora=null",
                ]
            )
            == 0
        )
        assert json.loads(capsys.readouterr().out)["per_gpu_gib"] > 200


def test_dry_run_bad_gpus_is_one_line(capsys) -> None:
    assert (
        main(
            [
                "train",
                "report",
                "--config",
                str(REPO / "configs" / "ctrate-paper-report.yaml"),
                "--dry-run",
                "--gpus",
                "0",
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1
