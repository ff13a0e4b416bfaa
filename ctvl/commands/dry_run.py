"""``ctvl train ... --dry-run``: print what a training config would put on each GPU (shared by the train commands)."""

from __future__ import annotations

import json
from pathlib import Path

import typer

# The options every ``ctvl train ...`` command shares (one definition, the same help everywhere).
RESUME_OPTION = typer.Option(False, "--resume", help="Continue the run from its newest checkpoint.")
OVERRIDES_ARGUMENT = typer.Argument(None, metavar="[KEY=VALUE]...", help="Config overrides.")
DRY_RUN_OPTION = typer.Option(
    False,
    "--dry-run",
    help="Build the model on the meta device (no data, no weights) and "
    "print parameters and an estimate of memory per GPU; train nothing.",
)
GPUS_OPTION = typer.Option(1, "--gpus", help="With --dry-run: number of GPUs (ranks) to estimate for.")
JSON_OPTION = typer.Option(False, "--json", help="With --dry-run: print JSON.")


def print_dry_run(task: object, config: Path, overrides: list[str], gpus: int, as_json: bool) -> None:
    """Estimate ``config`` for ``task`` on ``gpus`` GPUs and print it (text or JSON)."""
    from ctvl.train.dry_run import dry_run, format_estimate

    result = dry_run(task, str(config), overrides, gpus)  # type: ignore[arg-type]
    typer.echo(json.dumps(result, indent=2) if as_json else format_estimate(result, str(config)))
