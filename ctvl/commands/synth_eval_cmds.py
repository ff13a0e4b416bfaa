"""``ctvl eval synthesis``: distances, label consistency and memorization of generated CT, with baselines."""

from __future__ import annotations

from pathlib import Path

import typer


def eval_synthesis_cmd(
    prompts: Path = typer.Option(..., "--prompts", help="CSV with a 'prompt' column (optional 'id')."),
    out: Path = typer.Option(..., "--out", help="Output folder (metrics.json, summary.md, grid.png)."),
    real: Path = typer.Option(..., "--real", help="CT-RATE-layout folder of real held-out scans with labels."),
    real_split: str = typer.Option("valid", "--real-split", help="Split of --real."),
    reference: Path | None = typer.Option(
        None,
        "--reference",
        help="A second real held-out folder the distances are measured against (default: the second half of --real).",
    ),
    reference_split: str = typer.Option("valid", "--reference-split", help="Split of --reference."),
    train: Path | None = typer.Option(None, "--train", help="The generator's training folder (memorization)."),
    train_split: str = typer.Option("train", "--train-split", help="Split of --train."),
    model: Path | None = typer.Option(None, "--model", help="Generator bundle (default: the shipped one)."),
    features: Path | None = typer.Option(None, "--features", help="Feature-network bundle (default: shipped)."),
    n_per_prompt: int = typer.Option(1, "--n-per-prompt", help="Volumes per prompt."),
    steps: int | None = typer.Option(None, "--steps", help="Flow steps (default: the bundle's)."),
    guidance: float | None = typer.Option(None, "--guidance", help="Guidance scale (default: the bundle's)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the first volume of every prompt."),
) -> None:
    """Generate a volume per prompt and measure 2.5D FID, 3D FD, label consistency and memorization."""
    from ctvl.errors import InputError
    from ctvl.eval.synthesis import evaluate_synthesis

    if steps is not None and steps < 1:
        raise InputError(f"--steps must be >= 1, got {steps}")
    if guidance is not None and not guidance >= 0:
        raise InputError(f"--guidance must be >= 0, got {guidance}")
    m = evaluate_synthesis(
        prompts,
        out,
        real=real,
        real_split=real_split,
        reference=reference,
        reference_split=reference_split,
        train=train,
        train_split=train_split,
        generator=model,
        features=features,
        n_per_prompt=n_per_prompt,
        steps=steps,
        guidance=guidance,
        seed=seed,
    )
    typer.echo((out / "summary.md").read_text(encoding="utf-8"))
    typer.echo(f"wrote {out / 'metrics.json'}, summary.md, grid.png, prompts_labels.csv ({m['seconds']:.0f} s)")


def register(app: typer.Typer, groups: dict[str, typer.Typer]) -> None:
    """``ctvl eval synthesis``."""
    groups["eval"].command("synthesis")(eval_synthesis_cmd)
