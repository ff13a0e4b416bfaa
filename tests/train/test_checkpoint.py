"""Tests for ctvl.train.checkpoint: atomic writes, keep-last-K, inference loading, bundles."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

import ctvl.train.checkpoint as ckpt_mod
from ctvl.errors import InputError
from ctvl.train.checkpoint import (
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    load_weights,
    open_bundle,
    read_checkpoint,
    save_bundle,
    save_checkpoint,
)


def weights(value: float) -> dict[str, torch.Tensor]:
    return {"w": torch.full((2, 3), value), "b": torch.arange(3.0)}


def save(run: Path, step: int, keep: int = 3, ema: bool = False) -> Path:
    parts = {"model": weights(float(step))}
    if ema:
        parts["ema"] = weights(step + 0.5)
    state = {"step": step, "optimizer": {"state": {}, "param_groups": [{"lr": 0.1}]}, "rng": [(3, (1, 2), None)]}
    return save_checkpoint(run, step, parts, {"run": {"steps": 9}, "task": {"spec": "x"}}, state, keep)


def test_round_trip(tmp_path: Path) -> None:
    folder = save(tmp_path, 7, ema=True)
    assert folder == tmp_path / "checkpoints" / "step-00000007"
    names = sorted(p.name for p in folder.iterdir())
    assert names == ["config.json", "ema.safetensors", "model.safetensors", "state.pt"]
    parts, config, state = read_checkpoint(folder)
    torch.testing.assert_close(parts["model"]["w"], torch.full((2, 3), 7.0))
    assert config == {"run": {"steps": 9}, "task": {"spec": "x"}, "format": ckpt_mod.FORMAT, "step": 7}
    assert state["step"] == 7 and state["rng"] == [(3, (1, 2), None)]


def test_keep_last_k(tmp_path: Path) -> None:
    for step in (1, 2, 3, 4, 5):
        save(tmp_path, step, keep=2)
    assert [s for s, _ in list_checkpoints(tmp_path)] == [4, 5]
    assert latest_checkpoint(tmp_path).name == "step-00000005"
    leftovers = [p.name for p in (tmp_path / "checkpoints").iterdir() if p.name.startswith(".")]
    assert leftovers == []


def test_failed_write_leaves_no_visible_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    save(tmp_path, 1)

    def crash(*args: object, **kwargs: object) -> None:  # dies after the safetensors files were written
        raise OSError("disk full")

    monkeypatch.setattr(ckpt_mod.torch, "save", crash)
    with pytest.raises(OSError, match="disk full"):
        save(tmp_path, 2)
    assert [s for s, _ in list_checkpoints(tmp_path)] == [1]  # the half-written step 2 is invisible
    assert [p.name for p in (tmp_path / "checkpoints").iterdir()] == ["step-00000001"]


def test_killed_writer_leftover_is_hidden_then_cleaned(tmp_path: Path) -> None:
    save(tmp_path, 1)
    stale = tmp_path / "checkpoints" / ".tmp-step-00000002-abc"  # what a SIGKILL mid-write leaves
    stale.mkdir()
    (stale / "model.safetensors").write_bytes(b"partial")
    assert latest_checkpoint(tmp_path).name == "step-00000001"
    save(tmp_path, 2)
    assert not stale.exists()
    assert latest_checkpoint(tmp_path).name == "step-00000002"


def test_resave_same_step_replaces(tmp_path: Path) -> None:
    save(tmp_path, 3)
    parts = {"model": weights(42.0)}
    save_checkpoint(tmp_path, 3, parts, {}, None, keep_last=3)
    state_dict, _ = load_checkpoint(tmp_path)
    torch.testing.assert_close(state_dict["w"], torch.full((2, 3), 42.0))
    assert not (tmp_path / "checkpoints" / "step-00000003" / "state.pt").exists()


def test_tied_weights_are_saved(tmp_path: Path) -> None:
    emb = nn.Embedding(5, 4)
    head = nn.Linear(4, 5, bias=False)
    head.weight = emb.weight  # tied: same storage under two keys
    model = nn.ModuleDict({"emb": emb, "head": head})
    save_checkpoint(tmp_path, 1, {"model": model.state_dict()}, {}, None, keep_last=1)
    state_dict, _ = load_checkpoint(tmp_path, weights="model")
    fresh = nn.ModuleDict({"emb": nn.Embedding(5, 4), "head": nn.Linear(4, 5, bias=False)})
    fresh.load_state_dict(state_dict)
    torch.testing.assert_close(fresh["head"].weight, emb.weight.detach())


def test_load_checkpoint_selects_weights(tmp_path: Path) -> None:
    save(tmp_path, 1, ema=True)
    folder = save(tmp_path, 2, ema=True)
    for path in (tmp_path, folder):  # run folder -> newest checkpoint
        state_dict, config = load_checkpoint(path)
        assert state_dict["w"][0, 0].item() == 2.5  # auto prefers EMA
        assert config["step"] == 2 and config["task"] == {"spec": "x"}
    state_dict, _ = load_checkpoint(folder, weights="model")
    assert state_dict["w"][0, 0].item() == 2.0


def test_load_checkpoint_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not a folder"):
        load_checkpoint(tmp_path / "nope")
    with pytest.raises(InputError, match="not a ctvl run"):
        load_checkpoint(tmp_path)
    folder = save(tmp_path, 1)
    with pytest.raises(InputError, match="no ema.safetensors"):
        load_checkpoint(folder, weights="ema")
    (folder / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(InputError, match="corrupt") as info:
        load_checkpoint(folder, weights="model")
    assert "model.safetensors" in str(info.value)
    (folder / "config.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(InputError, match="config.json"):
        load_checkpoint(folder)


def test_save_bundle_round_trip(tmp_path: Path) -> None:
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 1))
    out = save_bundle(model, {"preprocessing": {"spacing": [1, 1, 2]}, "arch": "mlp"}, tmp_path / "bundle")
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "weights.safetensors"]
    state_dict, config = load_checkpoint(out)
    assert config == {"preprocessing": {"spacing": [1, 1, 2]}, "arch": "mlp"}
    again = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 1))
    again.load_state_dict(state_dict)
    x = torch.randn(2, 3)
    torch.testing.assert_close(again(x), model(x))
    assert json.loads((out / "config.json").read_text())["arch"] == "mlp"
    assert (out / "weights.safetensors").stat().st_mode & 0o044  # readable by others (not a private temp file)


def test_open_bundle_default_explicit_and_missing(tmp_path: Path) -> None:
    model = nn.Linear(3, 2).half()
    default = save_bundle(model, {"arch": "lin"}, tmp_path / "shipped")
    folder, state, config = open_bundle(None, default, "toy model", "pipelines/train_toy.py")
    assert folder == default and config == {"arch": "lin"}
    assert all(v.dtype == torch.float32 for v in state.values())  # fp16 bundle -> fp32
    torch.testing.assert_close(state["weight"], model.weight.float())
    assert open_bundle(default, tmp_path / "elsewhere", "toy model", "x.py")[0] == default
    with pytest.raises(InputError, match=r"toy model bundle not found; train it with `python pipelines/train_toy.py`"):
        open_bundle(None, tmp_path / "absent", "toy model", "pipelines/train_toy.py")
    with pytest.raises(InputError) as err:
        open_bundle(tmp_path / "typo", default, "toy model", "pipelines/train_toy.py")
    assert "train it" not in str(err.value) and "typo" in str(err.value)


def test_load_weights_explains_a_mismatch(tmp_path: Path) -> None:
    state = nn.Linear(3, 2).state_dict()
    target = nn.Linear(3, 2)
    load_weights(target, state, tmp_path)
    torch.testing.assert_close(target.weight, state["weight"])
    with pytest.raises(InputError, match="weights do not fit the stored architecture") as err:
        load_weights(nn.Linear(4, 2), state, tmp_path)
    assert "\n" not in str(err.value)
