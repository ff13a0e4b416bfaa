"""ctvl.viewer: the Gradio viewer (``ctvl app``) and the pure functions behind it.

* :mod:`ctvl.viewer.planes` — canonical orientation, plane extraction, windowing, aspect-correct images;
* :mod:`ctvl.viewer.upload` — uploads (NIfTI, NRRD, MetaImage, DICOM .zip, several .dcm) → volume + header info;
* :mod:`ctvl.viewer.report_hook` — the seam a report model plugs into (``report_fn``);
* :mod:`ctvl.viewer.evaluate` — the Evaluate tab's call to :mod:`ctvl.eval.reports`;
* :mod:`ctvl.viewer.synthesize` — the Synthesize tab's calls to :mod:`ctvl.synthesis` and its classifier;
* :mod:`ctvl.viewer.app` — ``build_app`` (Gradio Blocks); :mod:`ctvl.viewer.server` — ``serve``.

Gradio is imported only by ``app``/``server``, so the pure modules stay light. The report, synthesis and
evaluation stacks are imported inside the functions that first need them: the viewer serves its first
page without loading a model.
"""

from ctvl.viewer.planes import WINDOW_PRESETS, ScanView, apply_window, render_plane, window_preset
from ctvl.viewer.report_hook import NO_MODEL_MESSAGE, ReportFn, ReportModelMissing, ReportOutput
from ctvl.viewer.upload import DEFAULT_MAX_UPLOAD_BYTES, load_scan, read_upload

__all__ = [
    "DEFAULT_MAX_UPLOAD_BYTES",
    "NO_MODEL_MESSAGE",
    "WINDOW_PRESETS",
    "ReportFn",
    "ReportModelMissing",
    "ReportOutput",
    "ScanView",
    "apply_window",
    "build_app",
    "load_scan",
    "read_upload",
    "render_plane",
    "serve",
    "window_preset",
]


def __getattr__(name: str):
    if name == "build_app":
        from ctvl.viewer.app import build_app

        return build_app
    if name == "serve":
        from ctvl.viewer.server import serve

        return serve
    raise AttributeError(f"module 'ctvl.viewer' has no attribute {name!r}")
