"""``ctvl bench quantizers``: train a tiny autoencoder with every quantizer and a 1D tokenizer with
nested dropout / tail drop on phantom CT; print a table or JSON, write JSON + PNG charts."""

from __future__ import annotations

import json
from pathlib import Path

import typer


def quantizers(
    steps: int = typer.Option(300, "--steps", min=1, help="Autoencoder training steps per method and setting."),
    oned_steps: int | None = typer.Option(
        None, "--oned-steps", min=1, help="1D tokenizer training steps per drop mode (default: 5 x --steps)."
    ),
    methods: str = typer.Option(
        "continuous,fsq,lfq,group_lfq,vq,msrvq", "--methods", help="Comma-separated subset of the methods."
    ),
    train_cases: int = typer.Option(32, "--train-cases", min=1, help="Phantom patients for the quantizers."),
    oned_train_cases: int = typer.Option(
        256, "--oned-train-cases", min=1, help="Phantom patients for the 1D tokenizers (8 more are held out)."
    ),
    json_out: bool = typer.Option(False, "--json", help="Print the result rows as JSON instead of a table."),
    out: Path = typer.Option(
        Path("runs/bench/quantizers"), "--out", help="Folder for quantizers.json, quantizers.png, oned_tokens.png."
    ),
    seed: int = typer.Option(0, "--seed", help="Seed of the phantom patients and of the training."),
) -> None:
    """Compare quantizers at ~10 bits per latent position, and 1D-tokenizer error vs kept tokens.

    FSQ, LFQ, grouped LFQ, cosine VQ and multi-scale residual VQ (+ a continuous baseline) train the
    same tiny autoencoder on phantom slices (2D) and slabs (3D): PSNR, codebook usage, perplexity,
    bits per voxel, encode/decode time.
    """
    from ctvl.bench.bench_data import METHODS, BenchConfig
    from ctvl.bench.quantizers import run_benchmark
    from ctvl.errors import ConfigError

    chosen = tuple(m.strip() for m in methods.split(",") if m.strip())
    unknown = [m for m in chosen if m not in METHODS]
    if unknown or not chosen:
        raise ConfigError(f"--methods: unknown or empty {unknown or methods!r}; choose from {', '.join(METHODS)}")
    cfg = BenchConfig(
        steps=steps,
        oned_steps=oned_steps or 5 * steps,
        methods=chosen,
        train_cases=train_cases,
        oned_train_cases=oned_train_cases,
        seed=seed,
    )
    rows = run_benchmark(cfg, out_dir=out, progress=True)
    if json_out:
        typer.echo(json.dumps(rows, indent=2))
        return
    _print_tables(rows, out)


def _fmt(value: object, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _print_tables(rows: list[dict], out: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    if not console.is_terminal:  # piped: do not squeeze the tables into 80 columns
        console = Console(width=120)
    table = Table(title="Quantizers: tiny conv autoencoder on phantom CT (held-out patients)")
    for col in ("setting", "method", "PSNR dB", "usage", "perplexity", "bits/voxel", "enc ms", "dec ms"):
        table.add_column(col, justify="left" if col in ("setting", "method") else "right")
    for r in (r for r in rows if r["kind"] == "quantizer"):
        table.add_row(
            r["setting"],
            r["method"],
            _fmt(r["psnr"], 2),
            _fmt(r["codebook_usage"]),
            _fmt(r["perplexity"], 1),
            _fmt(r["bits_per_voxel"]),
            _fmt(r["encode_ms"], 2),
            _fmt(r["decode_ms"], 2),
        )
    console.print(table)
    curve = Table(title="1D tokenizer: held-out error vs kept tokens")
    for col in ("method", "kept tokens", "MSE", "PSNR dB", "bits/voxel"):
        curve.add_column(col, justify="left" if col == "method" else "right")
    for r in (r for r in rows if r["kind"] == "oned"):
        curve.add_row(
            r["method"], str(r["kept_tokens"]), _fmt(r["mse"], 4), _fmt(r["psnr"], 2), _fmt(r["bits_per_voxel"])
        )
    console.print(curve)
    console.print(f"wrote {out / 'quantizers.json'}, {out / 'quantizers.png'}, {out / 'oned_tokens.png'}")


def register(app: typer.Typer, groups: dict[str, typer.Typer]) -> None:
    """Add ``ctvl bench quantizers``."""
    groups["bench"].command("quantizers")(quantizers)
