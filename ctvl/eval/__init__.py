"""Evaluation of generated reports: report labeler, clinical F1, NLG metrics, degenerate-output checks."""

from ctvl.eval.clinical import clinical_metrics
from ctvl.eval.degenerate import degenerate_metrics, distinct_n
from ctvl.eval.nlg import nlg_metrics, tokenize
from ctvl.eval.reports import evaluate_report_files, evaluate_reports

__all__ = [
    "clinical_metrics",
    "degenerate_metrics",
    "distinct_n",
    "evaluate_report_files",
    "evaluate_reports",
    "nlg_metrics",
    "tokenize",
]
