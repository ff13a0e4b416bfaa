"""Report generation: 3D tokenizer latents → token reduction → MLP projector → causal LM → report.

Example::

    from ctvl.eval.labeler import ReportLabeler
    from ctvl.report import generate_report

    out = generate_report("scan.nii.gz", labeler=ReportLabeler())  # default: the phantom bundle shipped with ctvl
    print(out["report"], out["labels"], out["warnings"])

Training: ``ctvl train report --config configs/phantom-cpu-report.yaml`` (:class:`ReportTask`);
evaluation over a dataset: ``ctvl eval run`` (:mod:`ctvl.eval.run`).
"""

from ctvl.report.bundle import DEFAULT_BUNDLE, LoadedReportModel, export_report_bundle, load_report_model
from ctvl.report.generate import GeneratedReport, ReportGenerator, TextLabeler, generate_report
from ctvl.report.model import ReportModel, ReportModelConfig
from ctvl.report.projector import MLPProjector
from ctvl.report.text_tokenizer import ReportTextTokenizer, format_report
from ctvl.report.visual import ReductionConfig, VisualEncoder

__all__ = [
    "DEFAULT_BUNDLE",
    "GeneratedReport",
    "LoadedReportModel",
    "MLPProjector",
    "ReductionConfig",
    "ReportGenerator",
    "ReportModel",
    "ReportModelConfig",
    "ReportTextTokenizer",
    "TextLabeler",
    "VisualEncoder",
    "export_report_bundle",
    "format_report",
    "generate_report",
    "load_report_model",
]
