"""``ctvl report``, ``ctvl train report`` and ``ctvl eval run`` from the command line."""

from __future__ import annotations

import json

import yaml

from ctvl.cli import main
from ctvl.data.labels import CTRATE_LABELS
from tests.io.factory import chest_hu, write_series
from tests.report.factory import shared, tiny_model_section


def _scan():
    return shared()["data"] / "valid" / "valid_1" / "valid_1_a" / "valid_1_a_1.nii.gz"


def test_report_json_on_nifti(capsys):
    assert main(["report", str(_scan()), "--model", str(shared()["bundle"]), "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert set(got) == {"report", "labels", "warnings"} and list(got["labels"]) == list(CTRATE_LABELS)


def test_report_text_on_dicom_folder(tmp_path, capsys):
    write_series(tmp_path / "s", chest_hu((40, 40, 10)), spacing_z=6.0)
    assert main(["report", str(tmp_path / "s"), "--model", str(shared()["bundle"]), "--max-new-tokens", "6"]) == 0
    captured = capsys.readouterr()
    assert captured.out.startswith("Findings:") and "Labels read from the report" in captured.out
    assert "warning: " in captured.err  # cut at 6 tokens, small field of view: said on stderr


def test_report_errors_are_one_line(tmp_path, capsys):
    assert main(["report", str(tmp_path / "missing.nii.gz"), "--model", str(shared()["bundle"])]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1
    assert main(["report", str(_scan()), "--model", str(shared()["tokenizer"])]) == 2
    assert "not a ctvl report model" in capsys.readouterr().err
    assert main(["report", str(_scan()), "--model", str(tmp_path / "nope")]) == 2
    assert "not found" in capsys.readouterr().err


def test_train_report_then_eval_run(tmp_path, capsys):
    art = shared()
    config = {
        "run_name": "cli",
        "steps": 2,
        "batch_size": 2,
        "lr": 1e-3,
        "log_every": 1,
        "device": "cpu",
        "output_dir": str(tmp_path / "run"),
        "model": tiny_model_section(),
        "data": {"root": str(art["data"]), "tokenizer": str(art["tokenizer"]), "cache_dir": str(art["root"] / "cache")},
    }
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["train", "report", "--config", str(path), "model.max_new_tokens=12"]) == 0
    assert "trained" in capsys.readouterr().out
    code = main(
        [
            "eval",
            "run",
            "--data",
            str(art["data"]),
            "--split",
            "valid",
            "--out",
            str(tmp_path / "eval"),
            "--model",
            str(tmp_path / "run"),
            "--no-meteor",
            "--limit",
            "2",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0 and "2 reports generated" in out and "macro-F1" in out and "duplicate fraction" in out
    assert (tmp_path / "eval" / "metrics.json").is_file() and (tmp_path / "eval" / "per_label_f1.png").is_file()


def test_train_report_bad_config_is_one_line(tmp_path, capsys):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"steps": 1, "model": {"visual": "eyes"}, "data": {"root": str(tmp_path)}}))
    assert main(["train", "report", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "model.visual" in err
