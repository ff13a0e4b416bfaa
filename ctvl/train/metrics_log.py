"""What a person sees of a run: a JSONL metrics log and a rich progress bar (rank 0 only).

``metrics.jsonl`` has one JSON object per logged step::

    {"step": 20, "loss": 0.41, "lr": 0.0003, "seconds": 12.5, "step_seconds": 0.61, "metrics": {...}}

``step`` counts completed optimiser steps; ``loss`` and ``metrics`` are means over the steps since the
previous record, over micro-batches and over ranks; ``seconds`` is training time since the run began
(carried over a resume); ``step_seconds`` is the mean wall time per step of the window.
When a run resumes from step ``s``, records after ``s`` (written before the crash, then lost with
the un-checkpointed steps) are dropped so that every step appears once.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from ctvl.atomic import write_text


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """All records of a ``metrics.jsonl`` (a torn last line from a crash is skipped)."""
    records = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        try:
            records.append(json.loads(line))
        except ValueError:
            continue
    return records


class MetricsLog:
    """Append-only JSONL writer (a no-op on ranks other than 0).

    Args:
        path: the ``metrics.jsonl`` file.
        enabled: write only when True (rank 0).
        resume_step: None for a fresh run (the file is truncated); else keep records with
            ``step <= resume_step`` and append after them.
    """

    def __init__(self, *, path: str | Path, enabled: bool, resume_step: int | None = None) -> None:
        self.path = Path(path)
        self._fh = None
        if not enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        kept: list[dict[str, Any]] = []
        if resume_step is not None and self.path.exists():
            kept = [r for r in read_metrics(self.path) if int(r.get("step", 0)) <= resume_step]
        write_text(self.path, "".join(json.dumps(r) + "\n" for r in kept))  # atomic: a crash keeps the old log
        self._fh = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()

    def write(self, record: dict[str, Any]) -> None:
        """Append one record and flush (so a crash loses at most the line being written)."""
        if self._fh is None:
            return
        self._fh.write(json.dumps(record, default=float) + "\n")
        self._fh.flush()

    def close(self) -> None:
        """Close the file."""
        if self._fh is not None:
            self._fh.close()
            self._fh = None


class ProgressBar:
    """A rich progress bar over optimiser steps on stderr (disabled on ranks other than 0).

    Args:
        total: the run's total steps.
        start: steps already done (a resumed run starts the bar there).
        description: text before the bar (the run name).
        enabled: show it only when True.
    """

    def __init__(self, *, total: int, start: int, description: str, enabled: bool) -> None:
        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.fields[info]}"),
            console=Console(stderr=True),
            disable=not enabled,
        )
        self._task = self._progress.add_task(description, total=total, completed=start, info="")

    def __enter__(self) -> ProgressBar:
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()

    def update(self, step: int, info: str | None = None) -> None:
        """Move the bar to ``step`` completed steps, optionally with new status text (loss, lr)."""
        if info is None:
            self._progress.update(self._task, completed=step)
        else:
            self._progress.update(self._task, completed=step, info=info)

    def note(self, message: str) -> None:
        """Print a line above the bar (e.g. "resumed from step 100")."""
        if not self._progress.disable:
            self._progress.console.print(message)
