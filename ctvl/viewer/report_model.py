"""The viewer's report model: a :data:`~ctvl.viewer.report_hook.ReportFn` over a report model bundle.

The same calls as ``ctvl report`` (bundle preprocessing -> 3D tokenizer -> report LM -> labeler), plus
evidence locations for the positive findings (:mod:`ctvl.report.evidence`: occlusion of latent
positions scored by the model's label head). One scan at a time: the viewer queues report requests.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from ctvl.errors import CtvlError
from ctvl.io.volume import Volume
from ctvl.viewer.report_hook import ReportFn, ReportOutput

log = logging.getLogger("ctvl.viewer")


def bundle_report_fn(bundle: str | Path | None = None, evidence: bool = True) -> ReportFn:
    """A report hook over a report model bundle (None: the installed default).

    Args:
        bundle: report model bundle folder, or None for ``ctvl/bundles/report-phantom-cpu``.
        evidence: also locate each positive finding (needs a visual model with a label head).
    Returns:
        ``report_fn(volume) -> ReportOutput`` (text = findings + impression; labels from the labeler;
        probabilities from the label head; evidence voxels on the stored grid).
    Raises:
        CtvlError: the bundle is missing or unreadable.
    """
    from ctvl.eval.labeler import ReportLabeler
    from ctvl.report.bundle import load_report_model
    from ctvl.report.generate import ReportGenerator
    from ctvl.report.text_tokenizer import format_report

    loaded = load_report_model(bundle)
    generator = ReportGenerator(loaded=loaded, labeler=ReportLabeler())
    lock = threading.Lock()  # the model and its thread setting are shared: one scan at a time

    def report_fn(volume: Volume) -> ReportOutput:
        with lock:
            codes, located, x = _codes(loaded, volume)
            probs = generator.diagnose(volume, x if generator.shares_preprocessing else None)
            report = generator.from_codes([codes], [generator.scan_warnings(volume)], [probs])[0]
            positives = [name for name, v in report.labels.items() if v]
            voxels, method = {}, ""
            if evidence and located is not None and positives and report.probabilities:
                from ctvl.report.evidence import find_evidence

                state, model_shape = located
                cfg = loaded.tokenizer.model.config
                found = find_evidence(
                    loaded.model, codes, state, positives, cfg.time_factor, cfg.space_factor, model_shape
                )
                voxels, method = found.voxels, found.method
        return ReportOutput(
            text=format_report(report.findings, report.impression),
            labels=report.labels,
            probabilities=report.probabilities or None,
            evidence=voxels,
            evidence_method=method,
            warnings=list(report.warnings),
        )

    return report_fn


def _codes(loaded, volume: Volume):
    """(codes (D, t, h, w), (preprocessing state, model shape (T, H, W)), model-space scan (1, T, H, W)) —
    (None, None, None) for a text-only model."""
    if not loaded.visual:
        return None, None, None
    from ctvl.tokenizers.causal3d.inference import encode_tensor, preprocess

    x, state = preprocess(loaded.tokenizer, volume)  # (1, 1, T, H, W)
    tokens = encode_tensor(loaded.tokenizer, x)
    return tokens.codes[0].to("cpu").float(), (state, tuple(int(s) for s in x.shape[2:])), x[0]


def default_report_fn() -> ReportFn | None:
    """The installed default report bundle's hook, or None (logged) when it is not installed or unreadable."""
    try:
        return bundle_report_fn(None)
    except CtvlError as exc:
        log.warning("no report model for the viewer: %s", exc)
        return None
