"""The seam between the viewer and a report model.

The viewer does not know how reports are made. :func:`~ctvl.viewer.app.build_app` takes a
``report_fn``: a callable from a :class:`~ctvl.io.Volume` (read strictly from the upload, the same
way ``ctvl report`` reads a path) to a :class:`ReportOutput`. The report model (``ctvl.report``)
provides one; without it the Report tab says so plainly (:class:`ReportModelMissing`) and never
shows a made-up report.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from ctvl.data.labels import CTRATE_LABELS
from ctvl.errors import CtvlError
from ctvl.io.volume import Volume

NO_MODEL_MESSAGE = (
    "No report model bundle is installed, so this viewer cannot generate a report. "
    "Viewing scans and the Evaluate tab work without one; install or train a report model bundle "
    "and restart `ctvl app` to enable Generate report."
)


class ReportModelMissing(CtvlError):
    """No report model is available to the viewer."""


@dataclass
class ReportOutput:
    """What a report model returns for one scan.

    Attributes:
        text: the generated report (findings and impression).
        labels: the 18 CT-RATE labels read from ``text`` (name → 0/1).
        probabilities: optional model confidence per label (name → 0..1).
        evidence: optional stored voxel (i, j, k) where the evidence for a label is strongest.
        evidence_method: how ``evidence`` was found (e.g. "occlusion over latent positions").
        warnings: what the reader should know about this report (shown beside it).
    """

    text: str
    labels: Mapping[str, int]
    probabilities: Mapping[str, float] | None = None
    evidence: Mapping[str, tuple[int, int, int]] = field(default_factory=dict)
    evidence_method: str = ""
    warnings: list[str] = field(default_factory=list)


ReportFn = Callable[[Volume], ReportOutput]

FINDINGS_HEADERS = ["finding", "present", "probability"]


def findings_rows(output: ReportOutput) -> list[list]:
    """One row per CT-RATE label, in CT-RATE order: [name, "yes"/"no", probability or ""].

    Raises:
        CtvlError: the model returned labels that are not the 18 CT-RATE names.
    """
    unknown = sorted(set(output.labels) - set(CTRATE_LABELS))
    missing = [name for name in CTRATE_LABELS if name not in output.labels]
    if unknown or missing:
        raise CtvlError(
            f"the report model returned labels that do not match the 18 CT-RATE labels "
            f"(missing: {', '.join(missing[:3]) or 'none'}; unknown: {', '.join(unknown[:3]) or 'none'})"
        )
    probs = output.probabilities or {}
    return [
        [name, "yes" if int(output.labels[name]) else "no", "" if name not in probs else round(float(probs[name]), 3)]
        for name in CTRATE_LABELS
    ]


def run_report(report_fn: ReportFn | None, volume_loader: Callable[[], Volume]) -> tuple[ReportOutput, list[list]]:
    """Generate a report for the upload, or explain why none can be made.

    Args:
        report_fn: the model's hook, or None when no model is installed.
        volume_loader: reads the uploaded volume (called only when a model exists, so a missing
            model is reported at once, before a possibly long read).
    Returns:
        The model's output and :func:`findings_rows` of it.
    Raises:
        ReportModelMissing: ``report_fn`` is None.
    """
    if report_fn is None:
        raise ReportModelMissing(NO_MODEL_MESSAGE)
    output = report_fn(volume_loader())
    if not isinstance(output, ReportOutput):
        raise CtvlError(f"the report model returned {type(output).__name__}, not a ReportOutput")
    return output, findings_rows(output)
