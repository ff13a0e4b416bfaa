"""ReportTask in the shared loop: trains, exports spec + tokenizer identity, DDP-consistent batches."""

from __future__ import annotations

import pytest
import torch

from ctvl.errors import ConfigError
from ctvl.report.task import ReportTask
from ctvl.tokenizers.causal3d.bundle import load_tokenizer
from ctvl.train import load_checkpoint, read_metrics, train
from tests.ranks import run_ranks
from tests.report.factory import shared, tiny_config


@pytest.mark.parametrize("variant", ["tokenizer", "slicewise", None])
def test_each_variant_trains_and_exports_what_inference_needs(tmp_path, variant):
    art = shared()
    tok_path = art[variant] if variant else None
    result = train(ReportTask(), tiny_config(tmp_path / "run", art["data"], tok_path, art["root"] / "cache"))
    records = read_metrics(result.metrics_path)
    assert len(records) == 2 and all(r["loss"] > 0 for r in records)
    assert {"lm_loss", "aux_loss", "token_accuracy"} <= set(records[-1]["metrics"])
    _, config = load_checkpoint(result.run_dir)
    export = config["task"]
    assert config["task_name"] == "report" and export["text_tokenizer"]["kind"] == "bpe"
    assert export["training_data"]["scans"] == 6
    if variant is None:
        assert export["tokenizer"] is None and export["preprocessing"] is None
        return
    tok = load_tokenizer(tok_path)
    assert export["preprocessing"] == tok.spec.to_dict()  # the spec is stored with the model
    assert export["tokenizer"]["id"] == tok.tokenizer_id and export["tokenizer"]["kind"] == tok.kind
    assert export["model"]["visual_dim"] == tok.model.config.token_channels
    assert set(export["training_data"]["geometry"]) == {
        "spacing_x",
        "spacing_y",
        "spacing_z",
        "fov_x",
        "fov_y",
        "fov_z",
    }


def test_batches_are_deterministic_and_split_over_ranks_like_one_process(tmp_path):
    art = shared()
    task = ReportTask()
    cfg = tiny_config(tmp_path / "r", art["data"], art["tokenizer"], art["root"] / "cache")
    task.prepare(cfg)
    one = [next(iter(task.batches(cfg, 0, 1, 0, start=s))) for s in range(4)]
    again = task.batches(cfg, 0, 1, 0)
    for b in one:
        assert [t.tolist() for t in next(again)["targets"]] == [t.tolist() for t in b["targets"]]
    cfg.micro_batch_size = 1
    ranks = [next(iter(task.batches(cfg, r, 2, 0, start=0))) for r in range(2)]
    merged = [t.tolist() for b in ranks for t in b["targets"]]
    assert merged == [t.tolist() for t in one[0]["targets"]]
    seen = {
        tuple(t.tolist())
        for b in (next(iter(task.batches(cfg, 0, 1, 0, start=s))) for s in range(6))
        for t in b["targets"]
    }
    assert len(seen) == 6  # one epoch of 6 scans visits every scan once
    selection = one[0]["codes"][0]  # the reduction is parameter-free: computed once per scan
    assert selection.tokens.shape == (16, 6) and selection.grid == (3, 4, 4) and one[0]["labels"].shape == (2, 18)


def test_config_errors(tmp_path):
    art = shared()
    base = tiny_config(tmp_path / "r", art["data"], art["tokenizer"], art["root"] / "cache")
    bad_key = tiny_config(tmp_path / "r", art["data"], art["tokenizer"], None)
    bad_key.data["typo"] = 1
    with pytest.raises(ConfigError, match="typo"):
        ReportTask().prepare(bad_key)
    no_root = tiny_config(tmp_path / "r", art["data"], None, None)
    no_root.data.pop("root")
    with pytest.raises(ConfigError, match="data.root"):
        ReportTask().prepare(no_root)
    short = tiny_config(
        tmp_path / "r",
        art["data"],
        art["tokenizer"],
        art["root"] / "cache",
        lm={"hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2, "max_position_embeddings": 32},
    )
    with pytest.raises(ConfigError, match="max_position_embeddings"):
        ReportTask().prepare(short)
    assert base.data["tokenizer"]


def test_same_seed_same_weights_whether_the_cache_is_warm_or_cold(tmp_path):
    art = shared()
    models = []
    for k in range(2):  # first call fills a fresh cache, second reads it
        task = ReportTask()
        models.append(task.build_model(tiny_config(tmp_path / f"r{k}", art["data"], art["tokenizer"], tmp_path / "c")))
    for (name, a), b in zip(models[0].state_dict().items(), models[1].state_dict().values()):
        assert torch.equal(a, b), name


def _train_rank(cfg) -> int:
    return train(ReportTask(), cfg).world_size


def test_two_process_ddp_equals_one_process(tmp_path):
    """Same global batch on 2 gloo ranks (spawned) gives the weights of the single-process run."""
    art = shared()
    single = tiny_config(tmp_path / "one", art["data"], art["tokenizer"], art["root"] / "cache")
    train(ReportTask(), single)
    double = tiny_config(tmp_path / "two", art["data"], art["tokenizer"], art["root"] / "cache")
    double.micro_batch_size = 1
    assert run_ranks(_train_rank, (double,)) == [2, 2]
    a, _ = load_checkpoint(tmp_path / "one", weights="model")
    b, _ = load_checkpoint(tmp_path / "two", weights="model")
    for key in a:
        assert torch.allclose(a[key], b[key], atol=1e-5), key
