"""``ctvl bench report``: the warm worker on a small scan, the JSON of a whole run, a missing scan refused."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ctvl.bench import report as bench
from ctvl.errors import InputError
from ctvl.io.nifti import write_nifti
from ctvl.io.volume import Volume


@pytest.fixture(scope="module")
def scan(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("bench") / "small.nii.gz"
    data = np.full((64, 64, 33), -800.0, dtype=np.float32)
    write_nifti(Volume(data, np.diag([6.0, 6.0, 11.25, 1.0])), path, dtype="int16")
    return path


def test_warm_times_each_stage(scan: Path) -> None:
    out = bench.warm(str(scan), None, threads=1, repeats=1)
    assert len(out["runs_s"]) == 1 and out["runs_s"][0] > 0
    assert set(out["stages"]) == {"read_s", "preprocess_encode_and_diagnose_s", "generate_and_label_s"}
    assert out["scan_shape"] == [64, 64, 33] and out["report_words"] > 0


def test_run_benchmark_reports_cold_warm_and_baselines(scan: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def fake(cmd: list[str], env: dict[str, str]) -> tuple[float, str]:  # no subprocesses: fixed timings
        calls.append(cmd)
        if "--worker" in cmd:
            return 9.0, json.dumps({"runs_s": [1.0, 2.0, 3.0], "scan_shape": [64, 64, 33]})
        if "report" in cmd:
            return 6.0, json.dumps({"report": "No effusion.", "labels": {}, "warnings": []})
        return (1.5 if "nibabel" in cmd[2] else 4.0), ""

    monkeypatch.setattr(bench, "_timed", fake)
    out = bench.run_benchmark(scan, threads=2, repeats=2)
    assert out["cold_report_s"] == 6.0 and out["baseline_read_s"] == 1.5 and out["cold_over_read"] == 4.0
    assert out["import_floor_s"] == 4.0 and out["warm_report_s"] == 2.0
    assert out["meets"] == {"cold": False, "warm": False} and len(calls) == 7


def test_missing_scan_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="scan not found"):
        bench.run_benchmark(tmp_path / "nope.nii.gz")
