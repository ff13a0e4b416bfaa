"""``ctvl data phantom``: generate the embedded default dataset (procedural chest CT phantom)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import typer


def phantom(
    n: int = typer.Option(..., "--n", help="Number of scans (one patient each)."),
    out: Path = typer.Option(..., "--out", help="Dataset folder (CT-RATE layout); an existing split is replaced."),
    seed: int = typer.Option(0, "--seed", help="Dataset seed (patients derive from seed, split and index)."),
    split: str = typer.Option("train", "--split", help="train or valid."),
    shape: tuple[int, int, int] = typer.Option((64, 64, 33), "--shape", help="Voxels I J K (K = axial slices)."),
    spacing: tuple[float, float, float] | None = typer.Option(
        None, "--spacing", help="Voxel size X Y Z in mm (default: 384 mm in-plane and 360 mm in z field of view)."
    ),
    workers: int = typer.Option(0, "--workers", help="Processes (0 = one per CPU core, at most 8)."),
) -> None:
    """Write N phantom chest CT scans with reports, labels, metadata and a data card."""
    from ctvl.data.labels import CTRATE_LABELS
    from ctvl.data.phantom import write_dataset

    if spacing is not None and all(v is None for v in spacing):
        spacing = None
    started = time.time()
    root = write_dataset(out, n, seed, split=split, shape=shape, spacing=spacing, workers=workers, progress=True)
    manifest = json.loads((root / f"phantom_{split}.json").read_text())
    prevalence = manifest["prevalence"]
    top = sorted(CTRATE_LABELS, key=lambda name: -prevalence[name])[:4]
    typer.echo(
        f"wrote {n} {split} scans {tuple(manifest['shape'])} at {tuple(manifest['spacing'])} mm to {root} "
        f"in {time.time() - started:.1f} s"
    )
    typer.echo("most frequent: " + ", ".join(f"{name} {100 * prevalence[name]:.0f} %" for name in top))
    typer.echo(f"data card: {root / 'DATA_CARD.md'}")


def register(app: typer.Typer, groups: dict[str, typer.Typer]) -> None:
    groups["data"].command("phantom")(phantom)
