"""ctvl.eval.run: every scan gets a row, bad scans do not stop the batch, reruns resume, ranks share."""

from __future__ import annotations

import csv
import json
import shutil

from ctvl.eval.run import read_rows, run_eval
from tests.ranks import run_ranks
from tests.report.factory import shared


def _dataset_with_a_broken_scan(tmp_path):
    data = tmp_path / "data"
    shutil.copytree(shared()["data"], data)
    broken = data / "valid" / "valid_2" / "valid_2_a" / "valid_2_a_1.nii.gz"
    broken.write_bytes(b"this is not a NIfTI file")
    return data


def test_reports_metrics_and_a_recorded_error(tmp_path):
    data = _dataset_with_a_broken_scan(tmp_path)
    out = tmp_path / "out"
    result = run_eval(data, out, model=shared()["bundle"], meteor=False, batch_size=2, progress=False)
    assert (result.generated, result.errors, result.evaluated) == (3, 1, 2)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n_reports"] == 2 and "macro_f1" in metrics["clinical"]
    assert metrics["inputs"]["ground_truth"] == "dataset labels CSV"
    with open(out / "errors.csv", newline="") as fh:
        errors = list(csv.DictReader(fh))
    assert [e["VolumeName"] for e in errors] == ["valid_2_a_1.nii.gz"] and errors[0]["error"]
    with open(out / "predictions.csv", newline="") as fh:
        preds = list(csv.DictReader(fh))
    assert [p["VolumeName"] for p in preds] == ["valid_1_a_1.nii.gz", "valid_3_a_1.nii.gz"]
    run = json.loads((out / "run.json").read_text())
    assert run["scans"] == 3 and run["errors"] == 1 and run["visual_input"] is True


def test_rerun_skips_finished_scans_and_retries_failed_ones(tmp_path):
    data = _dataset_with_a_broken_scan(tmp_path)
    out = tmp_path / "out"
    run_eval(data, out, model=shared()["bundle"], meteor=False, progress=False)
    shutil.copyfile(
        shared()["data"] / "valid" / "valid_2" / "valid_2_a" / "valid_2_a_1.nii.gz",
        data / "valid" / "valid_2" / "valid_2_a" / "valid_2_a_1.nii.gz",
    )  # repaired
    again = run_eval(data, out, model=shared()["bundle"], meteor=False, progress=False)
    assert (again.generated, again.skipped, again.errors, again.evaluated) == (1, 2, 0, 3)


def test_a_crash_mid_write_loses_only_the_cut_row(tmp_path):
    out = tmp_path / "out"
    run_eval(shared()["data"], out, model=shared()["bundle"], meteor=False, progress=False, limit=2)
    with open(out / "predictions" / "rank-0.jsonl", "a") as fh:
        fh.write('{"VolumeName": "valid_3_a_1.nii.gz", "findi')  # killed mid-line
    assert set(read_rows(out / "predictions")) == {"valid_1_a_1.nii.gz", "valid_2_a_1.nii.gz"}
    again = run_eval(shared()["data"], out, model=shared()["bundle"], meteor=False, progress=False)
    assert (again.generated, again.evaluated) == (1, 3)


def _rank(data: str, out: str, model: str) -> tuple[int, int]:
    result = run_eval(data, out, model=model, meteor=False, progress=False)
    return result.generated, result.evaluated


def test_two_ranks_split_the_scans_and_rank0_evaluates(tmp_path):
    args = (str(shared()["data"]), str(tmp_path / "out"), str(shared()["bundle"]))
    results = run_ranks(_rank, args)
    assert results == [(2, 3), (1, 0)], results
    assert sorted(p.name for p in (tmp_path / "out" / "predictions").iterdir()) == ["rank-0.jsonl", "rank-1.jsonl"]
