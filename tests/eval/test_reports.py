"""Batch evaluation: outputs written, ground truth from labels or from the reference reports, id checks."""

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from ctvl.data.labels import CTRATE_LABELS
from ctvl.errors import InputError
from ctvl.eval.labeler import write_labels
from ctvl.eval.reports import evaluate_report_files, evaluate_reports

FINDINGS = {
    "s1": "Emphysematous changes are observed in both lungs. No pleural effusion was detected.",
    "s2": "There is a 6 mm nodule in the right upper lobe. Heart size is normal.",
    "s3": "Bilateral pleural effusion. Subsegmental atelectasis in both lower lobes.",
}
IMPRESSIONS = {"s1": "Emphysema.", "s2": "Nodule in the right lung.", "s3": "Pleural effusion, atelectasis."}


def _csv(path: Path, header: list[str], rows: list[list]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def _ref(tmp_path: Path) -> Path:
    rows = [[k, FINDINGS[k], IMPRESSIONS[k]] for k in FINDINGS]
    return _csv(tmp_path / "ref.csv", ["VolumeName", "Findings_EN", "Impressions_EN"], rows)


def test_evaluate_reports_writes_all_outputs(tmp_path: Path) -> None:
    ids = list(FINDINGS)
    preds = [FINDINGS["s1"], "There is a nodule in the left lower lobe.", FINDINGS["s1"]]
    metrics = evaluate_reports(ids, preds, [FINDINGS[k] for k in ids], tmp_path / "out", meteor=False)
    out = tmp_path / "out"
    on_disk = json.loads((out / "metrics.json").read_text())
    assert on_disk == json.loads(json.dumps(metrics))
    for key in ("macro_f1", "micro_f1", "weighted_f1", "per_label"):
        assert key in on_disk["clinical"]
    for key in ("bleu_1", "bleu_2", "bleu_3", "bleu_4", "rouge_l", "meteor", "cider"):
        assert key in on_disk["nlg"]
    assert on_disk["degenerate"]["duplicate_fraction"] == pytest.approx(1 / 3)
    rows = list(csv.DictReader((out / "per_label.csv").open()))
    assert [r["label"] for r in rows] == list(CTRATE_LABELS)
    emphysema = next(r for r in rows if r["label"] == "Emphysema")
    assert (emphysema["tp"], emphysema["fp"], emphysema["fn"]) == ("1", "1", "0")
    assert (out / "per_label_f1.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    summary = (out / "summary.md").read_text()
    assert "macro" in summary and "duplicate fraction" in summary and "Emphysema" in summary
    pred_labels = list(csv.DictReader((out / "pred_labels.csv").open()))
    assert [r["VolumeName"] for r in pred_labels] == ids


def test_files_truth_from_labels_or_reference(tmp_path: Path) -> None:
    ref = _ref(tmp_path)
    pred = _csv(tmp_path / "pred.csv", ["VolumeName", "report"], [[k, FINDINGS[k]] for k in FINDINGS])
    labelled = evaluate_report_files(pred, ref, tmp_path / "a", meteor=False)
    assert labelled["clinical"]["macro_f1"] == pytest.approx(
        np.mean([1.0 if v["support"] else 0.0 for v in labelled["clinical"]["per_label"].values()])
    )
    assert labelled["clinical"]["micro_f1"] == 1.0
    assert labelled["inputs"]["reference_text"] == "Findings_EN"
    assert "Findings_EN+Impressions_EN" in labelled["clinical"]["ground_truth"]
    assert labelled["nlg"]["bleu_4"] == pytest.approx(1.0)
    full = evaluate_report_files(pred, ref, tmp_path / "b", reference="full", meteor=False)
    assert full["nlg"]["reference"] == "Findings_EN+Impressions_EN" and full["nlg"]["bleu_4"] < 1.0
    truth = np.zeros((3, 18), dtype=int)  # ground truth says nothing is present: every positive is a false one
    labels = write_labels(tmp_path / "labels.csv", list(FINDINGS), truth)
    given = evaluate_report_files(pred, ref, tmp_path / "c", labels_csv=labels, meteor=False)
    assert given["clinical"]["micro_precision"] == 0.0
    assert given["clinical"]["ground_truth"] == "labels file labels.csv"


def test_mismatched_ids_are_listed(tmp_path: Path) -> None:
    ref = _ref(tmp_path)
    pred = _csv(tmp_path / "pred.csv", ["VolumeName", "report"], [["s1", "x"], ["zz_9", "y"], ["zz_8", "z"]])
    message = r"2 of 3 prediction id\(s\) are not in the reference file ref.csv, e.g. zz_9, zz_8"
    with pytest.raises(InputError, match=message):
        evaluate_report_files(pred, ref, tmp_path / "out", meteor=False)
    labels = write_labels(tmp_path / "labels.csv", ["s1"], np.zeros((1, 18), dtype=int))
    pred_ok = _csv(tmp_path / "pred2.csv", ["VolumeName", "report"], [["s1", "x"], ["s2", "y"]])
    with pytest.raises(InputError, match="not in the labels file labels.csv, e.g. s2"):
        evaluate_report_files(pred_ok, ref, tmp_path / "out", labels_csv=labels, meteor=False)
    with pytest.raises(InputError, match="reference must be"):
        evaluate_report_files(pred_ok, ref, tmp_path / "out", reference="impression", meteor=False)
