"""Tests for ctvl.atomic: files and folders appear whole or not at all; old versions survive failures."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import ctvl.atomic as atomic
from ctvl.atomic import atomic_file, is_temporary, publish_dir, recover, remove_dir, write_json, write_text

REPO = Path(__file__).resolve().parents[1]


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def hidden(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_write_text_and_json_replace_atomically(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "card.md"
    write_text(target, "one")
    write_text(target, "two")
    assert target.read_text() == "two"
    write_json(tmp_path / "m.json", {"b": 1, "a": [1, 2]}, sort_keys=True)
    assert json.loads((tmp_path / "m.json").read_text()) == {"a": [1, 2], "b": 1}
    assert (tmp_path / "m.json").read_text().endswith("}\n")
    assert hidden(tmp_path) == [] and hidden(tmp_path / "sub") == []
    assert target.stat().st_mode & 0o044  # normal permissions, not a private temporary


def test_failed_file_write_keeps_the_old_file(tmp_path: Path) -> None:
    target = tmp_path / "state.json"
    write_text(target, "old")
    with pytest.raises(RuntimeError, match="boom"), atomic_file(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("boom")
    assert target.read_text() == "old" and hidden(tmp_path) == []


def test_temporary_names_are_unique_and_keep_the_suffix(tmp_path: Path) -> None:
    target = tmp_path / "scan.nii.gz"
    with atomic_file(target) as a, atomic_file(target) as b:
        assert a != b and a.parent == b.parent == tmp_path
        assert a.name.endswith(".nii.gz") and is_temporary(a.name)
        a.write_text("a")
        b.write_text("b")
    assert target.read_text() == "a"  # the last to finish wins, whole


def test_publish_dir_creates_and_replaces_whole(tmp_path: Path) -> None:
    target = tmp_path / "bundle"
    with publish_dir(target) as tmp:
        assert not target.exists()
        (tmp / "weights").write_text("v1")
        (tmp / "sub").mkdir()
        (tmp / "sub" / "x").write_text("v1")
    assert (target / "weights").read_text() == "v1"
    with publish_dir(target) as tmp:
        (tmp / "weights").write_text("v2")
        assert (target / "weights").read_text() == "v1"  # the old one stays readable meanwhile
    assert sorted(p.name for p in target.iterdir()) == ["weights"]
    assert (target / "weights").read_text() == "v2"
    assert hidden(tmp_path) == []
    assert target.stat().st_mode & 0o055


def test_failure_between_files_leaves_no_partial_folder(tmp_path: Path) -> None:
    target = tmp_path / "bundle"
    with pytest.raises(OSError, match="disk full"), publish_dir(target) as tmp:
        (tmp / "weights").write_text("new")
        raise OSError("disk full")
    assert not target.exists() and hidden(tmp_path) == []
    with publish_dir(target) as tmp:
        (tmp / "weights").write_text("old")
        (tmp / "card").write_text("old")
    with pytest.raises(OSError, match="disk full"), publish_dir(target) as tmp:
        (tmp / "weights").write_text("new")
        raise OSError("disk full")
    assert {p.name: p.read_text() for p in target.iterdir()} == {"weights": "old", "card": "old"}
    assert hidden(tmp_path) == []


def test_failed_swap_puts_the_old_folder_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "ckpt"
    with publish_dir(target) as tmp:
        (tmp / "w").write_text("old")
    real = os.replace
    calls = []

    def flaky(src: object, dst: object) -> None:
        calls.append(Path(src).name)
        if Path(src).name.startswith(".tmp-ckpt.") and Path(dst) == target:
            raise OSError("rename failed")
        real(src, dst)

    monkeypatch.setattr(atomic.os, "replace", flaky)
    with pytest.raises(OSError, match="rename failed"), publish_dir(target) as tmp:
        (tmp / "w").write_text("new")
    assert calls[0] == "ckpt"  # the old folder had been moved aside ...
    assert (target / "w").read_text() == "old"  # ... and came back
    assert hidden(tmp_path) == []


def test_recover_restores_an_aside_and_drops_dead_temporaries(tmp_path: Path) -> None:
    pid = dead_pid()
    aside = tmp_path / f".old-ckpt.{pid}.0123abcd"
    aside.mkdir()
    (aside / "w").write_text("old")
    temp = tmp_path / f".tmp-ckpt.{pid}.89abcdef"
    temp.mkdir()
    (temp / "w").write_text("new, maybe partial")
    doomed = tmp_path / ".del-gone.1.00000000"
    doomed.mkdir()
    live = tmp_path / f".tmp-other.{os.getpid()}.00112233"  # a writer still at work: left alone
    live.mkdir()
    assert recover(tmp_path) == [tmp_path / "ckpt"]
    assert (tmp_path / "ckpt" / "w").read_text() == "old"
    assert hidden(tmp_path) == [live.name]


def test_recover_drops_an_aside_once_the_new_folder_is_in(tmp_path: Path) -> None:
    (tmp_path / "ckpt").mkdir()
    (tmp_path / "ckpt" / "w").write_text("new")
    aside = tmp_path / f".old-ckpt.{dead_pid()}.0123abcd"
    aside.mkdir()
    assert recover(tmp_path, "ckpt") == []
    assert hidden(tmp_path) == [] and (tmp_path / "ckpt" / "w").read_text() == "new"


KILLED_PUBLISH = """
import os, signal, sys
from pathlib import Path
import ctvl.atomic as atomic
target = Path(sys.argv[1])
real = os.replace
def replace(src, dst):
    if Path(dst) == target and Path(src).name.startswith(".tmp-"):
        os.kill(os.getpid(), signal.SIGKILL)  # killed between moving the old one aside and the new one in
    real(src, dst)
atomic.os.replace = replace
with atomic.publish_dir(target) as tmp:
    (tmp / "w").write_text("new")
"""


def test_killed_between_renames_the_old_folder_comes_back(tmp_path: Path) -> None:
    target = tmp_path / "bundle"
    with publish_dir(target) as tmp:
        (tmp / "w").write_text("old")
    proc = subprocess.run([sys.executable, "-c", KILLED_PUBLISH, str(target)], cwd=REPO, capture_output=True)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()
    assert not target.exists()  # the worst moment: neither name is the target ...
    assert any(n.startswith(".old-bundle.") for n in hidden(tmp_path))  # ... but the old one is whole, aside
    assert recover(tmp_path) == [target] and (target / "w").read_text() == "old"
    assert hidden(tmp_path) == []
    with publish_dir(target) as tmp:  # and the next publish goes through
        (tmp / "w").write_text("newer")
    assert (target / "w").read_text() == "newer" and hidden(tmp_path) == []


def test_the_next_publish_repairs_its_target_first(tmp_path: Path) -> None:
    aside = tmp_path / f".old-bundle.{dead_pid()}.0123abcd"
    aside.mkdir()
    (aside / "w").write_text("old")
    with pytest.raises(RuntimeError), publish_dir(tmp_path / "bundle"):
        raise RuntimeError("fails again")
    assert (tmp_path / "bundle" / "w").read_text() == "old" and hidden(tmp_path) == []


def test_remove_dir(tmp_path: Path) -> None:
    (tmp_path / "old" / "sub").mkdir(parents=True)
    remove_dir(tmp_path / "old")
    assert list(tmp_path.iterdir()) == []


def test_replace_dir_moves_a_finished_folder_over_the_old_one(tmp_path: Path) -> None:
    (tmp_path / "split").mkdir()
    (tmp_path / "split" / "a").write_text("old")
    staged = tmp_path / ".staging" / "split"
    staged.mkdir(parents=True)
    (staged / "b").write_text("new")
    atomic.replace_dir(staged, tmp_path / "split")
    assert [p.name for p in (tmp_path / "split").iterdir()] == ["b"] and not staged.exists()
    assert hidden(tmp_path) == [".staging"]


def test_unsynced_file_write_is_still_atomic(tmp_path: Path) -> None:
    with atomic_file(tmp_path / "cache.bin", fsync=False) as tmp:
        tmp.write_bytes(b"x")
    assert (tmp_path / "cache.bin").read_bytes() == b"x" and hidden(tmp_path) == []
