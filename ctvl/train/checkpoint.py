"""Atomic checkpoints, inference loading and small inference bundles.

A run folder holds ``checkpoints/step-00000100/`` directories, each with:

- ``model.safetensors`` — the model's weights (all of them, frozen ones included);
- ``ema.safetensors`` — the EMA weights, when the run keeps an EMA;
- ``extra-<name>.safetensors`` — weights of the task's extra modules (e.g. a discriminator);
- ``config.json`` — ``{"format", "step", "run": <TrainConfig>, "task": task.export_config(), ...}``
  (the task part carries e.g. the preprocessing spec, so inference preprocesses as training did);
- ``state.pt`` — optimiser, scheduler, grad-scaler, EMA count, per-rank RNG and elapsed time.

Why ``state.pt`` uses ``torch.save``: safetensors stores one flat name -> tensor map, while optimiser
and scheduler state dicts are nested (per-parameter dicts keyed by integer ids, param-group
hyper-parameters, step counters) and RNG states are Python tuples; flattening them would be a private
format for a file only :func:`ctvl.train.train` reads on ``resume``. It is loaded with
``weights_only=True`` (no code execution) and never shipped: bundles contain safetensors + JSON only.

Atomicity (:mod:`ctvl.atomic`): a checkpoint is written into a hidden temporary folder, each file is
fsynced, then the folder is swapped in with :func:`ctvl.atomic.publish_dir`. Re-saving a step that
exists renames the old folder aside and deletes it only once the new one is in place, so a kill at any
moment leaves a loadable checkpoint; :func:`recover_checkpoints` (run by every save and before a
resume) puts such an aside back and removes what a killed writer left. Old checkpoints beyond
``keep_last`` are renamed away before they are deleted, for the same reason. Bundles
(:func:`save_bundle`) are published the same way: the folder appears whole or not at all.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from ctvl.atomic import is_temporary, publish_dir, recover, remove_dir
from ctvl.errors import InputError

FORMAT = "ctvl-checkpoint-1"
CHECKPOINTS = "checkpoints"
_STEP_DIR = re.compile(r"^step-(\d{8,})$")


def step_dir_name(step: int) -> str:
    """``step-00000100`` for step 100."""
    return f"step-{step:08d}"


def list_checkpoints(run_dir: str | Path) -> list[tuple[int, Path]]:
    """Complete checkpoints of a run, oldest first, as (step, folder)."""
    root = Path(run_dir) / CHECKPOINTS
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if p.is_dir() and (m := _STEP_DIR.match(p.name))]
    return sorted(found)


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    """The newest complete checkpoint folder of a run, or None."""
    found = list_checkpoints(run_dir)
    return found[-1][1] if found else None


def _saveable(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """CPU, contiguous tensors; tied weights (shared storage) are cloned because safetensors refuses them."""
    out: dict[str, torch.Tensor] = {}
    seen: set[tuple[int, int]] = set()
    for key, tensor in state_dict.items():
        if not isinstance(tensor, torch.Tensor):
            raise TypeError(f"state dict entry '{key}' is a {type(tensor).__name__}, not a tensor")
        t = tensor.detach().to("cpu").contiguous()
        ident = (t.untyped_storage().data_ptr(), t.untyped_storage().nbytes())
        if ident in seen and t.numel() > 0:
            t = t.clone()
        seen.add(ident)
        out[key] = t
    return out


def _write_json(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n", encoding="utf-8")


def recover_checkpoints(run_dir: str | Path) -> list[Path]:
    """Repair a run's ``checkpoints/`` after a killed save (see :func:`ctvl.atomic.recover`).

    A checkpoint that was renamed aside for a re-save of its step comes back when the new one never
    landed; temporaries of dead writers are removed, as are the ``.tmp-*`` / ``.trash-*`` folders that
    earlier versions of this module left. Only the process that writes checkpoints may call it.

    Returns:
        The checkpoint folders that were restored.
    """
    root = Path(run_dir) / CHECKPOINTS
    if not root.is_dir():
        return []
    restored = recover(root)
    for p in root.iterdir():
        if p.name.startswith((".tmp-", ".trash-")) and not is_temporary(p.name) and p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
    return restored


def save_checkpoint(
    run_dir: str | Path,
    step: int,
    weights: Mapping[str, Mapping[str, torch.Tensor]],
    config: Mapping[str, Any],
    train_state: Mapping[str, Any] | None,
    keep_last: int,
) -> Path:
    """Write one checkpoint atomically and prune old ones.

    Args:
        run_dir: the run folder (``checkpoints/`` is created inside).
        step: completed optimiser steps.
        weights: file stem -> state dict, e.g. ``{"model": ..., "ema": ...}``; each becomes
            ``<stem>.safetensors``.
        config: JSON-serialisable config (written as ``config.json``; ``format`` and ``step`` are added).
        train_state: resume state for ``state.pt`` (torch.save), or None to skip.
        keep_last: keep only the newest ``keep_last`` checkpoints (>= 1).

    Returns:
        The checkpoint folder.
    """
    root = Path(run_dir) / CHECKPOINTS
    root.mkdir(parents=True, exist_ok=True)
    recover_checkpoints(run_dir)
    final = root / step_dir_name(step)
    with publish_dir(final) as tmp:  # a re-saved step keeps its old folder until the new one is in place
        for stem, state_dict in weights.items():
            save_file(_saveable(state_dict), str(tmp / f"{stem}.safetensors"), metadata={"format": "pt"})
        _write_json(tmp / "config.json", {**config, "format": FORMAT, "step": step})
        if train_state is not None:
            torch.save(dict(train_state), tmp / "state.pt")
    for _, old in list_checkpoints(run_dir)[:-keep_last]:
        remove_dir(old)
    return final


def read_checkpoint(
    ckpt_dir: str | Path, map_location: str | torch.device = "cpu"
) -> tuple[dict[str, dict[str, torch.Tensor]], dict[str, Any], dict[str, Any] | None]:
    """Read every part of a checkpoint folder.

    Returns:
        (file stem -> state dict, config dict, resume state or None when there is no ``state.pt``).

    Raises:
        InputError: missing or corrupt files.
    """
    ckpt_dir = Path(ckpt_dir)
    config = _read_config(ckpt_dir)
    weights: dict[str, dict[str, torch.Tensor]] = {}
    for f in sorted(ckpt_dir.glob("*.safetensors")):
        weights[f.stem] = _read_safetensors(f, map_location)
    state_path = ckpt_dir / "state.pt"
    state = None
    if state_path.exists():
        try:
            state = torch.load(state_path, map_location=map_location, weights_only=True)
        except Exception as exc:  # noqa: BLE001 - any unpickling failure means a corrupt file
            raise InputError(
                f"cannot read the training state ({type(exc).__name__}); the file is corrupt", path=state_path
            ) from None
    return weights, config, state


def _read_config(folder: Path) -> dict[str, Any]:
    path = folder / "config.json"
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError("no config.json here; expected a ctvl checkpoint or bundle folder", path=folder) from None
    except (OSError, ValueError) as exc:
        raise InputError(f"config.json is unreadable ({type(exc).__name__})", path=path) from None
    if not isinstance(config, dict):
        raise InputError("config.json must hold a JSON object", path=path)
    return config


def _read_safetensors(path: Path, map_location: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    try:
        return load_file(str(path), device=str(map_location))
    except (SafetensorError, OSError, ValueError) as exc:
        raise InputError(f"corrupt or unreadable safetensors file ({type(exc).__name__})", path=path) from None


def _config_folder(folder: Path) -> Path:
    """The folder whose ``config.json`` describes ``folder``: itself, or a run's newest checkpoint."""
    if not folder.is_dir():
        raise InputError("not a folder; pass a checkpoint, run or bundle folder", path=folder)
    if not (folder / "config.json").exists():
        latest = latest_checkpoint(folder)
        if latest is None:
            raise InputError("no config.json and no checkpoints/step-* folder; not a ctvl run", path=folder)
        folder = latest
    return folder


def read_config(path: str | Path) -> dict[str, Any]:
    """The ``config.json`` of a checkpoint, a run folder (newest checkpoint) or a bundle, without its weights.

    Raises:
        InputError: no checkpoint there, or an unreadable config.
    """
    return _read_config(_config_folder(Path(path)))


def load_checkpoint(
    path: str | Path, weights: str = "auto", map_location: str | torch.device = "cpu"
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Weights and config for inference from a checkpoint, a run folder (newest checkpoint) or a bundle.

    Args:
        path: a ``step-*`` checkpoint folder, a run folder, or a bundle folder from :func:`save_bundle`.
        weights: ``"auto"`` (EMA if the checkpoint has one, else the model), ``"ema"`` or ``"model"``.
        map_location: device for the tensors.

    Returns:
        (state dict for ``model.load_state_dict``, config dict from ``config.json``).

    Raises:
        InputError: no checkpoint there, the requested weights are missing, or files are corrupt.
    """
    folder = _config_folder(Path(path))
    config = _read_config(folder)
    if weights not in ("auto", "ema", "model"):
        raise ValueError(f"weights must be 'auto', 'ema' or 'model', got {weights!r}")
    order = {"auto": ["ema", "model", "weights"], "ema": ["ema"], "model": ["model", "weights"]}[weights]
    for stem in order:
        f = folder / f"{stem}.safetensors"
        if f.exists():
            return _read_safetensors(f, map_location), config
    raise InputError(f"no {' or '.join(s + '.safetensors' for s in order)} in this checkpoint", path=folder)


def open_bundle(
    path: str | Path | None, default: Path, what: str, pipeline: str
) -> tuple[Path, dict[str, torch.Tensor], dict[str, Any]]:
    """Find and read a model for inference: an explicit path, or the bundle shipped with ctvl.

    Args:
        path: bundle / checkpoint / run folder; None = ``default``.
        default: the bundle shipped with ctvl.
        what: what the model is, for messages (e.g. ``"report model"``).
        pipeline: the script that trains the default bundle (named in the error when it is missing).

    Returns:
        (folder, state dict with floating tensors in fp32, config dict) — see :func:`load_checkpoint`.

    Raises:
        InputError: no such folder, no checkpoint in it, or corrupt files.
    """
    folder = Path(path) if path is not None else default
    if not folder.exists():
        hint = f"; train it with `python {pipeline}`" if path is None else ""
        raise InputError(f"{what} bundle not found{hint}; or pass --model BUNDLE", path=folder)
    state, config = load_checkpoint(folder)
    state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}  # fp16 bundles -> fp32
    return folder, state, config


def load_weights(model: nn.Module, state: Mapping[str, torch.Tensor], folder: Path) -> None:
    """``model.load_state_dict(state)`` with a one-line :class:`InputError` when the weights do not fit."""
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise InputError(f"weights do not fit the stored architecture: {first}", path=folder) from None


def write_bundle_files(
    model: nn.Module | Mapping[str, torch.Tensor], config: Mapping[str, Any], folder: str | Path
) -> Path:
    """Write ``weights.safetensors`` + ``config.json`` into ``folder`` as they are (not atomically).

    For a folder that is being built by :func:`ctvl.atomic.publish_dir` (a bundle with more files).
    """
    folder = Path(folder)
    state = model.state_dict() if isinstance(model, nn.Module) else model
    save_file(_saveable(state), str(folder / "weights.safetensors"), metadata={"format": "pt"})
    _write_json(folder / "config.json", dict(config))
    return folder


def save_bundle(model: nn.Module | Mapping[str, torch.Tensor], config: Mapping[str, Any], out_dir: str | Path) -> Path:
    """Write a small inference bundle: ``weights.safetensors`` + ``config.json``.

    The folder is published whole with :func:`ctvl.atomic.publish_dir`: a reader sees the previous
    bundle (if any) or the new one, never a mixture; an existing folder is replaced entirely.

    Args:
        model: a module (its ``state_dict()`` is saved) or a state dict.
        config: JSON-serialisable config (e.g. the checkpoint's config with the preprocessing spec).
        out_dir: the bundle folder (created or replaced).

    Returns:
        The bundle folder; :func:`load_checkpoint` reads it back.
    """
    with publish_dir(out_dir) as tmp:
        write_bundle_files(model, config, tmp)
    return Path(out_dir)
