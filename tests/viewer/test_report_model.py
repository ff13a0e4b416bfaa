"""ctvl.viewer.report_model: the viewer's report hook over a report bundle, and `ctvl app --model`."""

from __future__ import annotations

import pytest

from ctvl.data.labels import CTRATE_LABELS
from ctvl.errors import CtvlError
from ctvl.report.bundle import DEFAULT_BUNDLE
from ctvl.viewer.report_hook import ReportOutput

needs_bundle = pytest.mark.skipif(not (DEFAULT_BUNDLE / "config.json").is_file(), reason="no shipped report bundle")


@needs_bundle
def test_hook_reports_labels_probabilities_and_evidence_for_positives():
    from ctvl.data.phantom import render_case
    from ctvl.eval.labeler import ReportLabeler
    from ctvl.viewer.report_model import bundle_report_fn

    volume = render_case(3).volume
    out = bundle_report_fn()(volume)
    assert isinstance(out, ReportOutput) and out.text.startswith("Findings: ")
    assert list(out.labels) == list(CTRATE_LABELS)
    body = out.text.replace("Findings: ", "").replace("\n\nImpression: ", " ")
    assert out.labels == ReportLabeler().label(body)
    assert set(out.probabilities) == set(CTRATE_LABELS)
    positives = {name for name, v in out.labels.items() if v}
    assert set(out.evidence) == positives
    if positives:
        assert "occlusion" in out.evidence_method
        assert all(0 <= v < n for ijk in out.evidence.values() for v, n in zip(ijk, volume.shape))


def test_missing_bundle_means_no_model(monkeypatch):
    import ctvl.report.bundle as bundle_mod
    from ctvl.viewer.report_model import default_report_fn

    def missing(path=None):
        raise CtvlError("no report model bundle here")

    monkeypatch.setattr(bundle_mod, "load_report_model", missing)
    assert default_report_fn() is None  # the viewer still starts; Generate report says no model is installed
