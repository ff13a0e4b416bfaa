"""``ctvl demo``: the README quick start's main job on the embedded default (a phantom chest CT)."""

from __future__ import annotations

import json
from pathlib import Path

import typer


def demo(
    out: Path = typer.Option(Path("demo"), "--out", help="Folder for the demo scan."),
    seed: int = typer.Option(0, "--seed", help="Phantom patient seed."),
) -> None:
    """Render a phantom chest CT, write it as NIfTI and print `ctvl info` of it and its reference report."""
    from ctvl.data.phantom import render_case
    from ctvl.io import info, write_nifti

    case = render_case(seed)
    path = write_nifti(case.volume, Path(out) / f"phantom_{seed}.nii.gz", dtype="int16")
    typer.echo(f"wrote {path}")
    typer.echo(json.dumps(info(path), indent=2))
    positives = [name for name, v in case.labels.items() if v]
    typer.echo(f"ground-truth findings: {', '.join(positives) if positives else 'none'}")
    typer.echo(f"reference impression: {case.impression}")


def register(app: typer.Typer, groups: dict[str, typer.Typer]) -> None:
    app.command("demo")(demo)
