"""write_dataset and ``ctvl data phantom``: CT-RATE layout, CSVs, NIfTI contents, replacement, crash safety."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from ctvl.cli import main
from ctvl.data.labels import CTRATE_LABELS
from ctvl.data.phantom import dataset as ds
from ctvl.data.phantom import render_case, write_dataset

SHAPE = (24, 24, 13)


def _rows(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    root = tmp_path_factory.mktemp("phantom")
    write_dataset(root, 3, seed=9, split="valid", shape=SHAPE, workers=1)
    return root


def test_ctrate_layout(written):
    vols = sorted(p.relative_to(written).as_posix() for p in written.rglob("*.nii.gz"))
    assert vols == [f"valid/valid_{i}/valid_{i}_a/valid_{i}_a_1.nii.gz" for i in (1, 2, 3)]
    names = {p.name for p in written.iterdir()}
    assert names == {
        "valid",
        "valid_reports.csv",
        "valid_labels.csv",
        "valid_metadata.csv",
        "phantom_valid.json",
        "DATA_CARD.md",
    }


def test_csvs_agree_with_the_rendered_cases(written):
    reports = _rows(written / "valid_reports.csv")
    labels = _rows(written / "valid_labels.csv")
    meta = _rows(written / "valid_metadata.csv")
    assert list(reports[0]) == ["VolumeName", "Findings_EN", "Impressions_EN"]
    assert list(labels[0]) == ["VolumeName", *CTRATE_LABELS]
    assert {"VolumeName", "RescaleSlope", "RescaleIntercept", "XYSpacing", "ZSpacing", "Manufacturer"} <= set(meta[0])
    for i, (rep, lab, md) in enumerate(zip(reports, labels, meta)):
        name = f"valid_{i + 1}_a_1.nii.gz"
        assert rep["VolumeName"] == lab["VolumeName"] == md["VolumeName"] == name
        case = render_case(ds.case_seed(9, "valid", i), SHAPE)
        assert rep["Findings_EN"] == case.findings and rep["Impressions_EN"] == case.impression
        assert {k: int(lab[k]) for k in CTRATE_LABELS} == case.labels
        assert md["XYSpacing"] == "[16.0, 16.0]" and float(md["ZSpacing"]) == 30.0
        assert float(md["RescaleSlope"]) == 1.0 and float(md["RescaleIntercept"]) == 0.0
        img = nib.load(written / ds.volume_path("valid", i + 1))
        assert img.get_data_dtype() == np.int16 and img.shape == SHAPE
        np.testing.assert_allclose(img.affine, case.volume.affine, atol=1e-5)
        np.testing.assert_array_equal(np.asarray(img.dataobj), np.rint(case.volume.data).astype(np.int16))


def test_manifest_and_card(written):
    manifest = json.loads((written / "phantom_valid.json").read_text())
    assert manifest["complete"] and manifest["n"] == 3 and manifest["shape"] == list(SHAPE)
    assert manifest["spacing"] == [16.0, 16.0, 30.0] and set(manifest["prevalence"]) == set(CTRATE_LABELS)
    card = (written / "DATA_CARD.md").read_text()
    assert "| valid | 3 | 9 |" in card and "Lung nodule" in card and "data_cards/phantom.md" in card


def test_rewriting_a_split_replaces_it_and_keeps_other_splits(tmp_path):
    write_dataset(tmp_path, 3, seed=1, split="train", shape=SHAPE)
    write_dataset(tmp_path, 1, seed=1, split="valid", shape=SHAPE)
    write_dataset(tmp_path, 2, seed=2, split="train", shape=SHAPE)
    assert sorted(p.name for p in (tmp_path / "train").iterdir()) == ["train_1", "train_2"]
    assert len(_rows(tmp_path / "train_labels.csv")) == 2 and (tmp_path / "valid" / "valid_1").is_dir()
    card = (tmp_path / "DATA_CARD.md").read_text()
    assert "| train | 2 | 2 |" in card and "| valid | 1 | 1 |" in card
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_a_crash_leaves_no_half_dataset(tmp_path, monkeypatch):
    write_dataset(tmp_path, 2, seed=1, split="train", shape=SHAPE)
    before = (tmp_path / "train_labels.csv").read_text()
    real = ds._render_one

    def flaky(task):
        if task[2] == 2:
            raise RuntimeError("disk full")
        return real(task)

    monkeypatch.setattr(ds, "_render_one", flaky)
    with pytest.raises(RuntimeError, match="disk full"):
        write_dataset(tmp_path, 3, seed=5, split="train", shape=SHAPE)
    assert (tmp_path / "train_labels.csv").read_text() == before  # the old, complete split is untouched
    assert (tmp_path / "phantom_train.json").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".staging")]
    monkeypatch.setattr(ds, "_render_one", flaky)
    fresh = tmp_path / "fresh"
    with pytest.raises(RuntimeError):
        write_dataset(fresh, 3, seed=5, split="valid", shape=SHAPE)
    assert not (fresh / "phantom_valid.json").exists() and not (fresh / "valid_labels.csv").exists()


def test_parallel_workers_give_the_same_dataset(tmp_path):
    write_dataset(tmp_path / "one", 3, seed=4, split="train", shape=SHAPE, workers=1)
    write_dataset(tmp_path / "two", 3, seed=4, split="train", shape=SHAPE, workers=2)
    for name in ("train_reports.csv", "train_labels.csv", "train_metadata.csv"):
        assert (tmp_path / "one" / name).read_text() == (tmp_path / "two" / name).read_text()


def test_cli_end_to_end(tmp_path, capsys):
    out = tmp_path / "cli"
    code = main(
        [
            "data",
            "phantom",
            "--n",
            "3",
            "--out",
            str(out),
            "--seed",
            "3",
            "--split",
            "valid",
            "--shape",
            "24",
            "24",
            "13",
            "--spacing",
            "15",
            "15",
            "28",
            "--workers",
            "1",
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "wrote 3 valid scans" in printed and "DATA_CARD.md" in printed
    assert len(list(out.rglob("*.nii.gz"))) == 3
    assert _rows(out / "valid_metadata.csv")[0]["XYSpacing"] == "[15.0, 15.0]"
    img = nib.load(out / ds.volume_path("valid", 2))
    assert img.header.get_zooms() == pytest.approx((15.0, 15.0, 28.0))


@pytest.mark.parametrize(
    "args, message",
    [
        (["--split", "test"], "unknown split"),
        (["--n", "0"], "at least 1"),
        (["--shape", "0", "8", "8"], "shape"),
        (["--spacing", "1", "0", "1"], "spacing"),
    ],
)
def test_cli_bad_options_are_one_line_errors(tmp_path, capsys, args, message):
    base = {"--n": "2", "--out": str(tmp_path / "x")}
    argv = ["data", "phantom"]
    for key, value in base.items():
        if key not in args:
            argv += [key, value]
    assert main(argv + args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and message in err and "\n" not in err


def test_output_path_that_is_a_file_is_refused(tmp_path, capsys):
    target = tmp_path / "file"
    target.write_text("x")
    assert main(["data", "phantom", "--n", "1", "--out", str(target)]) == 2
    assert "not a folder" in capsys.readouterr().err
