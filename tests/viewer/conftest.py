"""Shared fixtures for the viewer tests: a phantom NIfTI and a viewer served on loopback."""

import socket

import pytest


def free_port() -> int:
    """A TCP port that is free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def phantom_nifti(tmp_path_factory):
    """Phantom chest CT 0 (64 x 64 x 33, LPS) written as int16 NIfTI."""
    from ctvl.data.phantom import render_case
    from ctvl.io import write_nifti

    return write_nifti(render_case(0).volume, tmp_path_factory.mktemp("phantom") / "phantom_0.nii.gz", dtype="int16")


@pytest.fixture(scope="session")
def viewer():
    """The viewer as `ctvl app` serves it (the shipped report model bundle), on a free loopback port."""
    from ctvl.viewer.report_model import default_report_fn
    from ctvl.viewer.server import serve, stop

    report_fn = default_report_fn()
    assert report_fn is not None, "the report model bundle ctvl/bundles/report-phantom-cpu is not installed"
    demo = serve(report_fn, port=free_port(), block=False, quiet=True, meteor=False)
    yield demo
    stop(demo)


@pytest.fixture(scope="session")
def bare_viewer():
    """The viewer without a report model (`ctvl app --no-report`)."""
    from ctvl.viewer.server import serve, stop

    demo = serve(None, port=free_port(), block=False, quiet=True, meteor=False)
    yield demo
    stop(demo)
