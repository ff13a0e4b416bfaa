"""The tokenizer's training task: config parsing, curriculum data, stages 1 -> 2 -> 3, baseline, paper size."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from ctvl.data.phantom import write_dataset
from ctvl.data.transforms import PreprocessSpec
from ctvl.errors import ConfigError
from ctvl.tokenizers.causal3d import latent_values
from ctvl.tokenizers.causal3d.curriculum import StagePlan, excerpt, stage_plan
from ctvl.tokenizers.causal3d.task import TokenizerTask, parse_model_section, parse_spec
from ctvl.train import load_checkpoint, load_config, read_metrics, run_training

REPO = Path(__file__).resolve().parents[2]
# 32 x 32 x 17 at 11.25 x 11.25 x 22.5 mm: the CPU preset's field of view on a smaller grid
TINY_SPEC = {"preset": "cpu", "size": [32, 32], "depth": 17, "spacing": [11.25, 11.25, 22.5]}
TINY_MODEL = {
    "filters": 4,
    "channel_mult": [1, 2, 2],
    "num_res_blocks": 1,
    "token_channels": 4,
    "quantizer": "lfq",
    "quantizer_kwargs": {"entropy_anneal_steps": 4},
}


@pytest.fixture(scope="module")
def phantoms(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("phantom")
    write_dataset(root, 3, 0, split="train", shape=(32, 32, 17))
    return root


def write_config(path: Path, phantoms: Path, stage: int, **top: object) -> Path:
    data = {"root": str(phantoms), "preprocessing": TINY_SPEC, "stage": stage}
    data.update(top.pop("data", {}))  # type: ignore[arg-type]
    model = {**TINY_MODEL, **top.pop("model", {})}  # type: ignore[dict-item]
    cfg = {
        "steps": 2,
        "batch_size": 2,
        "lr": 1e-3,
        "log_every": 1,
        "checkpoint_every": 0,
        "output_dir": str(path.with_suffix("")),
        "model": model,
        "data": data,
        **top,
    }
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_model_section_and_spec_parsing() -> None:
    sec = parse_model_section(
        {"kind": "slicewise", "match_depth": 33, **TINY_MODEL, "token_channels": 12, "loss": {"ssim_weight": 0.5}}
    )
    assert sec.kind == "slicewise" and not sec.config.temporal and sec.base is not None
    assert sec.loss.ssim_weight == 0.5 and sec.loss.l1_weight == 5.0
    v3, v2 = latent_values(sec.base, (33, 64, 64)), latent_values(sec.config, (33, 64, 64))
    assert sec.config.token_channels == 7 and abs(v2 / v3 - 1) < 0.05  # same token budget at 33 slices
    for bad in ({"kind": "vit"}, {"filterz": 4}, {"loss": {"perceptual": 1.0}}, {"match_depth": 33}):
        with pytest.raises(ConfigError):
            parse_model_section(bad)
    assert parse_spec("cpu") == PreprocessSpec.cpu() and parse_spec("paper") == PreprocessSpec.paper()
    assert parse_spec({"preset": "cpu", "depth": 17}).depth == 17
    for bad in (None, "gpu", 3, {"preset": "x"}):
        with pytest.raises(ConfigError):
            parse_spec(bad)


def test_stage_plans() -> None:
    assert stage_plan(1, {}, 8) == StagePlan(1, 9, 1, "causal", True)
    assert stage_plan(1, {"excerpt": 17, "singles": 0}, 8).length == 17
    assert stage_plan(2, {}, 8) == StagePlan(2, None, 0, "windowed", True)
    s3 = stage_plan(3, {"crop": 105}, 8)
    assert s3.length == 105 and s3.encode_mode == "windowed" and not s3.train_encoder
    with pytest.raises(ConfigError):
        stage_plan(4, {}, 8)
    vol = torch.arange(5.0).reshape(1, 5, 1, 1).expand(1, 5, 2, 2)
    g = torch.Generator().manual_seed(0)
    part = excerpt(vol, 3, g, -1.0)
    assert part.shape == (1, 3, 2, 2) and torch.equal(part[0, :, 0, 0], part[0, 0, 0, 0] + torch.arange(3.0))
    padded = excerpt(vol, 7, g, -1.0)  # shorter volume: padded at the end
    assert padded.shape[1] == 7 and torch.all(padded[:, 5:] == -1)


def test_batches_are_rank_independent(phantoms: Path, tmp_path: Path) -> None:
    cfg = load_config(write_config(tmp_path / "c.yaml", phantoms, 1, batch_size=4))
    task = TokenizerTask(stage=1)
    task.setup(cfg)
    one = next(task.batches(cfg, 0, 1, cfg.seed))
    assert one["volume"].shape == (4, 1, 9, 32, 32) and one["slices"].shape == (4, 1, 32, 32)
    halves = [next(task.batches(cfg, r, 2, cfg.seed)) for r in (0, 1)]
    torch.testing.assert_close(torch.cat([h["volume"] for h in halves]), one["volume"], rtol=0, atol=0)
    again = next(task.batches(cfg, 0, 1, cfg.seed))
    assert torch.equal(again["slices"], one["slices"])


def test_curriculum_stages_chain(phantoms: Path, tmp_path: Path) -> None:
    r1 = run_training(TokenizerTask(stage=1), write_config(tmp_path / "s1.yaml", phantoms, 1))
    s1, c1 = load_checkpoint(r1.run_dir)
    assert c1["task"]["stage"] == 1 and c1["task"]["preprocessing"] == parse_spec(TINY_SPEC).to_dict()
    assert {"psnr", "psnr_single", "l1", "ssim", "aux"} <= set(read_metrics(r1.metrics_path)[-1]["metrics"])
    # stage 2 starts from stage 1 (a vanishing lr keeps the weights where stage 1 left them)
    r2 = run_training(
        TokenizerTask(stage=2),
        write_config(tmp_path / "s2.yaml", phantoms, 2, init_from=str(r1.run_dir), lr=1e-9, min_lr=0.0),
    )
    s2, c2 = load_checkpoint(r2.run_dir)
    assert c2["task"]["encode_mode"] == "windowed" and c2["task"]["stage_name"] == "overlapping-window tiling"
    for key in s1:
        torch.testing.assert_close(s2[key].float(), s1[key].float(), rtol=0, atol=1e-5, msg=key)
    # stage 3: encoder and quantizer frozen, decoder trained
    r3 = run_training(
        TokenizerTask(stage=3), write_config(tmp_path / "s3.yaml", phantoms, 3, init_from=str(r2.run_dir), lr=1e-2)
    )
    s3, c3 = load_checkpoint(r3.run_dir)
    assert c3["task"]["stage"] == 3
    frozen = [k for k in s2 if k.startswith(("encoder.", "quantizer."))]
    assert frozen and [k for k in frozen if not torch.equal(s3[k], s2[k])] == []
    moved = [k for k in s2 if k.startswith("decoder.") and s2[k].is_floating_point()]
    assert any(not torch.equal(s3[k], s2[k]) for k in moved)
    assert read_metrics(r3.metrics_path)[-1]["metrics"]["aux"] == 0.0  # frozen quantizer adds no loss


def test_stage_mismatch_and_baseline(phantoms: Path, tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "c.yaml", phantoms, 3)
    with pytest.raises(ConfigError, match="stage"):
        run_training(TokenizerTask(stage=2), cfg)
    no_stage = write_config(tmp_path / "n.yaml", phantoms, 1)
    raw = yaml.safe_load(no_stage.read_text())
    del raw["data"]["stage"]
    no_stage.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match="--stage"):
        run_training(TokenizerTask(stage=None), no_stage)
    with pytest.raises(ConfigError, match="unknown data key"):
        run_training(TokenizerTask(stage=1), write_config(tmp_path / "u.yaml", phantoms, 1, data={"crops": 3}))
    base = write_config(tmp_path / "b.yaml", phantoms, 1, model={"kind": "slicewise", "match_depth": 17})
    result = run_training(TokenizerTask(stage=1), base)
    _, config = load_checkpoint(result.run_dir)
    assert config["task"]["kind"] == "slicewise" and config["task"]["matches"]["depth"] == 17
    with pytest.raises(ConfigError, match="stage-1 stream"):
        run_training(
            TokenizerTask(stage=2), write_config(tmp_path / "b2.yaml", phantoms, 2, model={"kind": "slicewise"})
        )


@pytest.mark.parametrize(
    "name",
    sorted(p.name for p in (REPO / "configs").glob("*tokenizer*.yaml"))
    + ["phantom-cpu-slicewise.yaml", "realct-cpu-slicewise.yaml"],
)
def test_shipped_configs_are_valid(name: str) -> None:
    cfg = load_config(REPO / "configs" / name)
    task = TokenizerTask(stage=None)
    task.setup(cfg)
    assert task.plan is not None and task.spec is not None
    if name.startswith("ctrate"):
        assert task.section.config.filters == 96 and task.section.config.token_channels == 18
        assert task.spec == PreprocessSpec.paper()
    elif name.startswith("realct"):  # 1.5 mm isotropic, any depth, trained on 64 x 64 crops
        assert task.spec.spacing == (1.5, 1.5, 1.5) and task.spec.depth is None and task.plan.patch == (64, 64)
    else:
        assert task.spec == PreprocessSpec.cpu()


@pytest.mark.slow  # the 188 M-parameter model: ~10-20 s on one core
def test_paper_config_runs_a_step_at_reduced_size(phantoms: Path, tmp_path: Path) -> None:
    raw = yaml.safe_load((REPO / "configs" / "ctrate-paper-tokenizer-s1.yaml").read_text())
    raw["data"]["preprocessing"] = {"preset": "paper", "size": [64, 64], "depth": 9, "spacing": [6.0, 6.0, 22.5]}
    (tmp_path / "paper.yaml").write_text(yaml.safe_dump(raw))  # the paper recipe, reduced to 9 x 64 x 64
    cfg = load_config(
        tmp_path / "paper.yaml",
        [
            f"data.root={phantoms}",
            "data.singles=1",
            "batch_size=1",
            "micro_batch_size=1",
            f"data.cache_dir={tmp_path / 'cache'}",
        ],
    )
    task = TokenizerTask(stage=1)
    torch.manual_seed(0)
    model = task.build_model(cfg)
    assert model.quantizer.codebook_size == 2**18 and model.latent_shape(241, 512, 512) == (18, 31, 64, 64)
    batch = next(task.batches(cfg, 0, 1, cfg.seed))
    assert batch["volume"].shape == (1, 1, 9, 64, 64)
    loss, metrics = task.loss(model, batch, 0)
    loss.backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert torch.isfinite(loss) and metrics["psnr"] > 0
    assert "disc" in task.extra_modules(cfg, model)  # the paper recipe trains a patch discriminator
