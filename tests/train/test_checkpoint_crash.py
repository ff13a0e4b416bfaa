"""Checkpoints survive a save that dies midway; a diverged loss stops training before any checkpoint."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import ctvl.train.checkpoint as ckpt_mod
from ctvl.errors import ConfigError
from ctvl.train import list_checkpoints, train
from ctvl.train.checkpoint import read_checkpoint, recover_checkpoints, save_checkpoint, step_dir_name
from tests.train.test_loop import assert_same_weights, final_weights, make_cfg
from tests.train.tiny_task import TinyTask

REPO = Path(__file__).resolve().parents[2]

# Re-saves step 3 of a run with zeroed weights and is SIGKILLed at the chosen moment.
KILLED_SAVE = """
import os, signal, sys
from pathlib import Path
import torch
import ctvl.atomic as atomic
import ctvl.train.checkpoint as ck
run, moment = Path(sys.argv[1]), sys.argv[2]
weights, config, state = ck.read_checkpoint(run / "checkpoints" / "step-00000003")
weights = {k: {n: torch.zeros_like(t) for n, t in v.items()} for k, v in weights.items()}
config = {k: v for k, v in config.items() if k not in ("format", "step")}
die = lambda *a, **k: os.kill(os.getpid(), signal.SIGKILL)
if moment == "weights":  # mid-write: the first file is on disk, the rest never comes
    real_save = ck.save_file
    def save_file(*a, **k):
        real_save(*a, **k)
        die()
    ck.save_file = save_file
else:  # mid-swap: the old folder is aside, the new one not yet renamed in
    real = os.replace
    def replace(src, dst):
        if Path(src).name.startswith(".tmp-step-"):
            die()
        real(src, dst)
    atomic.os.replace = replace
ck.save_checkpoint(run, 3, weights, config, state, keep_last=5)
"""


def hidden(run: Path) -> list[str]:
    return sorted(p.name for p in (run / "checkpoints").iterdir() if p.name.startswith("."))


@pytest.mark.parametrize("moment", ["weights", "swap"])
def test_killed_resave_keeps_the_previous_checkpoint_and_resume_works(tmp_path: Path, moment: str) -> None:
    run, ref = tmp_path / "run", tmp_path / "ref"
    for folder in (run, ref):
        train(TinyTask(), make_cfg(folder, steps=3, checkpoint_every=3, log_every=1))
    before = read_checkpoint(run / "checkpoints" / step_dir_name(3))[0]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", KILLED_SAVE, str(run), moment], cwd=REPO, env=env, capture_output=True)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()
    assert hidden(run)  # the killed writer left its temporaries (and, mid-swap, the old folder aside)

    resumed = train(TinyTask(), make_cfg(run, steps=6, checkpoint_every=3, log_every=1), resume=True)
    assert resumed.start_step == 3  # the old step-3 checkpoint was found (restored when it was aside)
    assert hidden(run) == []
    train(TinyTask(), make_cfg(ref, steps=6, checkpoint_every=3, log_every=1), resume=True)
    assert_same_weights(final_weights(ref), final_weights(run))  # as if the killed save never happened
    after = read_checkpoint(run / "checkpoints" / step_dir_name(3))[0]
    assert_same_weights(before, after)


def test_failed_resave_of_the_same_step_keeps_the_old_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    old = {"model": {"w": torch.ones(2)}}
    save_checkpoint(tmp_path, 3, old, {}, {"step": 3}, keep_last=2)

    def broken(*args: object, **kwargs: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(ckpt_mod.torch, "save", broken)  # the weights are written, state.pt fails
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(tmp_path, 3, {"model": {"w": torch.zeros(2)}}, {}, {"step": 3}, keep_last=2)
    weights, _, state = read_checkpoint(tmp_path / "checkpoints" / step_dir_name(3))
    torch.testing.assert_close(weights["model"]["w"], torch.ones(2))
    assert state == {"step": 3} and hidden(tmp_path) == []
    monkeypatch.undo()
    save_checkpoint(tmp_path, 3, {"model": {"w": torch.zeros(2)}}, {}, None, keep_last=2)  # a good re-save replaces
    weights, _, state = read_checkpoint(tmp_path / "checkpoints" / step_dir_name(3))
    torch.testing.assert_close(weights["model"]["w"], torch.zeros(2))
    assert state is None and hidden(tmp_path) == []


def test_recover_checkpoints_removes_old_style_leftovers(tmp_path: Path) -> None:
    save_checkpoint(tmp_path, 1, {"model": {"w": torch.ones(2)}}, {}, None, keep_last=2)
    root = tmp_path / "checkpoints"
    for name in (".tmp-step-00000002-k3j4h5g6", ".trash-step-00000001-123"):  # what earlier versions left
        (root / name).mkdir()
    assert recover_checkpoints(tmp_path) == []
    assert hidden(tmp_path) == [] and [s for s, _ in list_checkpoints(tmp_path)] == [1]


def test_nan_at_a_non_logging_step_stops_before_any_checkpoint(tmp_path: Path) -> None:
    cfg = make_cfg(tmp_path / "nan", steps=8, log_every=4, checkpoint_every=1, data={"nan_at_step": 2})
    with pytest.raises(ConfigError, match=r"training diverged: loss is nan at step 3 of run .*; no checkpoint") as err:
        train(TinyTask(), cfg)
    assert "\n" not in str(err.value)
    assert [s for s, _ in list_checkpoints(cfg.run_dir)] == [1, 2]  # step 3 (NaN) was never written
    for _, folder in list_checkpoints(cfg.run_dir):
        assert all(torch.isfinite(t).all() for t in read_checkpoint(folder)[0]["model"].values())
