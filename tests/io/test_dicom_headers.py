"""DICOM header scanning: what is skipped, what is refused, how series are told apart."""

import numpy as np
import pydicom
import pytest

from ctvl.errors import InputError
from ctvl.io import read_volume
from ctvl.io.dicom_headers import group_stacks, read_header, scan_folder
from tests.io.factory import chest_hu, write_series, write_slice


def test_non_dicom_files_are_skipped_and_counted(tmp_path):
    write_series(tmp_path / "s", chest_hu((8, 6, 3)))
    (tmp_path / "s" / "README.txt").write_text("exported by a PACS\n" * 20)
    (tmp_path / "s" / "sub").mkdir()
    (tmp_path / "s" / "sub" / "notes.bin").write_bytes(bytes(range(256)) * 4)
    headers, skipped = scan_folder(tmp_path / "s")
    assert len(headers) == 3 and skipped == 2


def test_empty_folder_is_an_error(tmp_path):
    (tmp_path / "e").mkdir()
    (tmp_path / "e" / "x.txt").write_text("nothing")
    with pytest.raises(InputError, match=r"no DICOM images in this folder \(1 files looked at\)"):
        read_volume(tmp_path / "e")


@pytest.mark.parametrize("cut", [150, 600])
def test_truncated_file_is_named(tmp_path, cut):
    files = write_series(tmp_path / "s", chest_hu((8, 6, 3)))
    raw = files[1].read_bytes()
    files[1].write_bytes(raw[: len(raw) - cut])
    with pytest.raises(InputError, match="truncated") as err:
        read_volume(tmp_path / "s")
    assert str(files[1]) in str(err.value) and "\n" not in str(err.value)


def test_header_cut_before_pixel_data_is_refused(tmp_path):
    path = write_slice(tmp_path / "a.dcm", chest_hu((8, 6, 1))[:, :, 0], position=(0, 0, 0))
    raw = path.read_bytes()
    path.write_bytes(raw[:400])  # inside the dataset, before Rows/PixelData
    with pytest.raises(InputError, match=r"without pixel data or matrix size \(truncated or stripped\)"):
        read_header(path)


def test_multiframe_and_colour_are_refused(tmp_path):
    two = np.concatenate([chest_hu((8, 6, 1))[:, :, 0].T] * 2)
    multi = write_slice(
        tmp_path / "m.dcm", chest_hu((8, 6, 1))[:, :, 0], position=(0, 0, 0), extra={"NumberOfFrames": 2}
    )
    ds = pydicom.dcmread(multi)
    ds.PixelData = two.astype(np.int16).tobytes()
    ds.save_as(multi)
    with pytest.raises(InputError, match="multi-frame .* 2 frames .* dcm2niix"):
        read_volume(multi)
    rgb = write_slice(tmp_path / "c.dcm", chest_hu((8, 6, 1))[:, :, 0], position=(0, 0, 0))
    ds = pydicom.dcmread(rgb)
    ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "RGB", 0
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit, ds.PixelRepresentation = 7, 0
    ds.PixelData = np.zeros((6, 8, 3), np.uint8).tobytes()
    ds.save_as(rgb)
    with pytest.raises(InputError, match=r"colour DICOM \(RGB\)"):
        read_volume(rgb)


def test_several_series_refused_with_listing_then_picked(tmp_path):
    write_series(tmp_path / "mix" / "a", chest_hu((8, 6, 3)), series_uid="1.2.3.100", series_description="LUNG")
    write_series(
        tmp_path / "mix" / "b", chest_hu((8, 6, 5), seed=1), series_uid="1.2.3.200", series_description="SOFT TISSUE"
    )
    with pytest.raises(InputError) as err:
        read_volume(tmp_path / "mix")
    msg = str(err.value)
    assert "2 image series" in msg and "series=N" in msg and "--series" in msg
    assert '1) 1.2.3.100 #1 "LUNG" CT 3 slices 8x6' in msg and '2) 1.2.3.200 #1 "SOFT TISSUE" CT 5 slices' in msg
    assert read_volume(tmp_path / "mix", series=2).shape == (8, 6, 5)
    assert read_volume(tmp_path / "mix", series="1.2.3.100").shape == (8, 6, 3)
    with pytest.raises(InputError, match="matches no series"):
        read_volume(tmp_path / "mix", series="9.9")


def test_localizer_is_dropped_with_a_warning(tmp_path):
    write_series(tmp_path / "s", chest_hu((8, 6, 3)))
    write_slice(
        tmp_path / "s" / "scout.dcm",
        chest_hu((8, 6, 1))[:, :, 0] + 1024,
        position=(0, 0, 0),
        orientation=(1, 0, 0, 0, 0, -1),
        extra={"ImageType": ["ORIGINAL", "PRIMARY", "LOCALIZER"]},
    )
    stacks, dropped = group_stacks(scan_folder(tmp_path / "s")[0])
    assert len(stacks) == 1 and dropped == 1
    vol = read_volume(tmp_path / "s")
    assert vol.shape == (8, 6, 3) and any("1 localizer" in w for w in vol.meta.warnings)
