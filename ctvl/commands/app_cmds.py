"""``ctvl app``: start the Gradio viewer (Report, Evaluate and Synthesize tabs) on this machine."""

from __future__ import annotations

from pathlib import Path

import typer


def app_cmd(
    host: str = typer.Option(
        "127.0.0.1", "--host", help="Interface to bind; 0.0.0.0 exposes the viewer to the network."
    ),
    port: int = typer.Option(7860, "--port", min=1, max=65535, help="TCP port."),
    max_upload_mb: int = typer.Option(1024, "--max-upload-mb", min=1, help="Refuse uploads larger than this (MiB)."),
    concurrency: int = typer.Option(2, "--concurrency", min=1, help="Requests of one kind processed at once."),
    model: Path | None = typer.Option(None, "--model", help="Report model bundle (default: the installed one)."),
    no_report: bool = typer.Option(
        False, "--no-report", help="Start without a report model (viewing and Evaluate only)."
    ),
    generator: Path | None = typer.Option(
        None, "--generator", help="Text-to-CT generator bundle for the Synthesize tab (default: the installed one)."
    ),
    no_synthesis: bool = typer.Option(False, "--no-synthesis", help="Start without the Synthesize tab."),
) -> None:
    """Start the viewer: upload a CT, browse axial/coronal/sagittal planes, generate and evaluate reports,
    synthesize CT from text."""
    from ctvl.viewer.report_model import bundle_report_fn, default_report_fn
    from ctvl.viewer.server import serve
    from ctvl.viewer.synthesize import Synthesizer, default_classifier

    if no_report:
        report_fn = None
    elif model is not None:
        report_fn = bundle_report_fn(model)  # an explicit bundle that cannot be loaded is an error
    else:
        report_fn = default_report_fn()  # without an installed bundle the Report tab says so
    synthesizer = None
    if not no_synthesis:
        synthesizer = Synthesizer(bundle=generator, classify=default_classifier())  # the default loads on first use
        if generator is not None:
            synthesizer.generator()  # an explicit bundle that cannot be loaded is an error now
    serve(
        report_fn,
        host=host,
        port=port,
        max_upload_bytes=max_upload_mb << 20,
        concurrency_limit=concurrency,
        synthesizer=synthesizer,
    )


def register(app: typer.Typer, groups: dict[str, typer.Typer]) -> None:
    """Add ``ctvl app`` to the root app."""
    app.command("app")(app_cmd)
