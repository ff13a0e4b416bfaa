"""Atomic writes: a file or a folder appears whole or not at all, and the old version survives a crash.

The one place where ctvl writes data it cannot afford to lose (checkpoints, bundles, model cards,
manifests, metrics). It sits beside :mod:`ctvl.errors` below every layer and imports nothing from ctvl.

Files: :func:`atomic_file` hands out a unique temporary path in the target's folder; when the block
ends normally the file is fsynced and moved over the target with :func:`os.replace` (atomic on POSIX),
then the folder is fsynced. :func:`write_bytes`, :func:`write_text` and :func:`write_json` wrap it.

Folders: :func:`publish_dir` hands out a fresh temporary folder beside the target; when the block ends
normally every file in it is fsynced and the folder is swapped in:

1. the existing target (if any) is renamed aside (``.old-<name>.<pid>.<rand>``);
2. the new folder is renamed to the target;
3. the aside is deleted.

A reader therefore sees the old folder until step 1 and the new one from step 2, and after a crash
between 1 and 2 the old folder is still on disk in full. :func:`recover` (run by every
:func:`publish_dir`, and by whoever resumes from the folder) puts such an aside back when the target is
missing, and deletes temporaries and asides that a dead writer left. Temporary names carry the writer's
pid so a writer never removes another live writer's work in progress; names starting with ``.del-``
(see :func:`remove_dir`) are always garbage.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

__all__ = [
    "atomic_file",
    "fsync_dir",
    "is_temporary",
    "publish_dir",
    "recover",
    "remove_dir",
    "replace_dir",
    "write_bytes",
    "write_json",
    "write_text",
]

_LEFTOVER = re.compile(r"^\.(?P<kind>tmp|old)-(?P<name>.+)\.(?P<pid>\d+)\.(?P<rand>[0-9a-f]{8})(?P<suffix>.*)$")


def _hidden_name(kind: str, name: str, suffix: str = "") -> str:
    return f".{kind}-{name}.{os.getpid()}.{secrets.token_hex(4)}{suffix}"


def is_temporary(name: str) -> bool:
    """True for a name this module gives temporaries, asides or folders being deleted."""
    return bool(_LEFTOVER.match(name)) or name.startswith(".del-")


def fsync_dir(path: str | Path) -> None:
    """fsync a folder so that renames inside it survive a power cut (a no-op where unsupported)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _umask() -> int:
    try:  # Linux: read it without changing it (os.umask would briefly set 0 for every thread)
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _finish_file(path: Path, fsync: bool = True) -> None:
    """Normal permissions (some writers create private files) and fsync."""
    os.chmod(path, 0o666 & ~_umask())
    if fsync:
        with open(path, "rb") as fh:
            os.fsync(fh.fileno())


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


@contextmanager
def atomic_file(path: str | Path, suffix: str | None = None, *, fsync: bool = True) -> Iterator[Path]:
    """Write a file through a temporary path: the target changes only if the block succeeds.

    Args:
        path: the file to (re)place; its folder is created.
        suffix: ending of the temporary name (default: the target's own, e.g. ``.nii.gz``), for
            writers that pick a format from the file name (nibabel, matplotlib, numpy).
        fsync: flush to disk before the rename (default). False only for data that can be recomputed
            (caches): the rename stays atomic for other processes, but a power cut may leave a torn file.

    Yields:
        An empty, unique temporary file in the same folder (normal permissions); write to it by name.
        On error it is removed and the target is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ending = "".join(path.suffixes) if suffix is None else suffix
    while True:
        tmp = path.with_name(_hidden_name("tmp", path.name, ending))
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            break
        except FileExistsError:
            continue
    try:
        yield tmp
        _finish_file(tmp, fsync)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if fsync:
        fsync_dir(path.parent)


def write_bytes(path: str | Path, data: bytes) -> Path:
    """Atomically write ``data`` to ``path``; returns the path."""
    with atomic_file(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text(path: str | Path, text: str, encoding: str = "utf-8") -> Path:
    """Atomically write ``text`` to ``path``; returns the path."""
    return write_bytes(path, text.encode(encoding))


def write_json(
    path: str | Path, obj: Any, *, indent: int | None = 2, sort_keys: bool = False, default: Any = None
) -> Path:
    """Atomically write ``obj`` as JSON (plus a final newline); returns the path."""
    return write_text(path, json.dumps(obj, indent=indent, sort_keys=sort_keys, default=default) + "\n")


def _alive(pid: int) -> bool:
    """Whether a writer with this pid may still be at work (this process counts as alive)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


def recover(parent: str | Path, name: str | None = None) -> list[Path]:
    """Repair what an interrupted :func:`publish_dir` or :func:`atomic_file` left in ``parent``.

    For each target (``name``, or every target with leftovers when None): if the target is missing
    and an aside of it exists, the newest aside is renamed back (the old version returns whole);
    temporaries and asides of writers that are no longer running are deleted, as is every ``.del-``
    folder.

    Returns:
        The targets that were restored from an aside.
    """
    parent = Path(parent)
    if not parent.is_dir():
        return []
    asides: dict[str, list[tuple[float, Path]]] = {}
    stale: list[Path] = []
    for entry in parent.iterdir():
        if entry.name.startswith(".del-"):
            if name is None or entry.name.startswith(f".del-{name}."):
                stale.append(entry)
            continue
        m = _LEFTOVER.match(entry.name)
        if m is None or (name is not None and m["name"] != name):
            continue
        if m["kind"] == "old" and not m["suffix"]:
            try:
                asides.setdefault(m["name"], []).append((entry.stat().st_mtime, entry))
            except FileNotFoundError:
                continue
        elif not _alive(int(m["pid"])):
            stale.append(entry)
    restored = []
    for target_name, found in asides.items():
        target = parent / target_name
        found.sort()
        if not os.path.lexists(target):
            os.replace(found.pop()[1], target)  # the old folder comes back whole
            restored.append(target)
        for _, aside in found:
            m = _LEFTOVER.match(aside.name)
            if m is not None and not _alive(int(m["pid"])):
                stale.append(aside)
    for entry in stale:
        _remove(entry)
    if restored:
        fsync_dir(parent)
    return restored


def _sync_tree(root: Path) -> None:
    for folder, _, files in os.walk(root):
        for f in files:
            p = Path(folder) / f
            if not p.is_symlink():
                _finish_file(p)
        fsync_dir(folder)


def replace_dir(src: str | Path, target: str | Path) -> None:
    """Move a finished folder ``src`` (same filesystem) to ``target``, replacing what is there.

    Its files are fsynced first; an existing ``target`` is renamed aside, ``src`` renamed in, then the
    aside deleted (on a failed rename the old folder is put back). :func:`publish_dir` ends with it.
    """
    src, target = Path(src), Path(target)
    _sync_tree(src)
    _swap_in(src, target)


def _swap_in(tmp: Path, target: Path) -> None:
    parent = target.parent
    if not os.path.lexists(target):
        os.replace(tmp, target)
        fsync_dir(parent)
        return
    aside = parent / _hidden_name("old", target.name)
    os.replace(target, aside)
    try:
        os.replace(tmp, target)
    except BaseException:
        os.replace(aside, target)  # put the old version back
        raise
    fsync_dir(parent)
    _remove(aside)


@contextmanager
def publish_dir(target: str | Path) -> Iterator[Path]:
    """Build a folder beside ``target`` and swap it in whole when the block succeeds.

    Args:
        target: the folder to create or replace; its parent is created.

    Yields:
        A fresh empty folder (normal permissions) in the same parent. Write everything the target
        should hold into it; files there need not be written atomically. When the block raises,
        it is deleted and ``target`` is untouched.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    recover(target.parent, target.name)
    while True:
        tmp = target.with_name(_hidden_name("tmp", target.name))
        try:
            tmp.mkdir()
            break
        except FileExistsError:
            continue
    try:
        yield tmp
        replace_dir(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def remove_dir(path: str | Path) -> None:
    """Delete a folder so that no half-deleted copy is ever visible under its name.

    It is renamed to a hidden ``.del-`` name first (which :func:`recover` always deletes), then removed.
    """
    path = Path(path)
    trash = path.with_name(f".del-{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    os.replace(path, trash)
    fsync_dir(path.parent)
    shutil.rmtree(trash, ignore_errors=True)
