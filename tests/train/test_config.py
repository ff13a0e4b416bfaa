"""Tests for ctvl.train.config: YAML loading, validation, overrides, batch split."""

from __future__ import annotations

from pathlib import Path

import pytest

from ctvl.errors import ConfigError
from ctvl.train.config import (
    TrainConfig,
    accumulation_steps,
    apply_overrides,
    load_config,
    parse_overrides,
    parse_value,
)

GOOD = """\
output_dir: runs/x
steps: 100
batch_size: 16
micro_batch_size: 4
lr: 3e-4
min_lr: 1.0e-5
warmup_steps: 10
ema_decay: 0.999
precision: bf16
model:
  filters: 32
  levels: [1, 2, 4]
data:
  root: data/phantom
"""


def write(tmp_path: Path, text: str, name: str = "cfg.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_load_reads_fields_and_free_form_sections(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, GOOD, "phantom-cpu.yaml"))
    assert cfg.run_name == "phantom-cpu"  # defaults to the file stem
    assert cfg.steps == 100 and cfg.batch_size == 16 and cfg.micro_batch_size == 4
    assert cfg.lr == pytest.approx(3e-4) and isinstance(cfg.lr, float)  # "3e-4" is a float, not a string
    assert cfg.min_lr == pytest.approx(1e-5)
    assert cfg.ema_decay == pytest.approx(0.999)
    assert cfg.precision == "bf16"
    assert cfg.model == {"filters": 32, "levels": [1, 2, 4]}
    assert cfg.data == {"root": "data/phantom"}
    assert cfg.run_dir == Path("runs/x")
    assert cfg.grad_clip == 1.0 and cfg.betas == [0.9, 0.999]  # defaults


def test_default_run_dir_uses_run_name(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, "run_name: abc\nsteps: 3\n"))
    assert cfg.run_dir == Path("runs") / "abc"


def test_unknown_key_names_key_and_file(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD + "learning_rate: 0.1\n")
    with pytest.raises(ConfigError, match="learning_rate") as info:
        load_config(path)
    assert str(path) in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("line", "pattern"),
    [
        ("steps: many", "'steps' must be an integer"),
        ("steps: 0", "'steps' must be >= 1"),
        ("lr: -1.0", "'lr' must be > 0"),
        ("lr: fast", "'lr' must be a number"),
        ("precision: fp8", "'precision' must be one of"),
        ("device: tpu", "'device' must be one of"),
        ("ema_decay: 1.5", "'ema_decay' must be in"),
        ("min_lr: 1.0", "'min_lr'"),
        ("betas: [0.9]", "'betas'"),
        ("model: 3", "'model' must be a mapping"),
        ("keep_last: 0", "'keep_last' must be >= 1"),
        ("steps: null", "'steps' must not be null"),
        ("use_amp: true", "unknown key 'use_amp'"),
    ],
)
def test_invalid_values_raise_config_error(tmp_path: Path, line: str, pattern: str) -> None:
    path = write(tmp_path, f"steps: 10\n{line}\n")
    with pytest.raises(ConfigError, match=pattern) as info:
        load_config(path)
    assert str(path) in str(info.value)


def test_missing_file_and_bad_yaml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "absent.yaml")
    with pytest.raises(ConfigError, match="invalid YAML at line 2"):
        load_config(write(tmp_path, "steps: 3\nlr: a: b\n"))
    with pytest.raises(ConfigError, match="must be a YAML mapping"):
        load_config(write(tmp_path, "- a\n- b\n"))


def test_parse_value_types() -> None:
    assert parse_value("3") == 3
    assert parse_value("1e-3") == pytest.approx(1e-3)
    assert parse_value("null") is None
    assert parse_value("true") is True
    assert parse_value("[1, 2]") == [1, 2]
    assert parse_value("runs/a b") == "runs/a b"


def test_overrides_top_level_and_dotted(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD)
    cfg = load_config(path, ["lr=1e-3", "steps=7", "model.filters=96", "model.new.deep=2", "ema_decay=null"])
    assert cfg.lr == pytest.approx(1e-3) and cfg.steps == 7
    assert cfg.model == {"filters": 96, "levels": [1, 2, 4], "new": {"deep": 2}}
    assert cfg.ema_decay is None
    assert cfg.data == {"root": "data/phantom"}  # untouched


def test_override_errors(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD)
    with pytest.raises(ConfigError, match="unknown key 'lrr'") as info:
        load_config(path, ["lrr=1"])
    assert "lrr=1" in str(info.value)  # the override is named as the source
    with pytest.raises(ConfigError, match="not of the form key=value"):
        load_config(path, ["lr"])
    with pytest.raises(ConfigError, match="not of the form"):
        parse_overrides(["model..x=1"])
    with pytest.raises(ConfigError, match="not a mapping"):
        apply_overrides({"lr": 0.1}, ["lr.x=1"])
    with pytest.raises(ConfigError, match="'steps' must be an integer"):
        load_config(path, ["steps=abc"])


def test_to_dict_round_trip() -> None:
    cfg = TrainConfig(run_name="r", steps=5, model={"a": [1, 2]}, ema_decay=0.5)
    again = TrainConfig.from_dict(cfg.to_dict())
    assert again == cfg


def test_accumulation_steps() -> None:
    cfg = TrainConfig(batch_size=16, micro_batch_size=2)
    assert accumulation_steps(cfg, 1) == (2, 8)
    assert accumulation_steps(cfg, 2) == (2, 4)
    assert accumulation_steps(TrainConfig(batch_size=8), 2) == (4, 1)  # micro defaults to batch / world
    with pytest.raises(ConfigError, match="not a multiple"):
        accumulation_steps(TrainConfig(batch_size=10, micro_batch_size=4), 1)
    with pytest.raises(ConfigError, match="not a multiple"):
        accumulation_steps(TrainConfig(batch_size=2), 4)
