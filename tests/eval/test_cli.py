"""``ctvl label`` and ``ctvl eval reports`` end to end on tiny CSV files."""

import csv
import json
from pathlib import Path

from ctvl.cli import main
from ctvl.data.labels import CTRATE_LABELS


def _csv(path: Path, header: list[str], rows: list[list]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def test_label_command(tmp_path: Path, capsys) -> None:
    reports = _csv(
        tmp_path / "reports.csv",
        ["AccessionNo", "report_text"],
        [["r1", "Cardiomegaly. Pleural effusion was not detected."], ["r2", "Hiatal hernia is observed."]],
    )
    assert main(["label", str(reports), "-o", str(tmp_path / "labels.csv")]) == 0
    assert "2 reports" in capsys.readouterr().out
    rows = list(csv.reader((tmp_path / "labels.csv").open()))
    assert rows[0] == ["AccessionNo", *CTRATE_LABELS]
    assert rows[1] == ["r1", *(str(int(n == "Cardiomegaly")) for n in CTRATE_LABELS)]
    assert rows[2] == ["r2", *(str(int(n == "Hiatal hernia")) for n in CTRATE_LABELS)]


def test_label_command_ctrate_columns_and_errors(tmp_path: Path, capsys) -> None:
    header = ["VolumeName", "Findings_EN", "Impressions_EN"]
    reports = _csv(tmp_path / "ct.csv", header, [["v1", "Normal.", "Emphysema"]])
    assert main(["label", str(reports), "-o", str(tmp_path / "l.csv"), "--id-column", "VolumeName"]) == 0
    assert next(csv.DictReader((tmp_path / "l.csv").open()))["Emphysema"] == "1"
    assert main(["label", str(reports), "-o", str(tmp_path / "l.csv"), "--text-column", "report"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "no text column report" in err and "Traceback" not in err
    assert main(["label", str(tmp_path / "missing.csv"), "-o", str(tmp_path / "l.csv")]) == 2


def test_eval_reports_command(tmp_path: Path, capsys) -> None:
    ref = _csv(
        tmp_path / "ref.csv",
        ["VolumeName", "Findings_EN", "Impressions_EN"],
        [
            ["a", "Emphysema in both lungs. No nodule.", "Emphysema."],
            ["b", "Cardiomegaly is present.", "Cardiomegaly."],
        ],
    )
    pred = _csv(tmp_path / "pred.csv", ["VolumeName", "report"], [["a", "Emphysema in both lungs."], ["b", "Normal."]])
    out = tmp_path / "eval"
    assert main(["eval", "reports", "--pred", str(pred), "--ref", str(ref), "--out", str(out), "--no-meteor"]) == 0
    assert "macro-F1" in capsys.readouterr().out
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["clinical"]["per_label"]["Emphysema"]["f1"] == 1.0
    assert metrics["clinical"]["per_label"]["Cardiomegaly"]["fn"] == 1
    assert metrics["nlg"]["meteor"] is None
    for name in ("per_label.csv", "per_label_f1.png", "summary.md", "pred_labels.csv"):
        assert (out / name).is_file()
    bad = _csv(tmp_path / "bad.csv", ["VolumeName", "report"], [["zz", "x"]])
    assert main(["eval", "reports", "--pred", str(bad), "--ref", str(ref), "--out", str(out), "--no-meteor"]) == 2
    assert "zz" in capsys.readouterr().err
