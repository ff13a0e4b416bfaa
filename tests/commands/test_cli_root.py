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
