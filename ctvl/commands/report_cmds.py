"""Report commands: ``ctvl report SCAN``, ``ctvl train report``, ``ctvl eval run``, ``ctvl bench report``."""

from __future__ import annotations

import json
import os
from pathlib import Path

import typer

from ctvl.commands.dry_run import DRY_RUN_OPTION, GPUS_OPTION, JSON_OPTION, OVERRIDES_ARGUMENT, RESUME_OPTION

_MODEL_HELP = "Report bundle or training run folder (default: the phantom-cpu report bundle shipped with ctvl)."


def report_cmd(
    scan: str = typer.Argument(
        ...,
        metavar="SCAN",
        help="NIfTI, NRRD (.nrrd/.nhdr) or MetaImage (.mha/.mhd) file, DICOM folder, .zip of one, or .dcm.",
    ),
    model: Path | None = typer.Option(None, "--model", help=_MODEL_HELP),
    as_json: bool = typer.Option(False, "--json", help='Print {"report", "labels", "warnings"} as JSON.'),
    beams: int | None = typer.Option(None, "--beams", help="Beam search width (1 = greedy; default: the model's)."),
    max_new_tokens: int | None = typer.Option(None, "--max-new-tokens", help="Report length limit in tokens."),
    series: str | None = typer.Option(None, "--series", help="Series of a multi-series DICOM folder."),
) -> None:
    """Write a radiology report for a chest CT with the model's stored preprocessing."""
    from ctvl.eval.labeler import ReportLabeler
    from ctvl.report.generate import generate_report

    result = generate_report(
        scan, model, labeler=ReportLabeler(), num_beams=beams, max_new_tokens=max_new_tokens, series=series
    )
    if as_json:
        typer.echo(json.dumps(result, indent=2))
        return
    typer.echo(result["report"])
    positives = [name for name, v in result["labels"].items() if v]
    typer.echo("\nLabels read from the report: " + (", ".join(positives) if positives else "none of the 18"))
    for warning in result["warnings"]:
        typer.echo(f"warning: {warning}", err=True)


def bench_report_cmd(
    scan: Path | None = typer.Option(
        None, "--scan", help="Scan to time (default: a 512 x 512 x 241 phantom NIfTI, rendered once)."
    ),
    model: Path | None = typer.Option(None, "--model", help=_MODEL_HELP),
    threads: int = typer.Option(2, "--threads", min=1, help="OMP/MKL threads of every timed process."),
    repeats: int = typer.Option(3, "--repeats", min=1, help="Runs per measurement (medians reported)."),
) -> None:
    """Cold ``ctvl report`` vs a bare read of the file, and the warm (model loaded) report; prints JSON."""
    from ctvl.bench.report import DEFAULT_SCAN, run_benchmark

    typer.echo(json.dumps(run_benchmark(scan or DEFAULT_SCAN, model, threads, repeats), indent=2))


def train_report_cmd(
    config: Path = typer.Option(..., "--config", help="Training YAML, e.g. configs/phantom-cpu-report.yaml."),
    resume: bool = RESUME_OPTION,
    overrides: list[str] | None = OVERRIDES_ARGUMENT,
    dry_run: bool = DRY_RUN_OPTION,
    gpus: int = GPUS_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Train the report model (visual tokens → projector → causal LM) with the shared training loop."""
    from ctvl.report.task import ReportTask
    from ctvl.train import run_training

    if dry_run:
        from ctvl.commands.dry_run import print_dry_run

        print_dry_run(ReportTask(), config, list(overrides or []), gpus, as_json)
        return
    result = run_training(ReportTask(), config, list(overrides or []), resume=resume)
    if int(os.environ.get("RANK", "0")) == 0:
        loss = "n/a" if result.loss is None else f"{result.loss:.4g}"
        typer.echo(
            f"trained {result.run_dir} to step {result.step} in {result.seconds:.0f} s (loss {loss}); "
            f"checkpoint {result.checkpoint}"
        )


def eval_run_cmd(
    data: Path = typer.Option(..., "--data", help="CT-RATE-layout dataset folder (volumes, reports CSV, labels CSV)."),
    out: Path = typer.Option(..., "--out", help="Output folder; a rerun skips scans already done."),
    split: str = typer.Option("valid", "--split", help="Split to evaluate."),
    model: Path | None = typer.Option(None, "--model", help=_MODEL_HELP),
    limit: int | None = typer.Option(None, "--limit", help="Only the first N scans."),
    batch_size: int = typer.Option(8, "--batch-size", help="Scans generated together."),
    beams: int | None = typer.Option(None, "--beams", help="Beam search width (1 = greedy)."),
    max_new_tokens: int | None = typer.Option(None, "--max-new-tokens", help="Report length limit in tokens."),
    meteor: bool = typer.Option(True, "--meteor/--no-meteor", help="Compute METEOR (needs Java; skipped without it)."),
) -> None:
    """Generate a report for every scan of a split, then evaluate (clinical F1, NLG, duplicates)."""
    from ctvl.eval.run import run_eval

    result = run_eval(
        data,
        out,
        split=split,
        model=model,
        limit=limit,
        batch_size=batch_size,
        num_beams=beams,
        max_new_tokens=max_new_tokens,
        meteor=None if meteor else False,
    )
    if int(os.environ.get("RANK", "0")) != 0:
        return
    head = (
        f"{result.generated} reports generated, {result.skipped} already done, {result.errors} errors "
        f"(see {out / 'errors.csv'})"
        if result.errors
        else f"{result.generated} reports generated, {result.skipped} already done, no errors"
    )
    typer.echo(head)
    m = result.metrics
    if m is None:
        typer.echo("no report could be generated; nothing to evaluate")
        return
    c, n, d = m["clinical"], m["nlg"], m["degenerate"]
    typer.echo(
        f"{result.evaluated} reports: macro-F1 {c['macro_f1']:.4f}, micro-F1 {c['micro_f1']:.4f}, "
        f"weighted-F1 {c['weighted_f1']:.4f}; BLEU-4 {n['bleu_4']:.4f}, ROUGE-L {n['rouge_l']:.4f}; "
        f"duplicate fraction {d['duplicate_fraction']:.3f}; mean length {d['mean_length']:.0f} tokens "
        f"(reference {d['ref_mean_length']:.0f})"
    )
    typer.echo(f"wrote {out / 'metrics.json'}, predictions.csv, summary.md, per_label_f1.png")


def register(app: typer.Typer, groups: dict[str, typer.Typer]) -> None:
    """``ctvl report`` on the root app; ``ctvl train report``, ``ctvl eval run``, ``ctvl bench report`` in groups."""
    app.command("report")(report_cmd)
    groups["bench"].command("report")(bench_report_cmd)
    groups["train"].command("report")(train_report_cmd)
    groups["eval"].command("run")(eval_run_cmd)
