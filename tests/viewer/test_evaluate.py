"""The Evaluate tab's call: same numbers as ctvl.eval.reports, tables, chart and a results zip."""

import json
import os
import time
import zipfile

import pytest

from ctvl.data.labels import CTRATE_LABELS
from ctvl.errors import InputError
from ctvl.eval.reports import evaluate_report_files
from ctvl.viewer.evaluate import PER_LABEL_HEADERS, WorkDirs, run_evaluation

PRED = (
    "VolumeName,report_text\n"
    "a,Cardiomegaly is present. No pleural effusion.\n"
    "b,Bilateral pleural effusion. A lung nodule in the right upper lobe.\n"
    "c,No acute findings.\n"
)
REF = (
    "VolumeName,Findings_EN,Impressions_EN\n"
    "a,The heart is enlarged. No pleural effusion.,Cardiomegaly.\n"
    "b,Pleural effusion on both sides. Emphysema.,Effusion and emphysema.\n"
    "c,Normal lungs.,No acute findings.\n"
)


def write_csvs(folder, labels=True):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "pred.csv").write_text(PRED)
    (folder / "ref.csv").write_text(REF)
    if labels:
        rows = {"a": {"Cardiomegaly"}, "b": {"Pleural effusion", "Emphysema"}, "c": set()}
        lines = ["VolumeName," + ",".join(CTRATE_LABELS)]
        lines += [f"{rid}," + ",".join(str(int(n in pos)) for n in CTRATE_LABELS) for rid, pos in rows.items()]
        (folder / "labels.csv").write_text("\n".join(lines) + "\n")
    return folder / "pred.csv", folder / "ref.csv", (folder / "labels.csv") if labels else None


@pytest.mark.parametrize("with_labels", [True, False])
def test_same_metrics_as_the_cli_function(tmp_path, with_labels):
    pred, ref, labels = write_csvs(tmp_path / "in", with_labels)
    result = run_evaluation(pred, ref, labels, tmp_path / "work", meteor=False)
    direct = evaluate_report_files(pred, ref, tmp_path / "direct", labels_csv=labels, meteor=False)
    assert result.metrics["clinical"] == direct["clinical"] and result.metrics["nlg"] == direct["nlg"]
    table = dict((row[0], row[1]) for row in result.summary_rows)
    assert table["reports"] == 3
    assert table["clinical macro f1"] == round(direct["clinical"]["macro_f1"], 4)
    assert table["METEOR"] == "skipped" and isinstance(table["BLEU-4"], float)
    assert len(result.per_label_rows) == 18 and len(result.per_label_rows[0]) == len(PER_LABEL_HEADERS)
    cardio = result.per_label_rows[CTRATE_LABELS.index("Cardiomegaly")]
    assert cardio[1:] == [1.0, 1.0, 1.0, 1, 1]  # "Cardiomegaly is present" vs truth for scan a
    assert result.chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads(result.metrics_json.read_text())["n_reports"] == 3
    with zipfile.ZipFile(result.archive) as zf:
        assert {"metrics.json", "per_label.csv", "per_label_f1.png", "pred_labels.csv", "summary.md"} <= set(
            zf.namelist()
        )


def test_missing_or_bad_csv_is_one_line(tmp_path):
    pred, ref, _ = write_csvs(tmp_path / "in", labels=False)
    with pytest.raises(InputError, match="upload the predictions CSV"):
        run_evaluation(None, ref, None, tmp_path / "w1")
    with pytest.raises(InputError, match="upload the references CSV"):
        run_evaluation(pred, None, None, tmp_path / "w2")
    bad = tmp_path / "in" / "bad.csv"
    bad.write_text("name,text\nx,hello\n")
    with pytest.raises(InputError, match="no id column found") as err:
        run_evaluation(bad, ref, None, tmp_path / "w3", meteor=False)
    assert "\n" not in str(err.value)


def test_work_dirs_are_fresh_and_pruned(tmp_path):
    dirs = WorkDirs(root=tmp_path / "root", ttl_s=60)
    a, b = dirs.new("eval-"), dirs.new("eval-")
    assert a != b and a.is_dir() and b.is_dir() and not any(a.iterdir())
    old = time.time() - 120
    os.utime(a, (old, old))
    c = dirs.new("eval-")
    assert not a.exists() and b.exists() and c.exists()
    dirs.cleanup()
    assert not (tmp_path / "root").exists()
