"""The Gradio viewer: a Report tab (upload, planes, windows, report), an Evaluate tab and a Synthesize tab.

:func:`build_app` wires the pure pieces (:mod:`ctvl.viewer.planes`, :mod:`ctvl.viewer.upload`,
:mod:`ctvl.viewer.evaluate`, :mod:`ctvl.viewer.report_hook`, :mod:`ctvl.viewer.synthesize`) into one
``gr.Blocks``. Tabs are built by one function each and share the three-plane view with its window
presets; more tabs come in through ``extra_tabs`` and sit beside them.

Public API endpoints (``gradio_client`` names):

* ``/report`` — the uploaded file(s) → report text and the 18-label findings table (a readable
  error while no report model is installed);
* ``/evaluate`` — predictions CSV, references CSV, optional labels CSV → metrics table, per-label
  table, per-label F1 chart (PNG) and the results (zip + metrics.json);
* ``/synthesize`` (when built with a ``synthesizer``) — prompt, seed, steps, guidance, depth → the NIfTI
  and its recipe JSON, the 18-label table (what the prompt states, what the classifier reads) and a
  summary (a readable error while no generator bundle is installed).

Every handler turns :class:`~ctvl.errors.CtvlError` into a message on the page (``gr.Error`` /
``gr.Warning``) and any other exception into a one-line "unexpected ..." message with the
traceback in the server log, so bad input never takes the server down (:func:`ctvl.viewer.widgets.guarded`;
the three-plane view the tabs share is in :mod:`ctvl.viewer.widgets` too).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path

os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"  # before gradio is imported: no telemetry, no version check
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import gradio as gr  # noqa: E402
import pandas as pd  # noqa: E402

from ctvl.data.labels import CTRATE_LABELS  # noqa: E402
from ctvl.errors import CtvlError  # noqa: E402
from ctvl.viewer.evaluate import PER_LABEL_HEADERS, SUMMARY_HEADERS, WorkDirs, run_evaluation  # noqa: E402
from ctvl.viewer.planes import (  # noqa: E402
    DISPLAY_SIZE,
    PLANES,
    middle_slices,
)
from ctvl.viewer.report_hook import FINDINGS_HEADERS, ReportFn, run_report  # noqa: E402
from ctvl.viewer.synthesize import LABEL_HEADERS, Synthesizer  # noqa: E402
from ctvl.viewer.upload import (  # noqa: E402
    DEFAULT_MAX_UPLOAD_BYTES,
    DEFAULT_MAX_VOXELS,
    header_markdown,
    load_scan,
    read_upload,
    readable_errors,
)
from ctvl.viewer.widgets import (  # noqa: E402
    guarded,
    one_line,
    plane_images,
    render_all,
    slice_slider,
    window_controls,
    wire_planes,
)

log = logging.getLogger("ctvl.viewer")

TITLE = "ctvl — chest CT viewer"
EMPTY_HEADER = "Upload a scan to see its header and warnings."
ExtraTab = tuple[str, Callable[[], None]]


def _report_tab(
    report_fn: ReportFn | None,
    max_upload_bytes: int,
    max_voxels: int,
    display_size: int,
    concurrency_limit: int,
) -> None:
    """Upload, header, three planes with sliders and windows, Generate report."""
    scan = gr.State(None, time_to_live=3600)  # ScanView of the current upload
    evidence = gr.State({})  # {"method": str, "voxels": {label: stored (i, j, k)}} of the last report
    with gr.Row():
        with gr.Column(scale=1, min_width=300):
            files = gr.File(
                label="CT scan: one NIfTI (.nii/.nii.gz), NRRD (.nrrd, or .nhdr + data) or MetaImage (.mha, or .mhd "
                "+ .raw) file, one DICOM .zip, or all .dcm files of one series",
                file_count="multiple",
                elem_id="ctvl-upload",
            )
            header = gr.Markdown(EMPTY_HEADER, elem_id="ctvl-header")
            preset, level, width = window_controls("ctvl")
            generate = gr.Button("Generate report", variant="primary", elem_id="ctvl-generate")
        with gr.Column(scale=3):
            images, sliders = plane_images("ctvl")
            report = gr.Textbox(label="Report", lines=8, interactive=False, elem_id="ctvl-report")
            jump = gr.Dropdown(
                [], label="Show the slice with the strongest evidence for", visible=False, elem_id="ctvl-evidence"
            )
            findings = gr.Dataframe(
                headers=FINDINGS_HEADERS,
                label="Findings (18 CT-RATE labels)",
                interactive=False,
                elem_id="ctvl-findings",
            )

    no_report = ["", None, {}, gr.Dropdown(choices=[], value=None, visible=False)]  # a new scan drops the old report

    def on_upload(value, lv, wd):
        try:
            loaded = load_scan(value, max_upload_bytes, max_voxels)
        except (CtvlError, MemoryError) as exc:
            msg = "the server ran out of memory reading this scan" if isinstance(exc, MemoryError) else one_line(exc)
            gr.Warning(msg, duration=None)
            return [
                None,
                f"**Could not read the upload:** {msg}",
                *(slice_slider(None) for _ in PLANES),
                None,
                None,
                None,
                *no_report,
            ]
        mid = middle_slices(loaded.view)
        sl = [mid[p] for p in PLANES]
        return [
            loaded.view,
            header_markdown(loaded.info),
            *(slice_slider(loaded.view.n_slices(p), mid[p]) for p in PLANES),
            *render_all(loaded.view, sl, lv, wd, display_size),
            *no_report,
        ]

    def on_clear():
        return [None, EMPTY_HEADER, *(slice_slider(None) for _ in PLANES), None, None, None, *no_report]

    def on_report(value):
        output, rows = run_report(report_fn, lambda: read_upload(value, max_upload_bytes, max_voxels))
        for note in output.warnings:
            gr.Warning(note, duration=None)
        voxels = {k: tuple(v) for k, v in output.evidence.items() if output.labels.get(k)}  # positive findings only
        return (
            output.text,
            pd.DataFrame(rows, columns=FINDINGS_HEADERS),
            {"method": output.evidence_method, "voxels": voxels},
        )

    def on_evidence(found):
        labels = [name for name in CTRATE_LABELS if name in found.get("voxels", {})]
        method = found.get("method") or "the model's own localisation"
        return gr.Dropdown(choices=labels, value=None, visible=bool(labels), info=f"evidence from {method}")

    def on_jump(label, found, view, lv, wd):
        voxels = found.get("voxels", {})
        if view is None or label not in voxels:
            return [gr.update()] * 6
        where = view.stored_to_slices(voxels[label])
        slices = [where[p] for p in PLANES]
        return [*slices, *render_all(view, slices, lv, wd, display_size)]

    view_outputs = [scan, header, *sliders, *images, report, findings, evidence, jump]
    files.upload(
        guarded(on_upload),
        [files, level, width],
        view_outputs,
        concurrency_limit=concurrency_limit,
        api_visibility="private",
    )
    files.clear(on_clear, None, view_outputs, api_visibility="private")
    wire_planes(scan, preset, level, width, images, sliders, display_size)
    generate.click(
        guarded(on_report),
        [files],
        [report, findings, evidence],
        api_name="report",
        concurrency_limit=1,
        concurrency_id="report",
    ).then(on_evidence, [evidence], [jump], api_visibility="private")
    jump.input(guarded(on_jump), [jump, evidence, scan, level, width], [*sliders, *images], api_visibility="private")


def _evaluate_tab(work_dirs: WorkDirs, meteor: bool | None) -> None:
    """Prediction/reference/label CSVs → metrics, per-label table, F1 chart, downloads."""
    gr.Markdown(
        "Score generated reports against references as `ctvl eval reports --pred --ref [--labels] --out` does: "
        "clinical precision/recall/F1 over the 18 CT-RATE labels (macro, micro, support-weighted), "
        "BLEU/METEOR/ROUGE-L/CIDEr and duplicate-report checks."
    )
    with gr.Row():
        pred = gr.File(label="Predictions CSV (id + report text)", file_types=[".csv"], elem_id="ctvl-pred")
        ref = gr.File(label="References CSV (e.g. validation_reports.csv)", file_types=[".csv"], elem_id="ctvl-ref")
        labels = gr.File(label="Labels CSV (optional: id + 18 labels)", file_types=[".csv"], elem_id="ctvl-labels")
    run = gr.Button("Evaluate", variant="primary", elem_id="ctvl-evaluate")
    with gr.Row():
        with gr.Column():
            summary = gr.Dataframe(headers=SUMMARY_HEADERS, label="Metrics", interactive=False, elem_id="ctvl-metrics")
            downloads = gr.File(
                label="Results (zip of every output, metrics.json)",
                file_count="multiple",
                interactive=False,
                elem_id="ctvl-results",
            )
        with gr.Column():
            chart = gr.Image(
                label="Per-label F1", type="filepath", format="png", interactive=False, elem_id="ctvl-chart"
            )
            per_label = gr.Dataframe(
                headers=PER_LABEL_HEADERS, label="Per label", interactive=False, elem_id="ctvl-per-label"
            )

    def on_evaluate(pred_csv, ref_csv, labels_csv):
        uploaded = [Path(p) for p in (pred_csv, ref_csv, labels_csv) if p]
        with readable_errors(uploaded):
            result = run_evaluation(pred_csv, ref_csv, labels_csv, work_dirs.new("eval-"), meteor=meteor)
        return (
            pd.DataFrame(result.summary_rows, columns=SUMMARY_HEADERS),
            pd.DataFrame(result.per_label_rows, columns=PER_LABEL_HEADERS),
            str(result.chart),
            [str(result.archive), str(result.metrics_json)],
        )

    run.click(
        guarded(on_evaluate),
        [pred, ref, labels],
        [summary, per_label, chart, downloads],
        api_name="evaluate",
        concurrency_limit=1,
        concurrency_id="evaluate",
    )


def _synthesize_tab(synthesizer: Synthesizer, work_dirs: WorkDirs, display_size: int) -> None:
    """Prompt and settings → the generated volume in three planes, prompt vs classifier labels, NIfTI download."""
    gr.Markdown(
        "Generate a chest CT from text as `ctvl synthesize` does. Blank settings use the generator's defaults; "
        "a seed reproduces its volume. The table puts the findings the prompt states (read by the report "
        "labeler) beside those a classifier reads from the generated volume."
    )
    scan = gr.State(None, time_to_live=3600)  # ScanView of the last generated volume
    with gr.Row():
        with gr.Column(scale=1, min_width=300):
            prompt = gr.Textbox(
                label="Prompt (findings in words; empty: the unconditional model)",
                lines=3,
                placeholder="moderate right pleural effusion, cardiomegaly",
                elem_id="ctvl-synth-prompt",
            )
            with gr.Row():  # text boxes: a browser's number field cannot stay blank (= the generator's default)
                seed = gr.Number(0, label="Seed", elem_id="ctvl-synth-seed")
                steps = gr.Textbox(label="Steps", placeholder="default", max_lines=1, elem_id="ctvl-synth-steps")
            with gr.Row():
                guidance = gr.Textbox(
                    label="Guidance", placeholder="default", max_lines=1, elem_id="ctvl-synth-guidance"
                )
                depth = gr.Textbox(
                    label="Depth (slices, 1 + 8k)", placeholder="default", max_lines=1, elem_id="ctvl-synth-depth"
                )
            run = gr.Button("Synthesize", variant="primary", elem_id="ctvl-synthesize")
            preset, level, width = window_controls("ctvl-synth")
            summary = gr.Markdown("", elem_id="ctvl-synth-summary")
            download = gr.File(
                label="NIfTI (int16 HU) and its recipe (.json)",
                file_count="multiple",
                interactive=False,
                elem_id="ctvl-synth-download",
            )
        with gr.Column(scale=3):
            images, sliders = plane_images("ctvl-synth")
            table = gr.Dataframe(
                headers=LABEL_HEADERS,
                label="Labels (18 CT-RATE findings): prompt vs classifier",
                interactive=False,
                elem_id="ctvl-synth-labels",
            )

    def on_synthesize(prompt, seed, steps, guidance, depth):  # the API's parameter names
        request = synthesizer.parse(prompt, seed, steps, guidance, depth)
        output = synthesizer.run(request, work_dirs.new("synth-"))
        for note in output.warnings:
            gr.Warning(note)
        return (
            [str(output.nifti), str(output.recipe_json)],
            pd.DataFrame(output.rows, columns=LABEL_HEADERS),
            output.summary,
            output.view,
        )

    def on_show(view, lv, wd):
        mid = middle_slices(view)
        slices = [mid[p] for p in PLANES]
        return [
            *(slice_slider(view.n_slices(p), mid[p]) for p in PLANES),
            *render_all(view, slices, lv, wd, display_size),
        ]

    run.click(
        guarded(on_synthesize),
        [prompt, seed, steps, guidance, depth],
        [download, table, summary, scan],
        api_name="synthesize",
        concurrency_limit=1,
        concurrency_id="synthesize",
    ).success(guarded(on_show), [scan, level, width], [*sliders, *images], api_visibility="private")
    wire_planes(scan, preset, level, width, images, sliders, display_size)


def build_app(
    report_fn: ReportFn | None = None,
    *,
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES,
    max_voxels: int = DEFAULT_MAX_VOXELS,
    concurrency_limit: int = 2,
    queue_size: int = 64,
    meteor: bool | None = None,
    display_size: int = DISPLAY_SIZE,
    extra_tabs: Sequence[ExtraTab] = (),
    work_dirs: WorkDirs | None = None,
    synthesizer: Synthesizer | None = None,
) -> gr.Blocks:
    """Build the viewer (not launched; see :func:`ctvl.viewer.server.serve`).

    Args:
        report_fn: the report model's hook (:data:`~ctvl.viewer.report_hook.ReportFn`); None until
            a report model bundle is installed: Generate report then says so.
        max_upload_bytes: cap on one upload (all files together); the server also refuses any
            single file over it.
        max_voxels: refuse scans with more voxels than this (checked from the header).
        concurrency_limit: events of one kind that run at once (report and evaluate run one at a time).
        queue_size: requests that may wait in the queue before new ones are turned away.
        meteor: compute METEOR in the Evaluate tab (needs Java); None when Java is available.
        display_size: pixels along the scan's longest physical extent in the plane images.
        extra_tabs: (tab name, builder) pairs; each builder creates its components inside its tab
            (e.g. the Synthesize tab).
        work_dirs: where evaluation and synthesis outputs go (default: a new temporary folder).
        synthesizer: the text-to-CT generator behind a Synthesize tab
            (:class:`~ctvl.viewer.synthesize.Synthesizer`); None: no Synthesize tab.
    Returns:
        The ``gr.Blocks`` with its queue configured.
    """
    work_dirs = work_dirs or WorkDirs()
    with gr.Blocks(title=TITLE, analytics_enabled=False, delete_cache=(3600, 3600)) as demo:
        gr.Markdown(f"## {TITLE}\nEverything runs on this machine; uploads are not sent anywhere.")
        with gr.Tabs():
            with gr.Tab("Report", id="report"):
                _report_tab(report_fn, max_upload_bytes, max_voxels, display_size, concurrency_limit)
            with gr.Tab("Evaluate", id="evaluate"):
                _evaluate_tab(work_dirs, meteor)
            if synthesizer is not None:
                with gr.Tab("Synthesize", id="synthesize"):
                    _synthesize_tab(synthesizer, work_dirs, display_size)
            for name, builder in extra_tabs:
                with gr.Tab(name, id=name.lower()):
                    builder()
    demo.queue(max_size=queue_size, default_concurrency_limit=concurrency_limit)
    demo.ctvl_work_dirs = work_dirs  # type: ignore[attr-defined]  # cleaned up by serve()
    return demo


__all__ = ["build_app", "guarded", "render_all"]
