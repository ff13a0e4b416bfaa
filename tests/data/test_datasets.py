"""CT-RATE-layout reader and dataset on small fixtures written here (CT-RATE's real CSV names)."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from ctvl.data import ctrate
from ctvl.data.datasets import CTRateDataset, load_record_volume, scan_ctrate
from ctvl.data.labels import CTRATE_LABELS
from ctvl.data.transforms import PreprocessSpec
from ctvl.errors import InputError
from ctvl.io.nifti import write_nifti
from ctvl.io.volume import Volume, VolumeMeta

SPEC = PreprocessSpec(spacing=(3.0, 3.0, 4.0), size=(16, 16), depth=9)
VOLUMES = ["train_1_a_1", "train_1_a_2", "train_2_a_1", "valid_1_b_1"]


def _nib_read(path: Path) -> Volume:
    """Test-only fallback until ``ctvl.io.read_volume`` exists: NIfTI via nibabel, scaling applied."""
    img = nib.load(str(path))
    return Volume(np.asarray(img.get_fdata(dtype=np.float32)), img.affine, VolumeMeta(modality="CT", source=str(path)))


def _reader():
    try:
        from ctvl.io import read_volume
    except ImportError:
        return _nib_read
    return read_volume


def _chest(seed: int, offset: float = 0.0, spacing=(2.0, 2.0, 3.0)) -> Volume:
    """A tiny HU 'chest': air outside, soft tissue body, lungs; stored LPS like DICOM-derived NIfTI."""
    rng = np.random.default_rng(seed)
    i, j, k = np.meshgrid(np.arange(20), np.arange(20), np.arange(10), indexing="ij")
    body = ((i - 9.5) / 8) ** 2 + ((j - 9.5) / 6) ** 2 < 1
    lungs = body & ((np.abs(i - 9.5) > 2) & (((np.abs(i - 9.5) - 5) / 2.5) ** 2 + ((j - 9.5) / 4) ** 2 < 1))
    data = np.where(body, 40.0, -1000.0) + rng.normal(0, 5, body.shape)
    data[lungs] = -850.0
    affine = np.diag([-spacing[0], -spacing[1], spacing[2], 1.0])
    return Volume((data + offset).astype(np.float32), affine)


def _write_csv(path: Path, header: list[str], rows: list[list[object]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)


def _labels(name: str) -> list[int]:
    seed = sum(map(ord, name))
    return [(seed >> b) & 1 for b in range(len(CTRATE_LABELS))]


def make_ctrate(root: Path, names=VOLUMES, csv_names=None, offsets=None, metadata=None, header_spacing=None) -> Path:
    """Write a CT-RATE-layout fixture with CT-RATE's own CSV names (names without '.nii.gz' get no CSV row)."""
    offsets = offsets or {}
    for n, name in enumerate(names):
        split, pid, scan, _ = name.split("_")
        vol = _chest(n, offsets.get(name, 0.0), spacing=header_spacing or (2.0, 2.0, 3.0))
        write_nifti(vol, root / split / f"{split}_{pid}" / f"{split}_{pid}_{scan}" / f"{name}.nii.gz")
    csv_names = csv_names if csv_names is not None else names
    by_split = {s: [n for n in csv_names if n.startswith(s)] for s in ("train", "valid")}
    reports = {
        "train": "radiology_text_reports/dataset_radiology_text_reports_train_reports.csv",
        "valid": "radiology_text_reports/validation_reports.csv",
    }
    for split, rel in reports.items():
        rows = [[f"{n}.nii.gz", "Pain.", "CT.", f"Findings of {n}.", f"Impression of {n}."] for n in by_split[split]]
        header = ["VolumeName", "ClinicalInformation_EN", "Technique_EN", "Findings_EN", "Impressions_EN"]
        _write_csv(root / rel, header, rows)
    labels = {
        "train": "multi_abnormality_labels/train_predicted_labels.csv",
        "valid": "multi_abnormality_labels/valid_predicted_labels.csv",
    }
    for split, rel in labels.items():
        _write_csv(root / rel, ["VolumeName", *CTRATE_LABELS], [[f"{n}.nii.gz", *_labels(n)] for n in by_split[split]])
    meta = metadata or {}
    for split, rel in {"train": "metadata/train_metadata.csv", "valid": "metadata/validation_metadata.csv"}.items():
        rows = [[f"{n}.nii.gz", "SIEMENS", *meta.get(n, ("[2.0, 2.0]", 3.0, 1, -1024))] for n in by_split[split]]
        header = ["VolumeName", "Manufacturer", "XYSpacing", "ZSpacing", "RescaleSlope", "RescaleIntercept"]
        _write_csv(root / rel, header, rows)
    _write_csv(root / "notes.csv", ["id", "comment"], [[1, "not a CT-RATE table"]])
    write_nifti(_chest(9), root / "extra" / "scan.nii.gz")
    return root


@pytest.fixture()
def dataset_root(tmp_path):
    return make_ctrate(tmp_path / "ct-rate")


def test_scan_finds_volumes_and_csvs_by_columns(dataset_root):
    index = scan_ctrate(dataset_root)
    assert [r.volume_name for r in index.records] == [f"{n}.nii.gz" for n in VOLUMES]
    assert index.splits == ["train", "valid"] and index.missing == []
    reports = ["dataset_radiology_text_reports_train_reports.csv", "validation_reports.csv"]
    assert [p.name for p in index.csvs["reports"]] == reports
    assert [p.name for p in index.csvs["labels"]] == ["train_predicted_labels.csv", "valid_predicted_labels.csv"]
    assert [p.name for p in index.ignored_csvs] == ["notes.csv"]
    assert [p.name for p in index.other_nifti] == ["scan.nii.gz"]
    text = index.summary()
    assert "4 volumes (train: 3, valid: 1)" in text and "train_metadata.csv" in text and "scan.nii.gz" not in text


def test_records_join_reports_labels_and_metadata(dataset_root):
    rec = scan_ctrate(dataset_root).records[2]
    parts = (rec.volume_name, rec.split, rec.patient, rec.scan, rec.recon)
    assert parts == ("train_2_a_1.nii.gz", "train", "train_2", "a", 1)
    assert rec.path == dataset_root / "train/train_2/train_2_a/train_2_a_1.nii.gz"
    assert rec.findings == "Findings of train_2_a_1." and rec.impression == "Impression of train_2_a_1."
    assert rec.report == "Findings of train_2_a_1. Impression of train_2_a_1."
    np.testing.assert_array_equal(rec.labels, np.array(_labels("train_2_a_1"), np.float32))
    assert rec.labels.shape == (18,) and rec.has_labels
    assert rec.metadata["XYSpacing"] == (2.0, 2.0) and rec.metadata["ZSpacing"] == 3.0
    assert rec.metadata["RescaleIntercept"] == -1024.0 and rec.metadata["Manufacturer"] == "SIEMENS"


def test_records_are_in_natural_order(tmp_path):
    names = ["train_10_a_1", "train_2_b_1", "train_2_a_10", "train_2_a_2"]
    index = scan_ctrate(make_ctrate(tmp_path / "d", names=names))
    assert [r.volume_name[:-7] for r in index.records] == ["train_2_a_2", "train_2_a_10", "train_2_b_1", "train_10_a_1"]


def test_split_selection(dataset_root):
    assert [r.volume_name for r in scan_ctrate(dataset_root, split="valid").records] == ["valid_1_b_1.nii.gz"]
    assert len(scan_ctrate(dataset_root).split("train")) == 3
    with pytest.raises(InputError, match="split 'test'"):
        scan_ctrate(dataset_root).split("test")


def test_missing_csv_kind_is_reported_and_can_be_required(dataset_root):
    for p in (dataset_root / "metadata").glob("*.csv"):
        p.unlink()
    index = scan_ctrate(dataset_root)
    assert index.missing == ["metadata"] and "metadata: MISSING" in index.summary()
    assert index.records[0].metadata == {}
    with pytest.raises(InputError, match="no metadata CSV"):
        scan_ctrate(dataset_root, require=("labels", "metadata"))


def test_no_volumes_is_a_clear_error(tmp_path):
    with pytest.raises(InputError, match="no CT-RATE-layout volumes"):
        scan_ctrate(tmp_path)
    with pytest.raises(InputError, match="not a folder"):
        scan_ctrate(tmp_path / "missing")


def test_rows_that_match_no_file_are_a_clear_error(tmp_path):
    root = make_ctrate(tmp_path / "d", csv_names=["train_7_a_1", "train_8_a_1"])
    with pytest.raises(InputError, match="no reports CSV row matches a volume.*train_7_a_1") as err:
        scan_ctrate(root)
    assert "\n" not in str(err.value)


def test_volumes_without_rows_are_listed_or_dropped(tmp_path):
    root = make_ctrate(tmp_path / "d", csv_names=VOLUMES[1:] + ["train_5_a_1"])  # train_1_a_1 has no rows
    with pytest.raises(InputError, match="1 volumes have no row.*train_1_a_1"):
        scan_ctrate(root)
    index = scan_ctrate(root, on_missing_row="drop")
    assert [r.volume_name for r in index.records] == [f"{n}.nii.gz" for n in VOLUMES[1:]]
    assert index.rows_without_volume == {"reports": 1, "labels": 1, "metadata": 1}  # partial download: counted


def test_duplicate_volume_names_are_refused(dataset_root):
    copy = dataset_root / "train_fixed" / "train_1" / "train_1_a" / "train_1_a_1.nii.gz"
    copy.parent.mkdir(parents=True)
    copy.write_bytes((dataset_root / "train/train_1/train_1_a/train_1_a_1.nii.gz").read_bytes())
    with pytest.raises(InputError, match="occur twice"):
        scan_ctrate(dataset_root)


@pytest.mark.parametrize("default_reader", [True, False])
def test_ctrate_v2_hu_volumes_are_not_rescaled_again(dataset_root, default_reader):
    rec = scan_ctrate(dataset_root).records[0]  # HU data, metadata intercept -1024
    vol = load_record_volume(rec, None if default_reader else _nib_read)
    assert abs(ctrate.hu_low(vol.data) + 1000) < 50
    assert vol.meta.extra["ctrate_rescale"].startswith("not applied")
    assert vol.meta.rescale_intercept == 0.0


@pytest.mark.parametrize("default_reader", [True, False])
@pytest.mark.parametrize("intercept", [-1024.0, -8192.0])
def test_stored_values_get_the_metadata_rescale(tmp_path, intercept, default_reader):
    name = "train_3_a_1"
    meta = {name: ("[2.0, 2.0]", 3.0, 1, intercept)}
    root = make_ctrate(tmp_path / "d", names=[name], offsets={name: -intercept}, metadata=meta)
    vol = load_record_volume(scan_ctrate(root).records[0], None if default_reader else _nib_read)
    assert abs(ctrate.hu_low(vol.data) + 1000) < 50, ctrate.hu_low(vol.data)
    assert vol.meta.rescale_intercept == intercept and "applied" in vol.meta.extra["ctrate_rescale"]


def test_csv_spacing_replaces_missing_header_spacing(tmp_path):
    name = "valid_4_a_1"
    meta = {name: ("[0.7, 0.8]", 1.5, 1, -1024)}
    root = make_ctrate(tmp_path / "d", names=[name], header_spacing=(1.0, 1.0, 1.0), metadata=meta)
    vol = load_record_volume(scan_ctrate(root).records[0], _reader())
    np.testing.assert_allclose(vol.spacing, (0.8, 0.7, 1.5))
    assert vol.axcodes == "LPS" and any("metadata CSV spacing" in w for w in vol.meta.warnings)


def test_dataset_items_and_batches(dataset_root):
    ds = CTRateDataset(source=dataset_root, spec=SPEC, split="train", reader=_reader(), require=("reports", "labels"))
    assert len(ds) == 3
    item = ds[1]
    assert item["image"].shape == (1, 9, 16, 16) and item["image"].dtype == torch.float32
    assert float(item["image"].min()) >= -1 and float(item["image"].max()) <= 1
    assert item["labels"].shape == (18,) and item["labels"].dtype == torch.float32
    assert item["volume_name"] == "train_1_a_2.nii.gz" and item["findings"].startswith("Findings of")
    batch = next(iter(DataLoader(ds, batch_size=2)))
    assert batch["image"].shape == (2, 1, 9, 16, 16) and batch["labels"].shape == (2, 18)
    with pytest.raises(IndexError):
        ds[3]


def test_dataset_cache_hit_miss_and_invalidation(dataset_root, tmp_path):
    reads: list[str] = []
    base = _reader()

    def counting_reader(path):
        reads.append(Path(path).name)
        return base(path)

    cache_dir = tmp_path / "cache"
    ds = CTRateDataset(source=dataset_root, spec=SPEC, split="train", cache_dir=cache_dir, reader=counting_reader)
    first = [ds[i]["image"] for i in range(len(ds))]
    assert len(reads) == 3 and ds.cache.misses == 3
    second = [ds[i]["image"] for i in range(len(ds))]  # second epoch: no NIfTI read
    assert len(reads) == 3 and ds.cache.hits == 3
    for a, b in zip(first, second):
        torch.testing.assert_close(a, b)
    path = ds.records[0].path
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))  # the file changed
    ds[0]
    assert reads[-1] == path.name and len(reads) == 4
    deeper = PreprocessSpec(spacing=(3.0, 3.0, 4.0), size=(16, 16), depth=17)
    other = CTRateDataset(source=ds.index, spec=deeper, cache_dir=cache_dir, reader=counting_reader)
    assert other[1]["image"].shape == (1, 17, 16, 16) and len(reads) == 5  # another spec: another entry
    assert len(ds.cache) == 5
