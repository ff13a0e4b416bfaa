"""``ctvl synthesize`` / ``ctvl train synthesis`` / ``ctvl bench synthesis``: outputs and one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from ctvl.cli import main
from ctvl.io import read_volume
from tests.synthesis.factory import TINY_MODEL


@pytest.fixture(scope="module")
def bundle(tiny_bundle: Path) -> Path:
    return tiny_bundle


def error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:"), err
    return err[0]


def test_synthesize_writes_volumes_and_recipes(bundle: Path, tmp_path: Path, capsys):
    code = main(
        [
            "synthesize",
            "small left pleural effusion",
            "-o",
            str(tmp_path / "s.nii.gz"),
            "--model",
            str(bundle),
            "--steps",
            "2",
            "--n",
            "2",
            "--seed",
            "7",
            "--depth",
            "10",
            "--json",
        ]
    )
    captured = capsys.readouterr()
    assert code == 0 and "generating 17 slices" in captured.err
    recipes = json.loads(captured.out)
    assert [r["seed"] for r in recipes] == [7, 8] and recipes[0]["prompt_labels"]["Pleural effusion"] == 1
    assert read_volume(tmp_path / "s_1.nii.gz").shape[2] == 17 and (tmp_path / "s_0.json").is_file()


@pytest.mark.parametrize(
    "args, match",
    [
        (["--steps", "-3"], "--steps must be >= 1"),
        (["--guidance", "-1"], "--guidance must be >= 0"),
        (["--n", "0"], "--n must be >= 1"),
        (["--depth", "0"], "--depth"),
    ],
)
def test_bad_options_are_one_line_errors(bundle: Path, tmp_path: Path, capsys, args, match):
    code = main(["synthesize", "cardiomegaly", "-o", str(tmp_path / "x.nii.gz"), "--model", str(bundle), *args])
    assert code == 2 and match in error_line(capsys)
    assert not (tmp_path / "x.nii.gz").exists()


def test_bad_output_and_missing_model(tmp_path: Path, capsys):
    assert main(["synthesize", "cardiomegaly", "-o", str(tmp_path / "x.png")]) == 2
    assert ".nii.gz" in error_line(capsys)
    assert main(["synthesize", "cardiomegaly", "-o", str(tmp_path / "x.nii.gz"), "--model", str(tmp_path / "no")]) == 2
    assert "bundle not found" in error_line(capsys)


def test_train_synthesis_and_resume(tmp_path: Path, capsys):
    from tests.report.factory import tiny_dataset, tiny_tokenizer_bundle

    data, tok = tiny_dataset(tmp_path / "data", train=4, valid=0), tiny_tokenizer_bundle(tmp_path / "tok")
    cfg = {
        "run_name": "t",
        "output_dir": str(tmp_path / "run"),
        "steps": 2,
        "batch_size": 2,
        "checkpoint_every": 1,
        "log_every": 1,
        "device": "cpu",
        "model": TINY_MODEL,
        "data": {"root": str(data), "tokenizer": str(tok), "cache_dir": str(tmp_path / "cache")},
    }
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert main(["train", "synthesis", "--config", str(path)]) == 0
    assert "to step 2" in capsys.readouterr().out
    assert main(["train", "synthesis", "--config", str(path), "--resume", "steps=3"]) == 0
    assert "to step 3" in capsys.readouterr().out


def test_bench_prints_json_with_baselines(bundle: Path, capsys):
    assert main(["bench", "synthesis", "--model", str(bundle), "--steps", "1", "--repeats", "1", "--threads", "1"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["volume_seconds"]["median"] > 0 and set(result["baseline"]) == {
        "text_encoder_seconds",
        "guided_unet_eval_seconds",
        "tokenizer_decode_seconds",
    }
    assert result["target_seconds"] == 10.0 and isinstance(result["pass"], bool)
