"""The report bundle shipped in ctvl/bundles/report-phantom-cpu: self-contained, consistent, and usable."""

from __future__ import annotations

import json

import pytest

from ctvl.report.bundle import DEFAULT_BUNDLE, TOKENIZER_DIR, load_report_model

pytestmark = pytest.mark.skipif(
    not (DEFAULT_BUNDLE / "config.json").is_file(),
    reason="no shipped report bundle yet (python pipelines/train_report.py installs it)",
)


def test_shipped_bundle_is_self_contained_and_records_its_evaluation():
    loaded = load_report_model()  # checks tokenizer id and preprocessing spec against the training record
    assert loaded.visual and (DEFAULT_BUNDLE / TOKENIZER_DIR / "weights.safetensors").is_file()
    assert loaded.spec == loaded.tokenizer.spec and loaded.spec.size == (64, 64)
    config = json.loads((DEFAULT_BUNDLE / "config.json").read_text())
    rows = {r["variant"]: r for r in config["training"]["comparison"]}
    assert {"3d", "textonly"} <= set(rows)
    assert (DEFAULT_BUNDLE / "MODEL_CARD.md").read_text().count("| visual input |") == 1


def test_shipped_bundle_writes_a_full_report_for_a_phantom():
    from ctvl.data.phantom import render_case
    from ctvl.eval.labeler import ReportLabeler
    from ctvl.report.generate import generate_report

    case = render_case(123456)
    out = generate_report(case.volume, labeler=ReportLabeler())
    assert out["report"].startswith("Findings:") and "Impression:" in out["report"]
    words = len(out["report"].split())
    reference = len((case.findings + " " + case.impression).split())
    assert words > 0.5 * reference  # a report, not a short phrase
    assert not [w for w in out["warnings"] if "length limit" in w]
