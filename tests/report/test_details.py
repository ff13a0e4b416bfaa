"""Finding details: the codes, the phantoms' own, the head that reads them, and the LM that writes them."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from ctvl.classify.nets import CTNet3D, FeatureNetConfig
from ctvl.data.datasets import load_record_volume, scan_ctrate
from ctvl.data.labels import CTRATE_LABELS
from ctvl.data.phantom import build_patient, patient_findings
from ctvl.data.phantom.descriptors import Finding
from ctvl.errors import InputError
from ctvl.eval.labeler import ReportLabeler
from ctvl.report.bundle import export_report_bundle, load_report_model, with_diagnosis
from ctvl.report.details import (
    CODES,
    EXTENTS,
    SIDES,
    DetailHead,
    detail_accuracy,
    detail_code,
    detail_loss,
    finding_code,
    phantom_states,
    record_states,
    split_code,
)
from ctvl.report.diagnosis import load_diagnosis, write_diagnosis
from ctvl.report.generate import ReportGenerator
from ctvl.report.task import ReportTask
from ctvl.train import train
from tests.report.factory import shared, tiny_config

TINY_NET = FeatureNetConfig(widths=(8, 16), strides=None, feature_dim=12)


def test_codes_round_trip_and_one_means_no_detail():
    assert detail_code(0, 0) == 1 and CODES == 1 + len(SIDES) * len(EXTENTS)
    codes = torch.tensor([detail_code(s, e) for e in range(len(EXTENTS)) for s in range(len(SIDES))])
    assert sorted(codes.tolist()) == list(range(1, CODES))
    side, extent = split_code(codes)
    assert torch.equal(codes, 1 + len(SIDES) * extent + side)
    assert split_code(torch.tensor([0])) == (torch.tensor([0]), torch.tensor([0]))


def test_finding_codes_use_severity_then_graded_size():
    effusion = Finding("Pleural effusion", side="L", severity="moderate", size_mm=30)
    assert split_code(torch.tensor(finding_code(effusion))) == (SIDES.index("L"), EXTENTS.index("moderate"))
    small, large = (Finding("Lung nodule", side="R", size_mm=mm) for mm in (5, 18))
    assert split_code(torch.tensor(finding_code(small)))[1] == EXTENTS.index("minimal")
    assert split_code(torch.tensor(finding_code(large)))[1] == EXTENTS.index("severe")
    assert finding_code(Finding("Cardiomegaly")) == 1  # no side, no severity: present without detail


def test_phantom_states_match_the_patient_and_its_labels():
    for seed in (11, 12, 13):
        patient = build_patient(seed)
        labels = np.array([patient.labels[n] for n in CTRATE_LABELS])
        states = phantom_states(seed, labels)
        assert np.array_equal(states > 0, labels > 0)
        for i, name in enumerate(CTRATE_LABELS):
            if name in patient.details:
                assert states[i] == finding_code(patient.details[name])
        assert patient_findings(seed).keys() == patient.details.keys()
    with pytest.raises(InputError, match="does not draw the labels"):
        phantom_states(11, 1 - labels_of(11))


def labels_of(seed: int) -> np.ndarray:
    patient = build_patient(seed)
    return np.array([patient.labels[n] for n in CTRATE_LABELS])


def test_record_states_are_cached_and_need_phantoms(tmp_path):
    records = scan_ctrate(shared()["data"], split="train", require=("labels",)).records
    cache = tmp_path / "details.json"
    states = record_states(records, cache)
    assert states.shape == (len(records), 18) and np.array_equal(states > 0, np.stack([r.labels for r in records]) > 0)
    assert len(json.loads(cache.read_text())) == len(records)
    assert np.array_equal(record_states(records, cache), states)
    records[0].metadata.pop("PhantomSeed")
    with pytest.raises(InputError, match="need ctvl phantoms"):
        record_states(records[:1])


def test_head_shapes_loss_and_accuracy():
    torch.manual_seed(0)
    head = DetailHead(channels=16, cells=(2, 3, 3), hidden=4)
    h = torch.randn(5, 16, 2, 3, 3)
    side, extent = head(h)
    assert side.shape == (5, 18, len(SIDES)) and extent.shape == (5, 18, len(EXTENTS))
    codes = head.codes(h)
    assert codes.shape == (5, 18) and codes.min() >= 1 and codes.max() < CODES
    states = torch.zeros(5, 18, dtype=torch.long)
    assert detail_loss(head, h, states).item() == 0.0  # nothing present: nothing to learn
    states[0, 3] = codes[0, 3]
    assert detail_accuracy(codes, states) == {"side": 1.0, "extent": 1.0, "both": 1.0, "present_labels": 1}
    opt = torch.optim.Adam(head.parameters(), lr=0.05)
    states[:, 9] = detail_code(2, 3)  # every scan: the same code on one label, learnable in a few steps
    for _ in range(30):
        opt.zero_grad()
        detail_loss(head, h, states).backward()
        opt.step()
    assert (head.codes(h)[:, 9] == detail_code(2, 3)).all()
    with pytest.raises(InputError, match="feature map"):
        head(torch.randn(1, 16, 2, 2, 2))


@pytest.fixture(scope="module")
def with_details(tmp_path_factory):
    """A tiny prompted run, a run fine-tuned from it with detail_prompt, and a diagnosis with a detail head."""
    s, root = shared(), tmp_path_factory.mktemp("details")
    base = train(ReportTask(), tiny_config(root / "base", s["data"], s["tokenizer"], root / "cache", label_prompt=True))
    bundle = export_report_bundle(base.run_dir, root / "base-bundle")
    cfg = tiny_config(root / "ft", s["data"], s["tokenizer"], root / "cache", label_prompt=True, detail_prompt=True)
    cfg.init_from = str(bundle)
    tuned = train(ReportTask(), cfg)
    spec = load_report_model(bundle).spec
    torch.manual_seed(0)
    net = CTNet3D(config=TINY_NET)
    cells = tuple(net.stages(torch.zeros(1, 1, spec.depth, *spec.size)).shape[2:])
    head = DetailHead(channels=16, cells=cells, hidden=4)
    diagnosis = write_diagnosis(
        root / "diagnosis", net=net, thresholds=torch.zeros(18), spec=spec, training={}, detail=head
    )
    return {"bundle": bundle, "tuned": tuned, "diagnosis": diagnosis, "root": root}


def test_fine_tuning_keeps_the_bpe_and_starts_the_table_at_zero(with_details):
    base = load_report_model(with_details["bundle"])
    tuned_bundle = export_report_bundle(with_details["tuned"].run_dir, with_details["root"] / "tuned-bundle")
    tuned = load_report_model(tuned_bundle)
    assert tuned.text.to_dict() == base.text.to_dict()  # same ids, same words
    assert tuned.model.details is not None and base.model.details is None
    # zero table: a model with details built from the base weights writes the same prompts as the base
    task = ReportTask()
    fresh = type(base.model)(config=tuned.model.config, text=base.text)
    task.load_initial_weights(fresh, base.model.state_dict())
    assert fresh.details.weight.abs().sum() == 0
    codes = [torch.randn(6, 3, 4, 4)]
    states = torch.zeros(1, 18, dtype=torch.long)
    states[0, :3] = torch.tensor([1, 7, 20])
    fresh.eval(), base.model.eval()
    a, _ = fresh.prefixes(codes, 1, states)
    b, _ = base.model.prefixes(codes, 1, (states > 0).long())
    assert torch.allclose(a[0], b[0], atol=1e-6)
    with pytest.raises(RuntimeError, match="do not fit"):
        task.load_initial_weights(fresh, {"nonsense": torch.zeros(1)})


def test_trained_table_makes_the_codes_matter(with_details):
    tuned = load_report_model(
        export_report_bundle(with_details["tuned"].run_dir, with_details["root"] / "tuned-bundle-2")
    )
    model = tuned.model.eval()
    codes = [torch.randn(6, 3, 4, 4)]
    one, other = torch.zeros(1, 18, dtype=torch.long), torch.zeros(1, 18, dtype=torch.long)
    one[0, 0], other[0, 0] = 1, 9
    with torch.no_grad():
        model.details.weight.normal_()
        a, _ = model.prefixes(codes, 1, one)
        b, _ = model.prefixes(codes, 1, other)
        absent, _ = model.prefixes(codes, 1, torch.zeros(1, 18, dtype=torch.long))
        model.details.weight.zero_()
        absent_zero, _ = model.prefixes(codes, 1, torch.zeros(1, 18, dtype=torch.long))
    assert not torch.allclose(a[0], b[0])  # the code changes the prompt
    assert torch.allclose(absent[0], absent_zero[0])  # absent labels carry no detail, whatever the table


def test_diagnosis_reads_details_and_the_generator_passes_them(with_details, tmp_path):
    folder = with_details["diagnosis"]
    loaded = load_diagnosis(folder, None)
    assert loaded.detail is not None and loaded.config["detail"]["hidden"] == 4
    spec = loaded.spec
    x = torch.rand(2, 1, spec.depth, *spec.size) * 2 - 1
    reading = loaded.reading(x)
    assert reading.shape == (2, 18, 2)
    assert torch.allclose(reading[..., 0], loaded.probabilities(x), atol=1e-6)
    states = loaded.states(reading)  # thresholds 0: every label present with its code
    assert torch.equal(states, reading[..., 1].long()) and states.min() >= 1
    bundle = export_report_bundle(with_details["tuned"].run_dir, tmp_path / "b")
    with_diagnosis(bundle, folder)
    gen = ReportGenerator(loaded=load_report_model(bundle), labeler=ReportLabeler())
    volume = load_record_volume(scan_ctrate(shared()["data"], split="valid").records[0])
    seen = []
    original = gen.loaded.model.generate_with_probabilities

    def spy(*args, **kwargs):
        seen.append(kwargs["states"])
        return original(*args, **kwargs)

    gen.loaded.model.generate_with_probabilities = spy
    report = gen.report(volume)
    assert seen[0].shape == (1, 18) and torch.equal(seen[0][0], gen.diagnosis.states(gen.diagnose(volume)[None])[0])
    assert set(report.probabilities) == set(CTRATE_LABELS)
