"""NRRD / MetaImage text headers: data files, truncation, corrupt streams, the space+spacings trap, orientation."""

import gzip
from pathlib import Path

import numpy as np
import pytest

from ctvl.errors import InputError
from ctvl.io import read_volume
from ctvl.io.itk_header import parse_header
from tests.io.factory import chest_hu, write_itk_file


def _touch(path: Path) -> Path:
    path.write_bytes(b"\0")
    return path


def test_parse_nrrd_and_metaimage_headers(tmp_path):
    nrrd = write_itk_file(tmp_path / "a.nrrd", chest_hu())
    h = parse_header(nrrd)
    assert h.kind == "nrrd" and h.fields["sizes"] == "24 20 6" and h.fields["encoding"] == "raw"
    assert h.data_files == [] and nrrd.stat().st_size - h.data_offset == chest_hu().nbytes
    mha = write_itk_file(tmp_path / "a.mha", chest_hu())
    h = parse_header(mha)
    assert h.kind == "metaimage" and h.fields["dimsize"] == "24 20 6"
    assert mha.stat().st_size - h.data_offset == chest_hu().nbytes
    (tmp_path / "list.nhdr").write_text(
        "NRRD0004\n# comment\ntype: short\nkey:=value\ndimension: 3\n"
        "sizes: 2 2 2\nencoding: raw\ndata file: LIST\nx1.raw\nsub/x2.raw\n"
    )
    h = parse_header(tmp_path / "list.nhdr")
    assert h.data_files == [tmp_path / "x1.raw", tmp_path / "sub" / "x2.raw"] and "key" not in h.fields
    (tmp_path / "pat.mhd").write_text("ObjectType = Image\nElementDataFile = s%03d.raw 5 1 -2\n")
    assert [p.name for p in parse_header(tmp_path / "pat.mhd").data_files] == ["s005.raw", "s003.raw", "s001.raw"]


@pytest.mark.parametrize("suffix", [".nrrd", ".mha"])
def test_corrupt_compressed_data_is_refused_not_read_as_garbage(tmp_path, suffix):
    """ITK does not check zlib's checksum: a damaged stream would read as wrong voxels without an error."""
    path = write_itk_file(tmp_path / f"c{suffix}", chest_hu(), compress=True)
    raw = bytearray(path.read_bytes())
    raw[-200:-150] = bytes(50)
    path.write_bytes(bytes(raw))
    with pytest.raises(InputError, match="corrupt compressed image data .*incorrect data check"):
        read_volume(path)


def _one_line(err: pytest.ExceptionInfo, path: Path) -> str:
    text = str(err.value)
    assert text.startswith(str(path)) and "\n" not in text and "Traceback" not in text
    return text


@pytest.mark.parametrize("suffix", [".nrrd", ".mha"])
def test_truncated_files_are_one_line_errors(tmp_path, suffix, capfd):
    path = write_itk_file(tmp_path / f"t{suffix}", chest_hu())
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(InputError, match=r"file is truncated: \d+ bytes on disk, the header needs \d+") as err:
        read_volume(path)
    _one_line(err, path)
    gz = write_itk_file(tmp_path / f"g{suffix}", chest_hu(), compress=True)
    gz.write_bytes(gz.read_bytes()[:-60])
    with pytest.raises(InputError, match=rf"the compressed image data in g{suffix} ends early") as err:
        read_volume(gz)
    _one_line(err, gz)
    assert capfd.readouterr().err == ""  # nothing ITK/MetaIO printed leaks to the terminal


def test_a_complete_stream_holding_too_few_voxels_is_refused_by_itk(tmp_path):
    header = b"NRRD0004\ntype: short\ndimension: 3\nsizes: 4 4 3\nencoding: gzip\nendian: little\n\n"
    (tmp_path / "few.nrrd").write_bytes(header + gzip.compress(bytes(40)))  # valid gzip, 40 of 96 bytes
    expect = r"truncated or corrupt image data \(expected 96 bytes but received 40\)"
    with pytest.raises(InputError, match=expect) as err:
        read_volume(tmp_path / "few.nrrd")
    _one_line(err, tmp_path / "few.nrrd")


def test_corrupt_headers_are_one_line_errors(tmp_path, capfd):
    cases = {
        "junk.nrrd": (b"PK\x03\x04 not nrrd", "not an NRRD file"),
        "empty.nhdr": (b"", "not an NRRD file"),
        "bad.nrrd": (b"NRRD0004\nthis is junk\n\n\x00\x01", "corrupt NRRD header line"),
        "open.nrrd": (b"NRRD0004\ntype: short\n", "has no end"),
        "junk.mha": (bytes(range(256)), "not a MetaImage file"),
        "short.mha": (b"ObjectType = Image\n", "no ElementDataFile"),
        "typo.mha": (
            b"ObjectType = Image\nNDims = 3\nDimSize = 4 4 4\nElementType = MET_BOGUS\n"
            b"ElementDataFile = LOCAL\n" + bytes(128),
            "not a readable MetaImage file",
        ),
        "nodims.mha": (
            b"ObjectType = Image\nNDims = three\nElementType = MET_SHORT\nElementDataFile = LOCAL\n" + bytes(8),
            r"not a readable MetaImage file \(DimSize required and not defined\)",
        ),
        "type.nrrd": (
            b"NRRD0004\ntype: shrt\ndimension: 3\nsizes: 4 4 4\nencoding: raw\n\n" + bytes(128),
            r"not a readable NRRD file \(couldn't parse type \"shrt\"\)",
        ),
    }
    for name, (content, message) in cases.items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(InputError, match=message) as err:
            read_volume(tmp_path / name)
        _one_line(err, tmp_path / name)
    assert capfd.readouterr().err == ""  # MetaIO's std::cerr lines became the reason, not terminal noise


def test_missing_detached_data_files(tmp_path):
    mhd = write_itk_file(tmp_path / "scan.mhd", chest_hu())
    (tmp_path / "scan.raw").unlink()
    with pytest.raises(InputError, match=r"scan\.mhd: the data file scan\.raw that the header names is missing") as err:
        read_volume(mhd)
    assert "upload them together" in _one_line(err, mhd)
    nhdr = write_itk_file(tmp_path / "scan.nhdr", chest_hu())
    (tmp_path / "scan.raw").unlink()
    with pytest.raises(InputError, match="data file scan.raw that the header names is missing"):
        read_volume(nhdr)
    (tmp_path / "s.nhdr").write_text(
        "NRRD0004\ntype: short\ndimension: 3\nsizes: 4 4 3\nencoding: raw\nendian: little\ndata file: s.%d 1 3 1\n"
    )
    (tmp_path / "s.1").write_bytes(bytes(32))
    with pytest.raises(InputError, match=r"data file s\.2 .* \(2 of 3 missing\)"):
        read_volume(tmp_path / "s.nhdr")
    with pytest.raises(InputError, match="data file of a MetaImage/NRRD image: pass its .mhd or .nhdr header"):
        read_volume(_touch(tmp_path / "scan.raw"))


def test_space_with_spacings_is_read_with_a_warning(tmp_path):
    """Like the VTK headsq volume: 'space' plus 'spacings' (forbidden, ITK refuses it), slices in numbered files."""
    data = chest_hu((8, 6, 3)) + 1024
    for k in range(3):
        np.ascontiguousarray(data[:, :, k].T).tofile(tmp_path / f"q.{k + 1}")
    (tmp_path / "q.nhdr").write_text(
        "NRRD0004\ndimension: 3\nsizes: 8 6 3\nspacings: 3.2 3.2 1.5\nendian: little\n"
        "type: short\nencoding: raw\nspace: 3D-left-handed\ndata file: q.%d 1 3 1\n"
    )
    vol = read_volume(tmp_path / "q.nhdr")
    assert np.array_equal(vol.data, data) and vol.spacing == pytest.approx((3.2, 3.2, 1.5)) and vol.axcodes == "LPS"
    assert "forbids this" in vol.meta.warnings[0] and "no air near -1000 HU" in vol.meta.warnings[1]
    attached = tmp_path / "a.nrrd"  # the same trap with the data attached (gzip): read through line skip
    attached.write_bytes(
        b"NRRD0004\ndimension: 3\nsizes: 8 6 3\nspacings: 3.2 3.2 1.5\nspace: 3D-right-handed\n"
        b"endian: little\ntype: short\nencoding: gzip\n\n"
        + gzip.compress(np.ascontiguousarray(data.transpose(2, 1, 0)).tobytes())
    )
    assert np.array_equal(read_volume(attached, strict=False).data, data)


def test_missing_orientation_warns(tmp_path):
    np.ascontiguousarray(chest_hu().transpose(2, 1, 0)).tofile(tmp_path / "d.raw")
    (tmp_path / "plain.nhdr").write_text(
        "NRRD0004\ntype: short\ndimension: 3\nsizes: 24 20 6\nspacings: 1 1 2\n"
        "encoding: raw\nendian: little\ndata file: d.raw\n"
    )
    assert "no orientation in the NRRD header" in read_volume(tmp_path / "plain.nhdr").meta.warnings[0]
    (tmp_path / "plain.mhd").write_text(
        "ObjectType = Image\nNDims = 3\nDimSize = 24 20 6\nElementSpacing = 1 1 2\n"
        "ElementType = MET_SHORT\nElementDataFile = d.raw\n"
    )
    vol = read_volume(tmp_path / "plain.mhd")
    assert "no orientation in the MetaImage header" in vol.meta.warnings[0] and vol.axcodes == "LPS"
    assert np.array_equal(vol.data, chest_hu())
    assert [p.name for p in parse_header(tmp_path / "plain.mhd").data_files] == ["d.raw"]
