"""``ctvl label`` (reports → 18 CT-RATE labels) and ``ctvl eval reports`` (clinical F1, NLG, duplicates)."""

from __future__ import annotations

import time
from pathlib import Path

import typer


def label_cmd(
    reports: Path = typer.Argument(..., metavar="REPORTS.csv", help="CSV with an id column and report text."),
    out: Path = typer.Option(..., "-o", "--out", help="Output CSV: the id column plus the 18 CT-RATE labels (0/1)."),
    text_column: str = typer.Option(
        None,
        "--text-column",
        help="Text column(s), comma-separated. Default: report_text, or Findings_EN + Impressions_EN.",
    ),
    id_column: str = typer.Option(None, "--id-column", help="Id column. Default: VolumeName, or AccessionNo, or id."),
) -> None:
    """Label free-text chest CT reports with the 18 CT-RATE abnormality labels (offline, rule-based)."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from ctvl.eval.labeler import ReportLabeler, read_reports, write_labels

    table = read_reports(reports, text_column, id_column)
    labeler = ReportLabeler()
    rows = []
    start = time.perf_counter()
    console = Console(stderr=True)
    columns = (TextColumn("labelling"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=True, disable=len(table.texts) < 2000) as bar:
        task = bar.add_task("label", total=len(table.texts))
        for text in table.texts:
            rows.append(list(labeler.label(text).values()))
            bar.advance(task)
    seconds = time.perf_counter() - start
    import numpy as np

    labels = np.asarray(rows, dtype=np.int64).reshape(-1, len(labeler.labels))
    path = write_labels(out, table.ids, labels, id_column=table.id_column)
    rate = len(rows) / seconds if seconds > 0 else float("inf")
    typer.echo(
        f"wrote {path}: {len(rows)} reports (id {table.id_column}, text {'+'.join(table.text_columns)}), "
        f"{int(labels.sum())} positive labels, {rate:.0f} reports/s"
    )


def eval_reports_cmd(
    pred: Path = typer.Option(..., "--pred", help="Generated reports CSV (id + text column)."),
    ref: Path = typer.Option(..., "--ref", help="Reference reports CSV (e.g. CT-RATE validation_reports.csv)."),
    out: Path = typer.Option(..., "--out", help="Output folder (metrics.json, per_label.csv, PNG, summary.md)."),
    labels: Path = typer.Option(
        None, "--labels", help="Ground-truth labels CSV (id + 18 labels). Default: label the reference reports."
    ),
    reference: str = typer.Option(
        "findings",
        "--reference",
        help="NLG reference text: 'findings' (Findings_EN) or 'full' (findings + impression).",
    ),
    pred_text_column: str = typer.Option(None, "--pred-text-column", help="Text column(s) of --pred."),
    ref_text_column: str = typer.Option(None, "--ref-text-column", help="Reference text column(s) of --ref."),
    id_column: str = typer.Option(None, "--id-column", help="Id column in every file. Default: auto-detect."),
    meteor: bool = typer.Option(True, "--meteor/--no-meteor", help="Compute METEOR (needs Java; skipped without it)."),
) -> None:
    """Evaluate generated reports: clinical P/R/F1 per label, BLEU/METEOR/ROUGE-L/CIDEr, duplicates."""
    from rich.console import Console

    from ctvl.eval.reports import evaluate_report_files

    console = Console(stderr=True)
    with console.status("evaluating") as status:
        metrics = evaluate_report_files(
            pred,
            ref,
            out,
            labels_csv=labels,
            pred_text_column=pred_text_column,
            ref_text_column=ref_text_column,
            id_column=id_column,
            reference=reference,
            meteor=None if meteor else False,
            progress=lambda msg: status.update(msg),
        )
    c, n, d = metrics["clinical"], metrics["nlg"], metrics["degenerate"]
    meteor_txt = "skipped" if n["meteor"] is None else f"{n['meteor']:.4f}"
    typer.echo(
        f"{metrics['n_reports']} reports: macro-F1 {c['macro_f1']:.4f}, micro-F1 {c['micro_f1']:.4f}, "
        f"weighted-F1 {c['weighted_f1']:.4f}; BLEU-4 {n['bleu_4']:.4f}, METEOR {meteor_txt}, "
        f"ROUGE-L {n['rouge_l']:.4f}, CIDEr {n['cider']:.4f}; duplicate fraction {d['duplicate_fraction']:.3f}"
    )
    typer.echo(f"wrote {Path(out) / 'metrics.json'}, per_label.csv, per_label_f1.png, pred_labels.csv, summary.md")


def register(app: typer.Typer, groups: dict[str, typer.Typer]) -> None:
    """Add ``ctvl label`` to the root app and ``ctvl eval reports`` to the eval group."""
    app.command("label")(label_cmd)
    groups["eval"].command("reports")(eval_reports_cmd)
