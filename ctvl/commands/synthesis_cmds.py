"""Text-to-CT commands: ``ctvl synthesize``, ``ctvl train synthesis``, ``ctvl bench synthesis``."""

from __future__ import annotations

import json
import os
from pathlib import Path

import typer

from ctvl.commands.dry_run import DRY_RUN_OPTION, GPUS_OPTION, JSON_OPTION, OVERRIDES_ARGUMENT, RESUME_OPTION

_MODEL_HELP = "Generator bundle or training run folder (default: the phantom-cpu generator shipped with ctvl)."


def sentence_labeler():
    """The report labeler as the ``sentence_labels`` / ``labeler`` callables the synthesis package takes."""
    from ctvl.data.labels import CTRATE_LABELS
    from ctvl.eval.labeler import ReportLabeler

    labeler = ReportLabeler()

    def vector(text: str) -> list[int]:
        labels = labeler.label(text)
        return [int(labels[name]) for name in CTRATE_LABELS]

    return labeler.label, vector


def synthesize_cmd(
    prompt: str = typer.Argument(..., metavar="TEXT", help='Findings, e.g. "moderate right pleural effusion".'),
    out: Path = typer.Option(..., "-o", "--out", help="Output NIfTI (.nii.gz); with --n K: OUT_0 ... OUT_{K-1}."),
    seed: int = typer.Option(0, "--seed", help="Seed of the first volume (volume k uses seed + k)."),
    steps: int | None = typer.Option(None, "--steps", help="Flow steps (default: the bundle's, 25)."),
    guidance: float | None = typer.Option(None, "--guidance", help="Classifier-free guidance (default 3)."),
    depth: int | None = typer.Option(None, "--depth", help="Slices, 1 + 8k (default: the bundle's, 33)."),
    n: int = typer.Option(1, "--n", help="Number of volumes."),
    model: Path | None = typer.Option(None, "--model", help=_MODEL_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print the recipe of each volume as JSON."),
) -> None:
    """Generate CT volumes from text (NIfTI in HU on the bundle's spacing, recipe in a sidecar .json)."""
    import torch

    from ctvl.errors import InputError
    from ctvl.synthesis import load_generator, synthesize, write_result
    from ctvl.synthesis.sample import output_paths

    if steps is not None and steps < 1:
        raise InputError(f"--steps must be >= 1, got {steps}")
    if guidance is not None and not guidance >= 0:
        raise InputError(f"--guidance must be >= 0, got {guidance}")
    output_paths(out, max(1, n))  # refuse a bad -o before loading anything
    torch.set_num_threads(max(1, min(torch.get_num_threads(), os.cpu_count() or 1)))
    label_text, _ = sentence_labeler()
    gen = load_generator(model)
    result = synthesize(gen, prompt, seed=seed, steps=steps, guidance=guidance, depth=depth, n=n, labeler=label_text)
    paths = write_result(result, out)
    for warning in result.warnings:
        typer.echo(f"warning: {warning}", err=True)
    if as_json:
        typer.echo(json.dumps([result.recipe(k) | {"path": str(p)} for k, p in enumerate(paths)], indent=2))
        return
    v = result.volumes[0]
    named = [k for k, x in (result.prompt_labels or {}).items() if x]
    typer.echo(
        f"wrote {len(paths)} volume(s) of {v.shape[0]}x{v.shape[1]}x{v.shape[2]} at "
        f"{' x '.join(f'{s:g}' for s in v.spacing)} mm in {result.seconds:.1f} s: " + ", ".join(str(p) for p in paths)
    )
    typer.echo("findings asked for: " + (", ".join(named) if named else "none (a normal chest)"))


def train_synthesis_cmd(
    config: Path = typer.Option(..., "--config", help="Training YAML, e.g. configs/phantom-cpu-synthesis.yaml."),
    resume: bool = RESUME_OPTION,
    overrides: list[str] | None = OVERRIDES_ARGUMENT,
    dry_run: bool = DRY_RUN_OPTION,
    gpus: int = GPUS_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Train the text-to-CT generator (latent rectified flow) with the shared training loop."""
    from ctvl.synthesis.task import SynthesisTask
    from ctvl.train import run_training

    _, vector = sentence_labeler()
    if dry_run:
        from ctvl.commands.dry_run import print_dry_run

        print_dry_run(SynthesisTask(sentence_labels=vector), config, list(overrides or []), gpus, as_json)
        return
    result = run_training(SynthesisTask(sentence_labels=vector), config, list(overrides or []), resume=resume)
    if int(os.environ.get("RANK", "0")) == 0:
        loss = "n/a" if result.loss is None else f"{result.loss:.4g}"
        typer.echo(
            f"trained {result.run_dir} to step {result.step} in {result.seconds:.0f} s (loss {loss}); "
            f"checkpoint {result.checkpoint}"
        )


def bench_synthesis_cmd(
    model: Path | None = typer.Option(None, "--model", help=_MODEL_HELP),
    steps: int = typer.Option(25, "--steps", min=1, help="Flow steps per volume."),
    repeats: int = typer.Option(3, "--repeats", min=1, help="Timed volumes (after one warm-up)."),
    threads: int = typer.Option(2, "--threads", min=1, help="torch threads."),
) -> None:
    """Time one CPU-preset volume (warm model) against the tokenizer decode alone; prints JSON."""
    from ctvl.bench.synthesis import run_synthesis_bench

    typer.echo(json.dumps(run_synthesis_bench(model=model, steps=steps, repeats=repeats, threads=threads), indent=2))


def register(app: typer.Typer, groups: dict[str, typer.Typer]) -> None:
    """``ctvl synthesize`` on the root app, ``ctvl train synthesis`` and ``ctvl bench synthesis`` in groups."""
    app.command("synthesize")(synthesize_cmd)
    groups["train"].command("synthesis")(train_synthesis_cmd)
    groups["bench"].command("synthesis")(bench_synthesis_cmd)
