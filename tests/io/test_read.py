"""read_volume dispatch and argument checks."""

import numpy as np
import pytest

from ctvl.errors import ConfigError, InputError
from ctvl.io import read_volume, write_nifti
from ctvl.io.read import detect_format
from ctvl.io.volume import Volume
from tests.io.factory import chest_hu, write_series, write_slice


def test_detect_format(tmp_path):
    write_series(tmp_path / "dir", chest_hu((8, 6, 2)))
    bare = write_slice(tmp_path / "IM0001", chest_hu((8, 6, 1))[:, :, 0] + 1024, position=(0, 0, 0))
    nii = write_nifti(Volume(chest_hu().astype(np.float32), np.eye(4)), tmp_path / "v.nii.gz")
    (tmp_path / "a.zip").write_bytes(b"PK\x03\x04rest")
    itk = [tmp_path / f"v{s}" for s in (".nrrd", ".NHDR", ".mha", ".mhd")]
    assert [detect_format(p) for p in (tmp_path / "dir", bare, nii, tmp_path / "a.zip", *itk)] == [
        "dicom-folder",
        "dicom-file",
        "nifti",
        "zip",
        "itk",
        "itk",
        "itk",
        "itk",
    ]
    assert read_volume(bare).shape == (8, 6, 1)  # DICOM magic, no extension


def test_unsupported_and_missing_inputs_are_one_line_errors(tmp_path):
    (tmp_path / "scan.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    with pytest.raises(
        InputError, match=r"scan\.png: unsupported file type: pass a \.nii/\.nii\.gz, \.nrrd/\.nhdr or \.mha"
    ):
        read_volume(tmp_path / "scan.png")
    with pytest.raises(InputError, match="no such file or folder"):
        read_volume(tmp_path / "nope.nii.gz")


def test_bad_arguments_are_config_errors(tmp_path):
    path = write_nifti(Volume(chest_hu().astype(np.float32), np.eye(4)), tmp_path / "v.nii")
    with pytest.raises(ConfigError, match="rescale must be"):
        read_volume(path, rescale="twice")
    with pytest.raises(ConfigError, match="RescaleSlope/RescaleIntercept"):
        read_volume(path, metadata={"VolumeName": "v.nii"})


def test_meta_records_source_and_provenance(tmp_path):
    write_series(tmp_path / "s", chest_hu())
    vol = read_volume(tmp_path / "s")
    assert vol.meta.source == str(tmp_path / "s") and vol.source == tmp_path / "s"
    assert vol.meta.extra["format"] == "dicom" and vol.meta.extra["n_files"] == 6
    assert vol.meta.rescale_applied and vol.data.dtype == np.float32 and vol.affine.shape == (4, 4)
