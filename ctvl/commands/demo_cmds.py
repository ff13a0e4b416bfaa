"""``ctvl demo``: the README quick start's main job on the embedded default (a phantom chest CT).

Renders a phantom patient on the grid of the shipped report model's training scans, writes it as
NIfTI, prints ``ctvl info`` and ``ctvl report`` of it beside the phantom's ground truth, and starts
the viewer with the default bundles (``--no-app`` stops after the report).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import typer

# the report bundle is trained on 64 x 64 x 33 phantoms at 6 x 6 x 11.25 mm (pipelines/train_report.py)
DEMO_SHAPE, DEMO_SPACING = (64, 64, 33), None


def demo(
    out: Path = typer.Option(Path("demo"), "--out", help="Folder for the demo scan."),
    seed: int = typer.Option(0, "--seed", help="Phantom patient seed."),
    app: bool = typer.Option(True, "--app/--no-app", help="Start the viewer after the report (Ctrl-C stops it)."),
    host: str = typer.Option("127.0.0.1", "--host", help="Viewer interface."),
    port: int = typer.Option(7860, "--port", min=1, max=65535, help="Viewer port."),
) -> None:
    """Phantom chest CT -> NIfTI -> `ctvl info` -> `ctvl report` (with the ground truth) -> the viewer."""
    from ctvl.data.phantom import render_case
    from ctvl.eval.labeler import ReportLabeler
    from ctvl.io import info, write_nifti
    from ctvl.report.generate import generate_report

    case = render_case(seed, shape=DEMO_SHAPE, spacing=DEMO_SPACING)
    path = write_nifti(case.volume, Path(out) / f"phantom_{seed}.nii.gz", dtype="int16")
    typer.echo(f"wrote {path}\n\n$ ctvl info {path} --json")
    typer.echo(json.dumps(info(path), indent=2))
    typer.echo(f"\n$ ctvl report {path}")
    began = time.perf_counter()
    result = generate_report(path, labeler=ReportLabeler())
    typer.echo(result["report"])
    positives = [name for name, v in result["labels"].items() if v]
    typer.echo("\nLabels read from the report: " + (", ".join(positives) if positives else "none of the 18"))
    for warning in result["warnings"]:
        typer.echo(f"warning: {warning}")
    typer.echo(f"(report written in {time.perf_counter() - began:.1f} s)")
    truth = [name for name, v in case.labels.items() if v]
    typer.echo(f"\nGround truth of this phantom: {', '.join(truth) if truth else 'no abnormality'}")
    typer.echo(f"Reference impression: {case.impression}")
    if app:
        from ctvl.viewer.report_model import default_report_fn
        from ctvl.viewer.server import serve

        typer.echo(
            f"\nStarting the viewer: open http://{host}:{port}, upload {path}, press Generate report (Ctrl-C stops it)."
        )
        serve(default_report_fn(), host=host, port=port)


def register(app: typer.Typer, groups: dict[str, typer.Typer]) -> None:
    app.command("demo")(demo)
