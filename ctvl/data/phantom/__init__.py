"""The embedded default dataset: a procedural chest-CT phantom with labels and reports.

A patient is a set of analytic shapes in millimetre world coordinates (body, lungs with airway and
vessel trees, heart, great vessels, bones, upper abdomen) plus any of the 18 CT-RATE abnormalities,
rasterised at any grid. The same seed gives the same patient at 64 × 64 × 33 (CPU training) and at
512 × 512 × 241 (memory benchmarks). See ``data_cards/phantom.md``.

Public API: :func:`render_case`, :class:`PhantomCase`, :func:`write_dataset`, :func:`sample_labels`.
"""

from ctvl.data.phantom.dataset import write_dataset
from ctvl.data.phantom.prevalence import TARGET_PREVALENCE, sample_labels
from ctvl.data.phantom.raster import default_spacing
from ctvl.data.phantom.render import PhantomCase, build_patient, patient_findings, render_case

__all__ = [
    "PhantomCase",
    "TARGET_PREVALENCE",
    "build_patient",
    "default_spacing",
    "patient_findings",
    "render_case",
    "sample_labels",
    "write_dataset",
]
