"""Batch evaluation of generated reports: clinical F1, NLG metrics, degenerate-output checks.

:func:`evaluate_reports` takes aligned predicted reports, reference reports and (optionally) ground
truth labels and writes, into an output folder:

* ``metrics.json`` — ``clinical`` (macro/micro/weighted P/R/F1 and ``per_label``), ``nlg``
  (``bleu_1`` … ``bleu_4``, ``meteor``, ``rouge_l``, ``cider``), ``degenerate``
  (``duplicate_fraction``, ``distinct_2``, lengths) and ``inputs`` (what was compared with what);
* ``per_label.csv`` — one row per CT-RATE label;
* ``per_label_f1.png`` — bar chart of per-label F1 with the macro average;
* ``pred_labels.csv`` — the labels the labeler read from the generated reports;
* ``summary.md`` — the headline numbers and the per-label table for people.

:func:`evaluate_report_files` is the CSV front end used by ``ctvl eval reports``; ``ctvl eval run``
calls :func:`evaluate_reports` directly with the reports it generated.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from ctvl.atomic import atomic_file, write_json, write_text
from ctvl.data.labels import CTRATE_LABELS
from ctvl.errors import InputError
from ctvl.eval.clinical import clinical_metrics
from ctvl.eval.degenerate import degenerate_metrics
from ctvl.eval.labeler import ReportLabeler
from ctvl.eval.labeler.csvio import read_labels, read_reports, write_labels
from ctvl.eval.nlg import nlg_metrics

LABELER_NAME = "ctvl rule-based report labeler (ctvl.eval.labeler)"


def align(ids: Sequence[str], other_ids: Sequence[str], what: str, other: str) -> list[int]:
    """Row indices of ``ids`` in ``other_ids``; every id must be there.

    Args:
        ids: ids to look up (e.g. predictions).
        other_ids: ids of the other table (e.g. references).
        what: name of the first table for the error message.
        other: name of the other table.

    Returns:
        ``idx`` with ``other_ids[idx[k]] == ids[k]``.
    """
    where = {rid: k for k, rid in enumerate(other_ids)}
    missing = [rid for rid in ids if rid not in where]
    if missing:
        raise InputError(
            f"{len(missing)} of {len(ids)} {what} id(s) are not in {other}, e.g. {', '.join(missing[:5])}; "
            f"{other} ids look like {', '.join(list(other_ids)[:3]) or '(none)'}"
        )
    return [where[rid] for rid in ids]


def _per_label_rows(clinical: dict) -> list[list]:
    rows = []
    for name in CTRATE_LABELS:
        m = clinical["per_label"][name]
        rows.append([name, *(m[k] for k in ("precision", "recall", "f1", "support", "predicted", "tp", "fp", "fn"))])
    return rows


def _write_per_label_csv(path: Path, clinical: dict) -> None:
    with atomic_file(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["label", "precision", "recall", "f1", "support", "predicted", "tp", "fp", "fn"])
        for row in _per_label_rows(clinical):
            writer.writerow([row[0], *(f"{v:.4f}" for v in row[1:4]), *row[4:]])


def _write_chart(path: Path, clinical: dict, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    f1 = [clinical["per_label"][n]["f1"] for n in CTRATE_LABELS]
    support = [clinical["per_label"][n]["support"] for n in CTRATE_LABELS]
    fig, ax = plt.subplots(figsize=(10, 6.5), dpi=110)
    y = np.arange(len(CTRATE_LABELS))
    ax.barh(y, f1, color="#4C72B0")
    ax.set_yticks(y, [f"{n} (n={s})" for n, s in zip(CTRATE_LABELS, support)], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, 1.0)
    ax.axvline(clinical["macro_f1"], color="#C44E52", linestyle="--", label=f"macro F1 = {clinical['macro_f1']:.3f}")
    weighted = clinical["weighted_f1"]
    ax.axvline(weighted, color="#55A868", linestyle=":", label=f"weighted F1 = {weighted:.3f}")
    for k, v in enumerate(f1):
        ax.text(min(v + 0.01, 0.93), k, f"{v:.2f}", va="center", fontsize=7)
    ax.set_xlabel("F1")
    ax.set_title(title, fontsize=10)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    with atomic_file(path) as tmp:
        fig.savefig(tmp)
    plt.close(fig)


def _fmt(value: float | None) -> str:
    return "skipped" if value is None else f"{value:.4f}"


def _write_summary(path: Path, metrics: dict) -> None:
    c, n, d, inp = metrics["clinical"], metrics["nlg"], metrics["degenerate"], metrics["inputs"]
    unused = inp.get("unused_references")
    nlg_keys = ("bleu_1", "bleu_2", "bleu_3", "bleu_4", "meteor", "rouge_l", "cider")
    lines = [
        "# Report evaluation",
        "",
        f"- reports evaluated: {metrics['n_reports']}"
        + (f" ({unused} reference reports had no prediction)" if unused else ""),
        f"- ground-truth labels: {c['ground_truth']}",
        f"- NLG reference text: {n['reference']}",
        "",
        "| clinical | precision | recall | F1 |",
        "|---|---|---|---|",
    ]
    for avg in ("macro", "micro", "weighted"):
        lines.append(f"| {avg} | {c[avg + '_precision']:.4f} | {c[avg + '_recall']:.4f} | {c[avg + '_f1']:.4f} |")
    lines += [
        "",
        "| BLEU-1 | BLEU-2 | BLEU-3 | BLEU-4 | METEOR | ROUGE-L | CIDEr |",
        "|---|---|---|---|---|---|---|",
        "| " + " | ".join(_fmt(n[k]) for k in nlg_keys) + " |",
        "",
        f"METEOR: {n['meteor_status']}.",
        "",
        "| degenerate output | value |",
        "|---|---|",
        f"| duplicate fraction | {d['duplicate_fraction']:.4f} |",
        f"| most common report share | {d['most_common_fraction']:.4f} |",
        f"| empty reports | {d['empty_fraction']:.4f} |",
        f"| distinct-2 (reference) | {d['distinct_2']:.4f} ({_fmt(d['ref_distinct_2'])}) |",
        f"| mean length, tokens (reference) | {d['mean_length']:.1f} "
        f"({'n/a' if d['ref_mean_length'] is None else format(d['ref_mean_length'], '.1f')}) |",
        "",
        "| label | precision | recall | F1 | support | predicted |",
        "|---|---|---|---|---|---|",
    ]
    for row in _per_label_rows(c):
        lines.append(f"| {row[0]} | {row[1]:.3f} | {row[2]:.3f} | {row[3]:.3f} | {row[4]} | {row[5]} |")
    lines += ["", "![per-label F1](per_label_f1.png)", ""]
    write_text(path, "\n".join(lines))


def evaluate_reports(
    ids: Sequence[str],
    predictions: Sequence[str],
    references: Sequence[str],
    out_dir: str | Path | None = None,
    ground_truth: np.ndarray | None = None,
    label_texts: Sequence[str] | None = None,
    meteor: bool | None = None,
    inputs: dict | None = None,
    labeler: ReportLabeler | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict:
    """Evaluate N generated reports against their references and write the outputs.

    Args:
        ids: N scan/report ids (aligned with the other sequences).
        predictions: N generated reports.
        references: N reference texts for the NLG metrics (e.g. ``Findings_EN``).
        out_dir: folder for metrics.json, per_label.csv, per_label_f1.png, pred_labels.csv and
            summary.md; None writes nothing.
        ground_truth: (N, 18) 0/1 labels of the scans; None labels ``label_texts`` instead.
        label_texts: N texts to label for the ground truth when ``ground_truth`` is None
            (default: ``references``; pass findings + impression for the most faithful labels).
        meteor: compute METEOR (needs Java); None computes it when Java is available.
        inputs: extra provenance stored under ``metrics["inputs"]`` (file names, columns).
        labeler: the report labeler (default :class:`ReportLabeler`).
        progress: optional callback receiving a short description of each step.

    Returns:
        The metrics dictionary written to metrics.json.
    """
    n = len(ids)
    if n == 0:
        raise InputError("no reports to evaluate")
    if len(predictions) != n or len(references) != n:
        raise InputError(f"{n} ids, {len(predictions)} predictions and {len(references)} references must match")
    labeler = labeler or ReportLabeler()
    say = progress or (lambda _msg: None)
    inputs = dict(inputs or {})
    say("labelling generated reports")
    pred_labels = labeler.label_many(predictions)
    if ground_truth is None:
        texts = references if label_texts is None else label_texts
        if len(texts) != n:
            raise InputError(f"{n} predictions but {len(texts)} texts to label")
        say("labelling reference reports")
        truth = labeler.label_many(texts)
        truth_source = inputs.get("ground_truth", "labels read from the reference reports by the ctvl labeler")
    else:
        truth = np.asarray(ground_truth)
        truth_source = inputs.get("ground_truth", "given labels")
    say("clinical metrics")
    clinical = clinical_metrics(truth, pred_labels)
    clinical["ground_truth"] = truth_source
    clinical["labeler"] = LABELER_NAME
    say("NLG metrics" + (" (METEOR starts Java)" if meteor is not False else ""))
    nlg = nlg_metrics(predictions, references, meteor=meteor)
    nlg["reference"] = inputs.get("reference_text", "reference reports")
    degenerate = degenerate_metrics(predictions, references)
    metrics = {"n_reports": n, "clinical": clinical, "nlg": nlg, "degenerate": degenerate, "inputs": inputs}
    if out_dir is not None:
        say("writing outputs")
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        write_json(out / "metrics.json", metrics)
        _write_per_label_csv(out / "per_label.csv", clinical)
        write_labels(out / "pred_labels.csv", list(ids), pred_labels, id_column=inputs.get("id_column", "VolumeName"))
        _write_chart(out / "per_label_f1.png", clinical, f"Per-label F1, {n} reports (truth: {truth_source})")
        _write_summary(out / "summary.md", metrics)
    return metrics


def evaluate_report_files(
    pred_csv: str | Path,
    ref_csv: str | Path,
    out_dir: str | Path,
    labels_csv: str | Path | None = None,
    pred_text_column: str | None = None,
    ref_text_column: str | None = None,
    id_column: str | None = None,
    reference: str = "findings",
    meteor: bool | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict:
    """CSV front end of :func:`evaluate_reports` (``ctvl eval reports``).

    Args:
        pred_csv: generated reports (id + text columns, auto-detected).
        ref_csv: reference reports, e.g. CT-RATE's ``validation_reports.csv``.
        out_dir: output folder.
        labels_csv: ground-truth labels (id + 18 label columns); None labels the reference
            reports (findings + impression) with the ctvl labeler.
        pred_text_column: text column(s) of ``pred_csv`` (comma-separated); None auto-detects.
        ref_text_column: NLG reference column(s) of ``ref_csv``; None auto-detects using
            ``reference``.
        id_column: id column name in all files; None auto-detects per file.
        reference: ``"findings"`` (``Findings_EN``, CT2Rep's choice) or ``"full"`` (findings +
            impression) when the reference columns are auto-detected.
        meteor: compute METEOR; None when Java is available.
        progress: optional step callback.

    Returns:
        The metrics dictionary.
    """
    if reference not in ("findings", "full"):
        raise InputError(f"reference must be 'findings' or 'full', got {reference!r}")
    pred = read_reports(pred_csv, pred_text_column, id_column)
    ref = read_reports(ref_csv, ref_text_column, id_column, findings_only=(reference == "findings"))
    ref_idx = align(pred.ids, ref.ids, "prediction", f"the reference file {Path(ref_csv).name}")
    references = [ref.texts[k] for k in ref_idx]
    inputs = {
        "predictions": str(pred_csv),
        "references": str(ref_csv),
        "id_column": pred.id_column,
        "prediction_text": "+".join(pred.text_columns),
        "reference_text": "+".join(ref.text_columns),
        "unused_references": len(ref.ids) - len(pred.ids),
    }
    truth = None
    label_texts = None
    if labels_csv is not None:
        lab_ids, lab, _ = read_labels(labels_csv, id_column)
        idx = align(pred.ids, lab_ids, "prediction", f"the labels file {Path(labels_csv).name}")
        truth = lab[idx]
        inputs["labels"] = str(labels_csv)
        inputs["ground_truth"] = f"labels file {Path(labels_csv).name}"
    else:
        full = ref
        if ref_text_column is None and ref.text_columns == ("Findings_EN",):
            full = read_reports(ref_csv, None, id_column, findings_only=False)
        label_texts = [full.texts[k] for k in ref_idx]
        inputs["ground_truth"] = f"ctvl labeler on reference {'+'.join(full.text_columns)}"
    return evaluate_reports(
        pred.ids, pred.texts, references, out_dir, truth, label_texts, meteor=meteor, inputs=inputs, progress=progress
    )
