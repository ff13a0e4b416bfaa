"""The training configuration: one dataclass, loaded from YAML, with ``key=value`` overrides.

Every model in ctvl is trained by :func:`ctvl.train.train` from a :class:`TrainConfig`. The generic
fields (steps, batch, optimiser, schedule, precision, checkpoints, logging) are checked here; the
free-form ``model:`` and ``data:`` sections belong to the task (see :mod:`ctvl.train.task`), which reads
them itself. Any key this module does not know is a :class:`ctvl.errors.ConfigError` naming the key and
the file, so a typo never silently falls back to a default.

Example::

    cfg = load_config("configs/phantom-cpu.yaml", ["lr=1e-3", "model.filters=32"])
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ctvl.errors import ConfigError

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
DEVICES = ("auto", "cpu", "cuda")
STRATEGIES = ("ddp", "fsdp")
FREE_FORM_SECTIONS = ("model", "data")


@dataclass
class TrainConfig:
    """Generic settings of one training run (the task reads ``model`` and ``data``)."""

    run_name: str = "run"  # name of the run; the default output folder is runs/<run_name>
    output_dir: str = ""  # folder for checkpoints and metrics.jsonl; "" -> runs/<run_name>
    seed: int = 0  # seeds model init, the data stream and every RNG (per rank)
    steps: int = 1000  # optimiser steps in total (a resumed run stops at the same step)
    batch_size: int = 8  # GLOBAL batch: samples per optimiser step summed over ranks and micro-steps
    micro_batch_size: int = 0  # samples per forward pass on one device; 0 -> batch_size / world_size
    lr: float = 3e-4  # peak learning rate of AdamW (reached at the end of warm-up)
    warmup_steps: int = 0  # linear warm-up from lr/warmup_steps to lr over this many steps
    min_lr: float = 0.0  # floor of the cosine decay, reached at the last step
    weight_decay: float = 0.0  # AdamW decoupled weight decay, applied to >= 2-D weights only
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])  # AdamW (beta1, beta2)
    grad_clip: float = 1.0  # max global L2 norm of the gradients; 0 disables clipping
    ema_decay: float | None = None  # keep an EMA of the weights with this decay (e.g. 0.999); null = off
    precision: str = "auto"  # fp32 | bf16 | fp16 | auto (bf16 on a GPU that has it, else fp32); CPU is fp32
    device: str = "auto"  # auto | cpu | cuda (under torchrun each rank takes cuda:LOCAL_RANK)
    checkpoint_every: int = 500  # save a checkpoint every N steps (and always at the last step); 0 = end only
    keep_last: int = 3  # keep only the newest K checkpoints
    log_every: int = 10  # write a metrics.jsonl record every N steps (and at the last step)
    init_from: str | None = None  # start from these weights (checkpoint, run folder or bundle); null = fresh
    strategy: str = "ddp"  # ddp (every rank holds the whole model) | fsdp (FSDP2: weights, grads, AdamW sharded)
    activation_checkpointing: bool = False  # recompute each block's activations in backward (the task's blocks)
    model: dict[str, Any] = field(default_factory=dict)  # free-form: interpreted by the task
    data: dict[str, Any] = field(default_factory=dict)  # free-form: interpreted by the task

    def __post_init__(self) -> None:
        validate(self)

    @property
    def run_dir(self) -> Path:
        """The folder that holds this run's checkpoints and metrics log."""
        return Path(self.output_dir) if self.output_dir else Path("runs") / self.run_name

    def to_dict(self) -> dict[str, Any]:
        """A JSON/YAML-serialisable copy of every field."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any], source: str = "config") -> TrainConfig:
        """Build a config from a mapping, checking keys and types.

        Args:
            raw: field name -> value (as read from YAML).
            source: the file (or "override") named in error messages.

        Raises:
            ConfigError: unknown key, wrong type or invalid value.
        """
        if not isinstance(raw, dict):
            raise ConfigError(f"the training config must be a YAML mapping, got {type(raw).__name__}", path=source)
        known = {f.name: f for f in dataclasses.fields(cls)}
        values: dict[str, Any] = {}
        for key, value in raw.items():
            if key not in known:
                raise ConfigError(
                    f"unknown key '{key}' in the training config; known keys: {', '.join(known)}", path=source
                )
            values[key] = _coerce(key, value, known[key].type, source)
        try:
            return cls(**values)
        except ConfigError as exc:
            raise ConfigError(str(exc), path=source) from None


def validate(cfg: TrainConfig) -> None:
    """Check value ranges that types alone cannot express.

    Raises:
        ConfigError: naming the offending key and the allowed values.
    """
    positive = {
        "steps": cfg.steps,
        "batch_size": cfg.batch_size,
        "keep_last": cfg.keep_last,
        "log_every": cfg.log_every,
    }
    for key, value in positive.items():
        if value < 1:
            raise ConfigError(f"'{key}' must be >= 1, got {value}")
    non_negative = {
        "micro_batch_size": cfg.micro_batch_size,
        "warmup_steps": cfg.warmup_steps,
        "checkpoint_every": cfg.checkpoint_every,
        "min_lr": cfg.min_lr,
        "weight_decay": cfg.weight_decay,
        "grad_clip": cfg.grad_clip,
    }
    for key, value in non_negative.items():
        if value < 0 or (isinstance(value, float) and not math.isfinite(value)):
            raise ConfigError(f"'{key}' must be >= 0, got {value}")
    if not cfg.lr > 0 or not math.isfinite(cfg.lr):
        raise ConfigError(f"'lr' must be > 0, got {cfg.lr}")
    if cfg.min_lr > cfg.lr:
        raise ConfigError(f"'min_lr' ({cfg.min_lr}) must not exceed 'lr' ({cfg.lr})")
    if len(cfg.betas) != 2 or not all(0.0 <= b < 1.0 for b in cfg.betas):
        raise ConfigError(f"'betas' must be two numbers in [0, 1), got {cfg.betas}")
    if cfg.ema_decay is not None and not 0.0 < cfg.ema_decay < 1.0:
        raise ConfigError(f"'ema_decay' must be in (0, 1) or null, got {cfg.ema_decay}")
    if cfg.precision not in PRECISIONS:
        raise ConfigError(f"'precision' must be one of {', '.join(PRECISIONS)}, got '{cfg.precision}'")
    if cfg.device not in DEVICES:
        raise ConfigError(f"'device' must be one of {', '.join(DEVICES)}, got '{cfg.device}'")
    if cfg.strategy not in STRATEGIES:
        raise ConfigError(f"'strategy' must be one of {', '.join(STRATEGIES)}, got '{cfg.strategy}'")
    if cfg.strategy == "fsdp" and cfg.ema_decay is not None:
        raise ConfigError(
            "'ema_decay' is not supported with strategy fsdp (an EMA copy would be unsharded); "
            "set ema_decay: null or strategy: ddp"
        )
    if cfg.strategy == "fsdp" and cfg.precision == "fp16":
        raise ConfigError(
            "strategy fsdp trains in fp32 or bf16; fp16 needs a loss scaler over sharded "
            "gradients, which ctvl does not run; set precision: bf16"
        )
    if not cfg.run_name or "/" in cfg.run_name:
        raise ConfigError(f"'run_name' must be a non-empty name without '/', got '{cfg.run_name}'")


def accumulation_steps(cfg: TrainConfig, world_size: int) -> tuple[int, int]:
    """Split the global batch into (micro_batch_size, accumulation steps) for ``world_size`` ranks.

    ``batch_size = micro_batch_size * accumulation * world_size`` must hold exactly.

    Raises:
        ConfigError: if the global batch does not divide evenly.
    """
    micro = cfg.micro_batch_size or cfg.batch_size // world_size
    per_step = micro * world_size
    if micro < 1 or cfg.batch_size % per_step:
        raise ConfigError(
            f"batch_size {cfg.batch_size} is not a multiple of micro_batch_size {micro or cfg.micro_batch_size}"
            f" x {world_size} rank(s); choose micro_batch_size so that it divides"
        )
    return micro, cfg.batch_size // per_step


class _Loader(yaml.SafeLoader):
    """SafeLoader that also reads ``1e-3`` as a float (YAML 1.2 style; PyYAML needs a dot)."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def parse_value(text: str) -> Any:
    """Parse the right-hand side of a ``key=value`` override like a YAML scalar/list.

    ``"3"`` -> 3, ``"1e-3"`` -> 0.001, ``"null"`` -> None, ``"[1,2]"`` -> [1, 2], ``"abc"`` -> "abc".
    """
    try:
        return yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError:
        return text


def parse_overrides(overrides: Sequence[str]) -> dict[str, Any]:
    """Turn ``["lr=1e-3", "model.filters=32"]`` into a nested mapping.

    Raises:
        ConfigError: an item without ``=`` or with an empty key.
    """
    nested: dict[str, Any] = {}
    for item in overrides:
        key, sep, value = item.partition("=")
        parts = key.strip().split(".")
        if not sep or not all(parts):
            raise ConfigError(f"override '{item}' is not of the form key=value (dotted keys allowed)")
        node = nested
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"override '{item}' conflicts with another override of '{part}'")
            node = child
        node[parts[-1]] = parse_value(value.strip())
    return nested


def apply_overrides(raw: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Return a copy of ``raw`` with dotted ``key=value`` overrides merged in.

    Dotted keys reach only into mappings (``model.x.y=1``); ``lr.x=1`` is an error because ``lr`` is
    a number. Unknown top-level keys are caught later by :meth:`TrainConfig.from_dict`.

    Raises:
        ConfigError: malformed override, or a dotted key that goes through a non-mapping value.
    """

    def merge(base: dict[str, Any], patch: dict[str, Any], prefix: str) -> dict[str, Any]:
        out = dict(base)
        for key, value in patch.items():
            if isinstance(value, dict):
                current = out.get(key, {})
                if current is None:
                    current = {}
                if not isinstance(current, dict):
                    raise ConfigError(f"override '{prefix}{key}.…' goes into '{prefix}{key}', which is not a mapping")
                out[key] = merge(current, value, f"{prefix}{key}.")
            else:
                out[key] = value
        return out

    return merge(raw, parse_overrides(overrides), "")


def load_config(path: str | Path, overrides: Sequence[str] = ()) -> TrainConfig:
    """Read a training config from YAML and apply ``key=value`` overrides.

    ``run_name`` defaults to the file name without extension.

    Args:
        path: the YAML file.
        overrides: e.g. ``["steps=100", "model.filters=32"]``.

    Raises:
        ConfigError: missing/unreadable file, bad YAML, unknown key, wrong type or value.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("config file not found; pass an existing YAML file (see configs/)", path=path) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the config file ({exc.__class__.__name__})", path=path) from None
    try:
        raw = yaml.load(text, Loader=_Loader) or {}  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        line = f" at line {where.line + 1}" if where is not None else ""
        raise ConfigError(f"invalid YAML{line}; fix the syntax", path=path) from None
    if not isinstance(raw, dict):
        raise ConfigError(f"the training config must be a YAML mapping, got {type(raw).__name__}", path=path)
    raw.setdefault("run_name", path.stem)
    if overrides:
        source = f"{path} (with overrides {' '.join(overrides)})"
        return TrainConfig.from_dict(apply_overrides(raw, overrides), source=source)
    return TrainConfig.from_dict(raw, source=str(path))


def _coerce(key: str, value: Any, hint: Any, source: str) -> Any:
    """Check/convert one value against the field's annotation (a string under postponed annotations)."""
    hint = str(hint)
    optional = "None" in hint
    if value is None:
        if optional:
            return None
        raise ConfigError(f"'{key}' must not be null", path=source)
    base = hint.replace(" | None", "")

    def wrong(expected: str) -> ConfigError:
        return ConfigError(f"'{key}' must be {expected}, got {value!r}", path=source)

    if base == "bool":
        if not isinstance(value, bool):
            raise wrong("true or false")
        return value
    if base == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise wrong("an integer")
        return value
    if base == "float":
        if isinstance(value, bool):
            raise wrong("a number")
        try:
            return float(value)
        except (TypeError, ValueError):
            raise wrong("a number") from None
    if base == "str":
        if isinstance(value, (dict, list)):
            raise wrong("a string")
        return str(value)
    if base.startswith("list"):
        if not isinstance(value, (list, tuple)):
            raise wrong("a list of numbers")
        try:
            return [float(v) for v in value]
        except (TypeError, ValueError):
            raise wrong("a list of numbers") from None
    if base.startswith("dict"):
        if not isinstance(value, dict):
            raise wrong("a mapping")
        return dict(value)
    raise AssertionError(f"unhandled config annotation {hint} for {key}")
