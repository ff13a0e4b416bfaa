"""Report/label CSV reading with column auto-detection, and atomic label CSV writing."""

import csv
from pathlib import Path

import numpy as np
import pytest

from ctvl.data.labels import CTRATE_LABELS
from ctvl.errors import InputError
from ctvl.eval.labeler import read_labels, read_reports, write_labels


def _write(path: Path, header: list[str], rows: list[list]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def test_autodetects_ctrate_columns(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "r.csv",
        ["VolumeName", "Findings_EN", "Impressions_EN"],
        [["valid_1_a_1.nii.gz", "Emphysema.", "Emphysema"], ["valid_2_a_1.nii.gz", "", "Normal"]],
    )
    full = read_reports(path)
    assert full.id_column == "VolumeName" and full.text_columns == ("Findings_EN", "Impressions_EN")
    assert full.texts == ["Emphysema. Emphysema", "Normal"]
    findings = read_reports(path, findings_only=True)
    assert findings.text_columns == ("Findings_EN",) and findings.texts == ["Emphysema.", ""]


def test_report_text_and_explicit_columns(tmp_path: Path) -> None:
    path = _write(tmp_path / "r.csv", ["AccessionNo", "report_text", "note"], [["a", "Cardiomegaly.", "x"]])
    table = read_reports(path)
    assert (table.id_column, table.text_columns, table.ids) == ("AccessionNo", ("report_text",), ["a"])
    assert read_reports(path, text_column="note,report_text", id_column="AccessionNo").texts == ["x Cardiomegaly."]


@pytest.mark.parametrize(
    ("header", "rows", "kwargs", "message"),
    [
        (["id", "body"], [["a", "x"]], {}, "no report text column found"),
        (["name", "report"], [["a", "x"]], {}, "no id column found"),
        (["id", "report"], [["a", "x"]], {"text_column": "findings"}, "no text column findings"),
        (["id", "report"], [["a", "x"], ["a", "y"]], {}, "duplicate id"),
    ],
)
def test_clear_errors(tmp_path: Path, header: list[str], rows: list[list], kwargs: dict, message: str) -> None:
    path = _write(tmp_path / "bad.csv", header, rows)
    with pytest.raises(InputError, match=message) as info:
        read_reports(path, **kwargs)
    assert "bad.csv" in str(info.value) and "\n" not in str(info.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="file not found"):
        read_reports(tmp_path / "nope.csv")


def test_labels_round_trip_and_validation(tmp_path: Path) -> None:
    labels = np.zeros((2, 18), dtype=np.int64)
    labels[0, 3] = labels[1, 17] = 1
    path = write_labels(tmp_path / "sub" / "labels.csv", ["a", "b"], labels, id_column="VolumeName")
    ids, got, id_col = read_labels(path)
    assert ids == ["a", "b"] and id_col == "VolumeName" and np.array_equal(got, labels)
    assert next(csv.reader(path.open()))[1:] == list(CTRATE_LABELS)
    assert not list(path.parent.glob(".*tmp"))
    bad = _write(tmp_path / "bad.csv", ["VolumeName", *CTRATE_LABELS], [["a", *([0] * 17), 2]])
    with pytest.raises(InputError, match="expected 0 or 1"):
        read_labels(bad)
    with pytest.raises(InputError, match="missing label column"):
        read_labels(_write(tmp_path / "few.csv", ["VolumeName", "Emphysema"], [["a", 1]]))
