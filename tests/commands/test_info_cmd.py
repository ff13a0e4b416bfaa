"""``ctvl info``: JSON and table output, one-line errors."""

import json

import nibabel as nib
import numpy as np

from ctvl.cli import main
from tests.io.factory import chest_hu, write_series


def test_info_json(tmp_path, capsys):
    write_series(tmp_path / "s", chest_hu())
    assert main(["info", str(tmp_path / "s"), "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert got["shape"] == [24, 20, 6] and got["orientation"] == "LPS" and got["modality"] == "CT"
    assert {"spacing", "hu_range", "warnings"} <= set(got)


def test_info_table_shows_fields_and_warnings(tmp_path, capsys):
    write_series(tmp_path / "s", chest_hu(), modality=None)
    assert main(["info", str(tmp_path / "s")]) == 0
    out = capsys.readouterr().out
    for text in ("shape (i j k)", "24 x 20 x 6", "LPS", "HU range", "Modality tag missing"):
        assert text in out


def test_info_series_option(tmp_path, capsys):
    write_series(tmp_path / "m" / "a", chest_hu(), series_uid="1.2.3.1")
    write_series(tmp_path / "m" / "b", chest_hu((8, 6, 3)), series_uid="1.2.3.2")
    assert main(["info", str(tmp_path / "m"), "--json"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "2 image series" in err and err.count("\n") == 1
    assert main(["info", str(tmp_path / "m"), "--series", "2", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["shape"] == [8, 6, 3]


def test_bad_inputs_exit_2_with_one_line(tmp_path, capsys):
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 4, 3), np.int16), np.eye(4)), tmp_path / "t.nii.gz")
    (tmp_path / "cut.nii.gz").write_bytes((tmp_path / "t.nii.gz").read_bytes()[:60])
    for bad in ("t.nii.gz", "cut.nii.gz", "missing.nii"):
        assert main(["info", str(tmp_path / bad)]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"error: {tmp_path / bad}: ") and err.count("\n") == 1 and "Traceback" not in err
