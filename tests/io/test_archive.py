"""Safe zip extraction and reading a zipped series."""

import stat
import zipfile

import numpy as np
import pytest

from ctvl.errors import InputError
from ctvl.io import read_volume, write_nifti
from ctvl.io.archive import extract_zip, unsafe_reason
from ctvl.io.volume import Volume
from tests.io.factory import chest_hu, write_series


def _zip_series(tmp_path, extra=()):
    files = write_series(tmp_path / "series", chest_hu())
    path = tmp_path / "series.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for f in files:
            zf.write(f, f"PATIENT/STUDY/{f.name}")
        for name, data in extra:
            zf.writestr(name, data)
    return path


def test_zipped_series_reads_like_the_folder(tmp_path):
    path = _zip_series(tmp_path)
    vol, ref = read_volume(path), read_volume(tmp_path / "series")
    assert np.array_equal(vol.data, ref.data) and np.array_equal(vol.affine, ref.affine)
    assert vol.meta.source == str(path)


def test_zipped_nifti_reads(tmp_path):
    nii = write_nifti(Volume(chest_hu().astype(np.float32), np.diag([0.7, 0.7, 2, 1.0])), tmp_path / "v.nii.gz")
    with zipfile.ZipFile(tmp_path / "n.zip", "w") as zf:
        zf.write(nii, "case/v.nii.gz")
    assert np.array_equal(read_volume(tmp_path / "n.zip").data, chest_hu().astype(np.float32))


@pytest.mark.parametrize(
    "name, why",
    [
        ("../evil.dcm", "a '..' component"),
        ("a/../../evil.dcm", "a '..' component"),
        ("/etc/evil.dcm", "an absolute path"),
        ("C:\\evil.dcm", "an absolute path"),
        ("..\\evil.dcm", "a '..' component"),
    ],
)
def test_unsafe_member_names_refuse_the_archive(tmp_path, name, why):
    assert unsafe_reason(name) == why
    path = _zip_series(tmp_path, extra=[(zipfile.ZipInfo(name), b"x")])
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(InputError, match="refusing to extract this archive"):
        extract_zip(path, out, max_bytes=1 << 30)
    assert list(out.iterdir()) == []  # checked before anything was written
    with pytest.raises(InputError, match=f"has {why}"):
        read_volume(path)


def test_symlink_and_encrypted_members_refused(tmp_path):
    link = zipfile.ZipInfo("PATIENT/link.dcm")
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    with pytest.raises(InputError, match="is a symbolic link"):
        read_volume(_zip_series(tmp_path, extra=[(link, "/etc/passwd")]))
    (tmp_path / "series").rename(tmp_path / "series_old")
    path = _zip_series(tmp_path, extra=[("PATIENT/locked.dcm", b"secret")])
    raw = bytearray(path.read_bytes())
    entry = raw.rindex(b"PK\x01\x02")  # central directory record of the last member
    raw[entry + 8] |= 0x1  # general-purpose flag bit 0: encrypted
    path.write_bytes(bytes(raw))
    with pytest.raises(InputError, match="'PATIENT/locked.dcm' is encrypted"):
        read_volume(path)


def test_zip_bomb_stopped_by_the_byte_cap(tmp_path):
    path = tmp_path / "bomb.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("zeros.dcm", b"\0" * 5_000_000)
    with pytest.raises(InputError, match="expands to 5,000,000 bytes, over the cap of 100,000"):
        extract_zip(path, tmp_path, max_bytes=100_000)


def test_truncated_zip_is_one_line_error_naming_the_zip(tmp_path):
    path = _zip_series(tmp_path)
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(InputError, match="not a readable zip archive") as err:
        read_volume(path)
    assert str(err.value).startswith(str(path)) and "\n" not in str(err.value)


def test_errors_inside_the_archive_name_the_zip_not_a_temp_dir(tmp_path):
    path = tmp_path / "mr.zip"
    files = write_series(tmp_path / "mr", chest_hu(), modality="MR")
    with zipfile.ZipFile(path, "w") as zf:
        for f in files:
            zf.write(f, f.name)
    with pytest.raises(InputError, match="Modality is MR") as err:
        read_volume(path)
    assert str(err.value).startswith(str(path)) and "ctvl-zip-" not in str(err.value)
