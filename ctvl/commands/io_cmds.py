"""``ctvl info``: describe a CT file or folder (shape, spacing, orientation, HU range, warnings)."""

from __future__ import annotations

import json

import typer


def info_cmd(
    path: str = typer.Argument(
        ...,
        metavar="FILE_OR_DIR",
        help="NIfTI, NRRD (.nrrd/.nhdr) or MetaImage (.mha/.mhd) file, DICOM folder, .zip of one, or .dcm.",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
    series: str = typer.Option(None, "--series", help="Series to read from a multi-series folder (number or UID)."),
) -> None:
    """Show what a CT volume holds and what is doubtful about it."""
    from ctvl.io.info import info

    result = info(path, series=series)
    if as_json:
        typer.echo(json.dumps(result, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=result["path"], show_header=False, title_justify="left")
    table.add_column("field", style="bold")
    table.add_column("value")
    fmt = lambda vals, unit="": " x ".join(f"{v:g}" for v in vals) + unit  # noqa: E731
    table.add_row("format", result["format"])
    table.add_row("shape (i j k)", fmt(result["shape"]))
    table.add_row("spacing (mm)", fmt(result["spacing"]))
    table.add_row("orientation", result["orientation"])
    table.add_row("HU range", f"{result['hu_range'][0]:g} .. {result['hu_range'][1]:g}")
    table.add_row("modality", result["modality"])
    if result["manufacturer"]:
        table.add_row("manufacturer", result["manufacturer"])
    resc = result["rescale"]
    table.add_row("rescale", f"slope {resc['slope']:g}, intercept {resc['intercept']:g} ({resc['source']})")
    for i, warning in enumerate(result["warnings"] or ["none"]):
        table.add_row("warnings" if i == 0 else "", f"[yellow]{warning}[/yellow]" if result["warnings"] else "none")
    Console().print(table)


def register(app: typer.Typer, groups: dict[str, typer.Typer]) -> None:
    """Add ``ctvl info`` to the root app."""
    app.command("info")(info_cmd)
