"""``pipelines/bench_oned_seeds.py``: a smoke run (3 steps, 1 training patient) writes its summary."""

import importlib.util
import json
from pathlib import Path

import pytest
import torch

PIPELINE = Path(__file__).resolve().parents[2] / "pipelines" / "bench_oned_seeds.py"


def load_pipeline():
    spec = importlib.util.spec_from_file_location("bench_oned_seeds", PIPELINE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(autouse=True)
def keep_thread_count():
    """The pipeline sets torch's thread count; give the rest of the suite its own back."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def test_strictly_falling():
    pipeline = load_pipeline()
    assert pipeline.strictly_falling([3.0, 2.0, 1.0]) and not pipeline.strictly_falling([3.0, 2.0, 2.0])


def test_smoke_run_writes_runs_and_summary(tmp_path):
    pipeline = load_pipeline()
    argv = [
        "--seeds",
        "0,1",
        "--variants",
        "tail-full50,nested-uniform",
        "--steps",
        "3",
        "--train-cases",
        "1",
        "--threads",
        "1",
        "--out",
        str(tmp_path),
    ]
    assert pipeline.main(argv) == 0
    result = json.loads((tmp_path / "seeds.json").read_text())
    assert [(r["variant"], r["seed"]) for r in result["runs"]] == [
        ("tail-full50", 0),
        ("tail-full50", 1),
        ("nested-uniform", 0),
        ("nested-uniform", 1),
    ]
    for run in result["runs"]:
        assert len(run["mse"]) == 8 and all(v > 0 for v in run["mse"])
        assert run["falls_at_every_k"] == pipeline.strictly_falling(run["mse"])
    summary = result["summary"]["tail-full50"]
    assert summary["runs"] == 2
    assert summary["falls_at_every_k"] == sum(r["falls_at_every_k"] for r in result["runs"][:2])


@pytest.mark.parametrize("argv", [["--variants", "tail-sometimes"], ["--seeds", "0,one"]])
def test_bad_arguments_are_refused_in_one_line(argv, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        load_pipeline().main([*argv, "--out", str(tmp_path)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "error:" in err[-1] and argv[1].split(",")[-1] in err[-1]  # names what is wrong
