"""``ctvl train ... --dry-run``: print what a training config would put on each GPU (shared by the train commands)."""

from __future__ import annotations

import json
from pathlib import Path

import typer


def print_dry_run(task: object, config: Path, overrides: list[str], gpus: int, as_json: bool) -> None:
    """Estimate ``config`` for ``task`` on ``gpus`` GPUs and print it (text or JSON)."""
    from ctvl.train.dry_run import dry_run, format_estimate

    result = dry_run(task, str(config), overrides, gpus)  # type: ignore[arg-type]
    typer.echo(json.dumps(result, indent=2) if as_json else format_estimate(result, str(config)))
