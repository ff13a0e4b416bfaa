"""Uploads → volume: NIfTI, NRRD/MetaImage, DICOM zip, several .dcm files, size cap, readable one-line errors."""

import zipfile
from pathlib import Path

import numpy as np
import pytest

from ctvl.errors import InputError
from ctvl.viewer.upload import (
    check_upload_size,
    header_markdown,
    human_bytes,
    load_scan,
    read_upload,
    staged_upload,
    upload_paths,
)
from tests.io.factory import chest_hu, write_itk_file, write_nifti_file, write_series


@pytest.fixture()
def series(tmp_path) -> list[Path]:
    return write_series(tmp_path / "series", chest_hu((24, 20, 6)))


def test_nifti_upload(tmp_path):
    path = write_nifti_file(tmp_path / "scan.nii.gz", chest_hu((24, 20, 6)))
    loaded = load_scan(str(path))
    assert loaded.info["shape"] == [24, 20, 6] and loaded.info["path"] == "scan.nii.gz"
    assert loaded.view.shape == (24, 20, 6) and loaded.view.spacing == pytest.approx((0.8, 0.8, 2.0))
    np.testing.assert_array_equal(read_upload([path]).data, chest_hu((24, 20, 6)).astype(np.float32))


@pytest.mark.parametrize("name", ["scan.nrrd", "scan.mha"])
def test_nrrd_and_metaimage_uploads(tmp_path, name):
    path = write_itk_file(tmp_path / name, chest_hu((24, 20, 6)))
    loaded = load_scan(str(path))
    assert loaded.info["shape"] == [24, 20, 6] and loaded.info["orientation"] == "LPS" and loaded.info["path"] == name
    np.testing.assert_array_equal(read_upload([path]).data, chest_hu((24, 20, 6)).astype(np.float32))


def test_detached_header_uploaded_with_its_data(tmp_path):
    # a browser sends each file from its own temporary folder
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    header = write_itk_file(tmp_path / "a" / "scan.mhd", chest_hu((24, 20, 6)))
    data = (tmp_path / "a" / "scan.raw").rename(tmp_path / "b" / "scan.raw")
    loaded = load_scan([str(data), str(header)])
    assert loaded.info["shape"] == [24, 20, 6] and loaded.info["format"] == "metaimage"
    assert loaded.info["path"] == "2 files (scan.raw, scan.mhd)"
    with pytest.raises(InputError) as err:
        read_upload([header])  # the header alone
    text = str(err.value)
    assert text.startswith("scan.mhd: the data file scan.raw that the header names is missing (looked in the upload)")
    assert str(tmp_path) not in text and "upload them together" in text


def test_several_dcm_files_are_read_as_one_series(series):
    # as a browser sends them: separate files, in any order
    loaded = load_scan(list(reversed(series)))
    assert loaded.info["shape"] == [24, 20, 6] and loaded.info["orientation"] == "LPS"
    assert loaded.info["path"].startswith("6 files (slice_005.dcm, ")
    assert loaded.view.n_slices("axial") == 6
    volume = read_upload([{"path": str(p)} for p in series])  # Gradio's dict form
    assert volume.shape == (24, 20, 6)


def test_dicom_zip_upload(tmp_path, series):
    archive = tmp_path / "series.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for p in series:
            zf.write(p, f"study/{p.name}")
    assert load_scan([archive]).info["shape"] == [24, 20, 6]


def test_staged_copies_are_removed(series):
    with staged_upload(series) as folder:
        assert folder.is_dir() and len(list(folder.iterdir())) == 6
    assert not folder.exists()


def test_doubtful_scan_is_viewable_with_warnings_but_refused_for_reports(tmp_path):
    files = write_series(tmp_path / "mr", chest_hu((24, 20, 6)), modality="MR")
    loaded = load_scan(files)
    assert any("MR" in w for w in loaded.info["warnings"])
    md = header_markdown(loaded.info)
    assert "warning" in md and "⚠" in md
    with pytest.raises(InputError, match="MR") as err:
        read_upload(files)
    assert "ctvl-upload-" not in str(err.value) and "\n" not in str(err.value)


def test_no_file_mixed_files_and_size_cap(tmp_path, series):
    for empty in (None, [], [None]):
        with pytest.raises(InputError, match="no file uploaded"):
            upload_paths(empty)
    nifti = write_nifti_file(tmp_path / "scan.nii.gz", chest_hu((8, 8, 3)))
    with pytest.raises(InputError, match="must all be DICOM slices of one series, but scan.nii.gz is not"):
        load_scan([*series, nifti])
    total = sum(p.stat().st_size for p in series)
    assert check_upload_size(series, total) == total
    with pytest.raises(
        InputError, match=rf"the upload is {total / 1024:.1f} KiB, over the viewer's cap of 1000 B; .*--max-upload-mb"
    ) as err:
        load_scan(series, max_bytes=1000)
    assert str(tmp_path) not in str(err.value)


def test_errors_name_the_uploaded_file_not_server_paths(tmp_path, series):
    odd = tmp_path / "uploads" / "notes.txt"
    odd.parent.mkdir()
    odd.write_text("not a scan")
    with pytest.raises(InputError) as err:
        load_scan([odd])
    assert str(err.value).startswith("notes.txt: unsupported file type") and str(tmp_path) not in str(err.value)
    broken = tmp_path / "broken.dcm"
    broken.write_bytes(series[0].read_bytes()[:300])
    with pytest.raises(InputError) as err:
        load_scan([*series[:3], broken])
    message = str(err.value)
    assert "ctvl-upload-" not in message and str(tmp_path) not in message and "\n" not in message
    assert "broken.dcm" in message or "4 files" in message


def test_human_bytes():
    assert [human_bytes(n) for n in (812, 3500, 5 << 20, 1 << 30)] == ["812 B", "3.4 KiB", "5.0 MiB", "1.0 GiB"]


def test_header_markdown_fields_and_escaping():
    info = {
        "path": "a_b|c.nii.gz",
        "format": "nifti",
        "shape": [512, 512, 241],
        "spacing": [0.75, 0.75, 1.5],
        "orientation": "LPS",
        "hu_range": [-1024.0, 3071.0],
        "modality": "CT",
        "manufacturer": "",
        "rescale": {"slope": 1.0, "intercept": -1024.0, "source": "header"},
        "warnings": [],
    }
    md = header_markdown(info)
    assert "| shape (i × j × k) | 512 × 512 × 241 |" in md and "| spacing (mm) | 0.75 × 0.75 × 1.5 |" in md
    assert r"a\_b\|c.nii.gz" in md and "No warnings." in md and "manufacturer" not in md
