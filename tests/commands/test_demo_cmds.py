"""``ctvl demo`` (the README quick start's main job): scan, info, report with the ground truth, viewer."""

import pytest

from ctvl.cli import main
from ctvl.report.bundle import DEFAULT_BUNDLE

pytestmark = pytest.mark.skipif(not (DEFAULT_BUNDLE / "config.json").is_file(), reason="no shipped report bundle")


def test_demo_writes_a_scan_and_prints_info_and_a_report(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path), "--no-app"]) == 0
    out = capsys.readouterr().out
    scan = tmp_path / "phantom_0.nii.gz"
    assert scan.is_file() and f"$ ctvl report {scan}" in out
    assert '"shape": [\n    64,\n    64,\n    33\n  ]' in out  # the report model's training grid
    assert "Findings:" in out and "Impression:" in out and "Labels read from the report:" in out
    assert "Ground truth of this phantom:" in out
    # the demo scan lies inside the model's training geometry: no scan warning (the small LM's text may
    # still earn one, e.g. an impression that contradicts its findings)
    warnings = [line for line in out.splitlines() if line.startswith("warning: ")]
    assert all("the findings rule it out" in line for line in warnings), warnings


def test_demo_then_starts_the_viewer_with_the_report_model(tmp_path, monkeypatch, capsys):
    import ctvl.viewer.server

    seen = []
    monkeypatch.setattr(ctvl.viewer.server, "serve", lambda report_fn=None, **kw: seen.append((report_fn, kw)))
    assert main(["demo", "--out", str(tmp_path), "--port", "7999"]) == 0
    assert len(seen) == 1 and callable(seen[0][0]) and seen[0][1] == {"host": "127.0.0.1", "port": 7999}
    assert "http://127.0.0.1:7999" in capsys.readouterr().out
