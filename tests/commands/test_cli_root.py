"""The root of the ``ctvl`` command: help, usage errors, one-line errors for bad input."""

import subprocess
import sys

from ctvl.cli import main
from ctvl.errors import CtvlError, InputError


def test_help_exits_zero(capsys):
    assert main(["--help"]) == 0
    assert "Usage" in capsys.readouterr().out


def test_unknown_command_is_usage_error(capsys):
    assert main(["no-such-command"]) == 2
    assert "No such command" in capsys.readouterr().err


def test_ctvl_error_message_is_one_line_with_path():
    err = InputError("header is\n truncated;  re-export the file", path="/tmp/x.nii.gz")
    assert str(err) == "/tmp/x.nii.gz: header is truncated; re-export the file"
    assert isinstance(err, CtvlError) and err.path == "/tmp/x.nii.gz"


def test_module_entry_point_runs():
    out = subprocess.run([sys.executable, "-m", "ctvl", "--help"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "ctvl" in out.stdout


def test_module_entry_point_delivers_output_and_exit_code_through_a_pipe(tmp_path):
    """``python -m ctvl`` leaves through ``exit_now``: piped output is flushed, the exit code and the
    one-line error survive, and atexit handlers (temporary folders) still run."""
    out = subprocess.run([sys.executable, "-m", "ctvl", "--help"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.rstrip().endswith("╯")  # the whole help box, up to its last line
    missing = tmp_path / "missing.nii.gz"
    bad = subprocess.run([sys.executable, "-m", "ctvl", "info", str(missing)], capture_output=True, text=True)
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines() == [f"error: {missing}: no such file or folder"]


def test_exit_now_runs_atexit_handlers_and_flushes(tmp_path):
    marker = tmp_path / "atexit-ran"
    code = (
        "import atexit, pathlib, sys\n"
        "from ctvl.cli import exit_now\n"
        f"atexit.register(lambda: pathlib.Path({str(marker)!r}).write_text('yes'))\n"
        "sys.stdout.write('x' * 100000)\n"  # more than a pipe buffer, unflushed
        "exit_now(3)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 3 and len(out.stdout) == 100000 and marker.read_text() == "yes"


def test_exit_now_lets_python_join_a_running_thread(tmp_path):
    done = tmp_path / "thread-done"
    code = (
        "import pathlib, threading, time\n"
        "from ctvl.cli import exit_now\n"
        f"t = threading.Thread(target=lambda: (time.sleep(0.5), pathlib.Path({str(done)!r}).write_text('ok')))\n"
        "t.start()\n"
        "exit_now(0)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and done.read_text() == "ok"
