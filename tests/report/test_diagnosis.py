"""The voxel diagnosis: its folder format, its checks, and that its states are what the LM's prompt carries."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ctvl.classify.nets import CTNet3D, FeatureNetConfig
from ctvl.data.datasets import load_record_volume, scan_ctrate
from ctvl.data.labels import CTRATE_LABELS
from ctvl.data.transforms import PreprocessSpec
from ctvl.errors import InputError
from ctvl.eval.labeler import ReportLabeler
from ctvl.report.bundle import export_report_bundle, load_report_model, with_diagnosis
from ctvl.report.diagnosis import load_diagnosis, write_diagnosis
from ctvl.report.generate import ReportGenerator
from ctvl.report.task import ReportTask
from ctvl.train import train
from tests.report.factory import shared, tiny_config

TINY_NET = FeatureNetConfig(widths=(8, 16), strides=None, feature_dim=12)


def _spec() -> PreprocessSpec:
    return load_report_model(shared()["bundle"]).spec


def _diagnosis(folder: Path, thresholds: float, spec: PreprocessSpec) -> Path:
    torch.manual_seed(0)
    return write_diagnosis(
        folder, net=CTNet3D(config=TINY_NET), thresholds=torch.full((18,), thresholds), spec=spec, training={"n": 1}
    )


@pytest.fixture(scope="module")
def prompted(tmp_path_factory) -> Path:
    """A tiny report bundle with the diagnosis prompt (2 training steps)."""
    s, root = shared(), tmp_path_factory.mktemp("prompted")
    cfg = tiny_config(root / "run", s["data"], s["tokenizer"], root / "cache", label_prompt=True)
    return export_report_bundle(train(ReportTask(), cfg).run_dir, root / "bundle")


def test_round_trip_and_states(tmp_path):
    spec = _spec()
    folder = _diagnosis(tmp_path / "d", 0.5, spec)
    loaded = load_diagnosis(folder, spec)
    x = torch.rand(2, 1, spec.depth, *spec.size) * 2 - 1
    p = loaded.probabilities(x)
    assert p.shape == (2, 18) and ((p > 0) & (p < 1)).all()
    assert torch.equal(loaded.states(p), (p >= 0.5).long())
    assert loaded.config["labels"] == list(CTRATE_LABELS) and loaded.config["training"] == {"n": 1}


def test_refuses_another_preprocessing_or_format(tmp_path):
    spec = _spec()
    folder = _diagnosis(tmp_path / "d", 0.5, spec)
    other = PreprocessSpec.from_dict({**spec.to_dict(), "window": [-500.0, 500.0]})
    with pytest.raises(InputError, match="another preprocessing"):
        load_diagnosis(folder, other)
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "config.json").write_text('{"format": "nope"}')
    with pytest.raises(InputError, match="not a report diagnosis folder"):
        load_diagnosis(tmp_path / "x", spec)
    (tmp_path / "x" / "config.json").write_text('{"format": "ctvl-report-diagnosis-1", "labels": []}')
    with pytest.raises(InputError, match="lacks net, thresholds, preprocessing"):
        load_diagnosis(tmp_path / "x", spec)


def test_the_prompt_says_what_the_voxel_classifier_reads(prompted, tmp_path):
    volume = load_record_volume(scan_ctrate(shared()["data"], split="valid").records[0])
    states_seen = []
    for name, threshold in (("all", 0.0), ("none", 1.01)):  # every label present / absent
        bundle = tmp_path / name
        export_report_bundle(prompted, bundle)
        with_diagnosis(bundle, _diagnosis(tmp_path / f"d-{name}", threshold, _spec()))
        loaded = load_report_model(bundle)
        assert loaded.diagnosis is not None
        gen = ReportGenerator(loaded=loaded, labeler=ReportLabeler())
        original = loaded.model.generate_with_probabilities

        def spy(*args, original=original, **kwargs):
            states_seen.append(kwargs["states"])
            return original(*args, **kwargs)

        loaded.model.generate_with_probabilities = spy
        report = gen.report(volume)
        probs = gen.diagnose(volume)
        assert report.probabilities == {n: round(float(v), 4) for n, v in zip(CTRATE_LABELS, probs.tolist())}
        with pytest.raises(InputError, match="reads the voxels"):
            gen.from_codes([gen.encode(volume)])
        token_head = ReportGenerator(loaded=loaded, labeler=ReportLabeler(), voxel_diagnosis=False)
        assert token_head.diagnose(volume) is None and token_head.from_codes([gen.encode(volume)])
    # per bundle: the voxel-set prompt, then the token head's own (None)
    assert states_seen[0].sum().item() == 18 and states_seen[2].sum().item() == 0
    assert states_seen[1] is None and states_seen[3] is None


def test_the_scan_is_preprocessed_once_for_tokens_and_diagnosis(prompted, tmp_path, monkeypatch):
    volume = load_record_volume(scan_ctrate(shared()["data"], split="valid").records[0])
    bundle = export_report_bundle(prompted, tmp_path / "b")
    with_diagnosis(bundle, _diagnosis(tmp_path / "d", 0.5, _spec()))
    gen = ReportGenerator(loaded=load_report_model(bundle), labeler=ReportLabeler())
    prepared = gen.model_space(volume)
    assert prepared is not None and prepared.shape == (1, _spec().depth, *_spec().size)
    assert torch.allclose(gen.encode(volume, prepared), gen.encode(volume), atol=1e-5)
    assert torch.allclose(gen.diagnose(volume, prepared), gen.diagnose(volume), atol=1e-6)
    calls = []
    spec_type = type(gen.loaded.tokenizer.spec)
    original = spec_type.apply

    def counting(self, *args, **kwargs):
        calls.append(1)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(spec_type, "apply", counting)
    gen.report(volume)
    assert len(calls) == 1
    assert (
        ReportGenerator(loaded=gen.loaded, labeler=ReportLabeler(), voxel_diagnosis=False).model_space(volume) is None
    )


def test_a_model_without_a_diagnosis_prompt_refuses_one(tmp_path):
    bundle = export_report_bundle(shared()["bundle"], tmp_path / "b")
    with_diagnosis(bundle, _diagnosis(tmp_path / "d", 0.5, _spec()))
    with pytest.raises(InputError, match="no diagnosis prompt"):
        load_report_model(bundle)
    with_diagnosis(bundle, None)  # removed again: loads as before
    assert load_report_model(bundle).diagnosis is None


def test_a_finding_the_text_keeps_ruling_out_is_named_in_the_warnings(prompted, tmp_path, monkeypatch):
    import ctvl.report.generate as generate_module

    volume = load_record_volume(scan_ctrate(shared()["data"], split="valid").records[0])
    bundle = export_report_bundle(prompted, tmp_path / "b")
    with_diagnosis(bundle, _diagnosis(tmp_path / "d", 0.0, _spec()))  # every label stated present
    gen = ReportGenerator(loaded=load_report_model(bundle), labeler=ReportLabeler())
    first = gen.report(volume)  # greedy: the same text again below
    missing = [n for n in CTRATE_LABELS if not first.labels[n]]
    assert missing, "the tiny LM stated all 18 labels"
    original = generate_module.follow_prompt

    def stuck(report, **kwargs):
        out = original(report, **kwargs)
        out.unresolved = [missing[0], first_present] if first_present else [missing[0]]  # as if restarts ran out
        return out

    present = [n for n in CTRATE_LABELS if first.labels[n]]
    first_present = present[0] if present else None
    monkeypatch.setattr(generate_module, "follow_prompt", stuck)
    report = gen.report(volume)
    assert report.text == first.text
    named = [w for w in report.warnings if w.startswith("the diagnosis reads")]
    assert named == [
        f"the diagnosis reads {missing[0]} in the scan but the findings rule it out after "
        f"{report.redecodes} re-decodes: check the scan for it"
    ]  # a label the final text states present is not named
