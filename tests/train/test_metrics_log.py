"""Tests for ctvl.train.metrics_log: JSONL records, resume truncation, progress bar."""

from __future__ import annotations

from pathlib import Path

from ctvl.train.metrics_log import MetricsLog, ProgressBar, read_metrics


def test_write_and_resume_truncation(tmp_path: Path) -> None:
    path = tmp_path / "run" / "metrics.jsonl"
    log = MetricsLog(path=path, enabled=True)
    for step in (2, 4, 6, 8):
        log.write({"step": step, "loss": 1.0 / step})
    log.close()
    with path.open("a") as fh:
        fh.write('{"step": 10, "lo')  # torn line from a crash
    assert [r["step"] for r in read_metrics(path)] == [2, 4, 6, 8]

    resumed = MetricsLog(path=path, enabled=True, resume_step=4)  # steps 6, 8 were lost with the crash
    resumed.write({"step": 6, "loss": 0.5})
    resumed.close()
    assert [r["step"] for r in read_metrics(path)] == [2, 4, 6]

    fresh = MetricsLog(path=path, enabled=True)  # a new run starts an empty log
    fresh.close()
    assert read_metrics(path) == []


def test_disabled_log_writes_nothing(tmp_path: Path) -> None:
    log = MetricsLog(path=tmp_path / "m.jsonl", enabled=False)
    log.write({"step": 1})
    log.close()
    assert not (tmp_path / "m.jsonl").exists()


def test_progress_bar_reports_on_stderr(capsys) -> None:  # noqa: ANN001 - pytest fixture
    with ProgressBar(total=4, start=1, description="demo", enabled=True) as bar:
        bar.note("resumed from step 1")
        bar.update(4, "loss 0.5")
    err = capsys.readouterr().err
    assert "resumed from step 1" in err and "demo" in err and "4/4" in err
    with ProgressBar(total=4, start=0, description="quiet", enabled=False) as bar:
        bar.update(4, "x")
        bar.note("hidden")
    assert capsys.readouterr().err == ""
