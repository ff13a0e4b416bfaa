"""``ctvl app`` / ``python app/app.py``: options, loopback default, a taken port, a real start and stop."""

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from ctvl.cli import main

REPO = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture()
def calls(monkeypatch):
    import ctvl.viewer.server

    seen = []
    monkeypatch.setattr(ctvl.viewer.server, "serve", lambda report_fn=None, **kw: seen.append((report_fn, kw)))
    return seen


def test_defaults_bind_loopback_port_7860(calls):
    assert main(["app"]) == 0
    report_fn, kw = calls[0]
    assert callable(report_fn)  # the installed report model bundle
    assert kw.pop("synthesizer") is not None  # the Synthesize tab (tests/viewer/test_synthesize.py)
    assert kw == {"host": "127.0.0.1", "port": 7860, "max_upload_bytes": 1 << 30, "concurrency_limit": 2}


def test_no_report_and_a_bad_model_bundle(calls, capsys, tmp_path):
    assert main(["app", "--no-report"]) == 0 and calls[0][0] is None
    assert main(["app", "--model", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "nowhere" in err and "Traceback" not in err and len(calls) == 1


def test_options_reach_the_server(calls):
    argv = ["app", "--host", "0.0.0.0", "--port", "9000", "--max-upload-mb", "5", "--concurrency", "3"]
    assert main(argv) == 0
    calls[0][1].pop("synthesizer")
    assert calls[0][1] == {"host": "0.0.0.0", "port": 9000, "max_upload_bytes": 5 << 20, "concurrency_limit": 3}


def test_help_and_bad_options(capsys):
    assert main(["app", "--help"]) == 0
    out = capsys.readouterr().out
    assert "--host" in out and "127.0.0.1" in out and "--port" in out and "7860" in out
    assert main(["app", "--port", "70000"]) == 2
    assert main(["app", "--max-upload-mb", "0"]) == 2


def test_taken_port_or_unknown_host_is_one_line_error(capsys):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main(["app", "--port", str(port)]) == 2
    err = capsys.readouterr().err
    assert err == (
        f"error: cannot listen on 127.0.0.1:{port} (the port is in use); pass another --port or --host, "
        "or stop the program using it\n"
    )
    assert main(["app", "--host", "no-such-host.invalid"]) == 2
    assert "unknown host" in capsys.readouterr().err


def test_launcher_serves_the_viewer_and_stops_on_ctrl_c():
    port = _free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, str(REPO / "app" / "app.py"), "--port", str(port)],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        page, deadline = "", time.time() + 90
        while time.time() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as resp:
                    page = resp.read().decode()
                break
            except OSError:
                time.sleep(0.5)
        assert "ctvl — chest CT viewer" in page, proc.stdout.read() if proc.poll() is not None else "no answer"
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/gradio_api/info", timeout=5) as resp:
            assert b'"/report"' in resp.read()
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
