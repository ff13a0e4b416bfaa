"""pipelines/gpu_check.py runs end to end on the CPU at --small size (the same code the GPU check runs)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow  # a fresh interpreter imports torch and transformers
def test_gpu_check_smoke_on_cpu(tmp_path: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("MASTER_PORT", None)  # the script picks a free port
    proc = subprocess.run(
        [
            sys.executable,
            "pipelines/gpu_check.py",
            "--device",
            "cpu",
            "--small",
            "--steps",
            "1",
            "--out",
            str(tmp_path),
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads((tmp_path / "gpu_check.json").read_text())
    for part in ("tokenizer_step", "report_step", "flat_memory"):
        assert "error" not in got[part], got[part]
    assert got["tokenizer_step"]["losses_finite"] and got["report_step"]["losses_finite"]
    assert got["report_step"]["trainable_parameters"] < got["report_step"]["parameters"]  # LoRA: base frozen
    assert got["report_step"]["strategy"].startswith("fsdp2")
    assert set(got["flat_memory"]["per_depth"]) == {"9", "33"}


def test_gpu_check_refuses_without_a_gpu() -> None:
    if __import__("torch").cuda.is_available():
        pytest.skip("a GPU is visible")
    proc = subprocess.run(
        [sys.executable, "pipelines/gpu_check.py", "--device", "cuda"], cwd=REPO, capture_output=True, text=True
    )
    assert proc.returncode == 2 and "no CUDA GPU is visible" in proc.stderr
