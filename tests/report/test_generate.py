"""generate_report: NIfTI or DICOM in, {"report", "labels", "warnings"} out, with honest warnings."""

from __future__ import annotations

import numpy as np

from ctvl.data.datasets import load_record_volume, scan_ctrate
from ctvl.data.labels import CTRATE_LABELS
from ctvl.eval.labeler import ReportLabeler
from ctvl.io.volume import Volume, VolumeMeta
from ctvl.report.bundle import load_report_model
from ctvl.report.generate import ReportGenerator, generate_report, geometry_warnings
from tests.report.factory import shared

_LABELER = ReportLabeler()


def _scan():
    return scan_ctrate(shared()["data"], split="valid").records[0].path


def test_nifti_path_gives_report_labels_warnings():
    out = generate_report(_scan(), shared()["bundle"], labeler=_LABELER)
    assert set(out) == {"report", "labels", "warnings"}
    assert out["report"].startswith("Findings:") and list(out["labels"]) == list(CTRATE_LABELS)
    assert set(out["labels"].values()) <= {0, 1} and isinstance(out["warnings"], list)
    text = out["report"].replace("Findings: ", "").replace("\n\nImpression: ", " ")
    assert out["labels"] == ReportLabeler().label(text)  # labels say what the report says


def test_dicom_series_and_volume_inputs_agree(tmp_path):
    from tests.io.factory import chest_hu, write_series

    hu = chest_hu((40, 40, 12))
    write_series(tmp_path / "series", hu, spacing_z=5.0, pixel_spacing=(8.0, 8.0))
    bundle = load_report_model(shared()["bundle"])
    from_dicom = generate_report(tmp_path / "series", bundle, labeler=_LABELER)
    from ctvl.io import read_volume

    from_volume = generate_report(read_volume(tmp_path / "series"), bundle, labeler=_LABELER)
    assert from_dicom == from_volume and from_dicom["report"].startswith("Findings:")


def test_greedy_is_deterministic_and_beams_run():
    bundle = load_report_model(shared()["bundle"])
    a, b = generate_report(_scan(), bundle, labeler=_LABELER), generate_report(_scan(), bundle, labeler=_LABELER)
    assert a == b
    beam = generate_report(_scan(), bundle, num_beams=2, max_new_tokens=8, labeler=_LABELER)
    assert any("length limit (8 tokens)" in w for w in beam["warnings"]) or "Impression" in beam["report"]


def test_text_only_model_says_so():
    out = generate_report(_scan(), shared()["textonly"], labeler=_LABELER)
    assert any("text-only" in w for w in out["warnings"])


def test_scan_unlike_the_training_data_is_flagged():
    loaded = load_report_model(shared()["bundle"])
    record = scan_ctrate(shared()["data"], split="valid").records[0]
    volume = load_record_volume(record)
    assert geometry_warnings(volume, loaded) == []  # like the training scans: nothing to say
    thin = Volume(volume.data[:, :, :3].copy(), volume.affine.copy(), VolumeMeta(source="thin.nii.gz"))
    notes = geometry_warnings(thin, loaded)
    assert any("padding" in n for n in notes) and any("field of view z" in n for n in notes)
    big = Volume(np.full((40, 40, 40), -1000.0, np.float32), np.diag([20.0, 20.0, 20.0, 1.0]), VolumeMeta())
    assert any("crops" in n for n in geometry_warnings(big, loaded))
    volume.meta.warnings.append("slice spacing is irregular")
    generated = ReportGenerator(loaded=loaded, labeler=_LABELER).report(volume)
    assert "reading: slice spacing is irregular" in generated.warnings
    assert set(generated.probabilities) == set(CTRATE_LABELS)


def test_repeats_are_dropped_and_contradictions_removed(monkeypatch):
    """What the LM writes is post-processed per section: a repeated sentence goes, and a clash that
    re-decoding cannot reach (here the sections are fixed text) is removed and named."""
    loaded = load_report_model(shared()["bundle"])
    generator = ReportGenerator(loaded=loaded, labeler=_LABELER, max_new_tokens=4)
    written = (
        "No pleural effusion was detected. Heart size is normal. No pleural effusion was detected.",
        "Bilateral pleural effusion.",
    )
    monkeypatch.setattr(loaded.text, "split_report", lambda ids: written)
    report = generator.report(load_record_volume(scan_ctrate(shared()["data"], split="valid").records[0]))
    assert report.findings == "No pleural effusion was detected. Heart size is normal."
    assert report.impression == ""
    assert any("were removed after 0 re-decodes: Bilateral pleural effusion." in w for w in report.warnings)
    assert report.labels["Pleural effusion"] == 0  # the labels say what the remaining text says
