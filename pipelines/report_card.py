"""The report bundle's model card and comparison table, written by ``pipelines/train_report.py``.

Kept apart from the pipeline that trains the variants: this module only turns the pipeline's facts (trainings,
evaluations, the token probe) into Markdown.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def comparison_rows(results: dict[str, Any], inputs: dict[str, str]) -> list[dict[str, Any]]:
    """One row per variant with the headline numbers (``inputs``: variant -> what its LM sees)."""
    rows = []
    for name, res in results.items():
        m = res["metrics"]
        c, n, d = m["clinical"], m["nlg"], m["degenerate"]
        rows.append(
            {
                "variant": name,
                "visual_input": inputs[name],
                "macro_f1": c["macro_f1"],
                "micro_f1": c["micro_f1"],
                "weighted_f1": c["weighted_f1"],
                "bleu_4": n["bleu_4"],
                "rouge_l": n["rouge_l"],
                "meteor": n["meteor"],
                "cider": n["cider"],
                "duplicate_fraction": d["duplicate_fraction"],
                "mean_length": d["mean_length"],
                "ref_mean_length": d["ref_mean_length"],
                "reports": m["n_reports"],
                "errors": res["errors"],
            }
        )
    return rows


def markdown_table(rows: list[dict[str, Any]]) -> str:
    meteor = "| METEOR " if any(r["meteor"] is not None for r in rows) else ""
    lines = [
        "| visual input | clinical macro-F1 | micro-F1 | BLEU-4 | ROUGE-L "
        + meteor
        + "| duplicate fraction | mean length (ref) |",
        "|---|---|---|---|---" + ("|---" if meteor else "") + "|---|---|",
    ]
    for r in rows:
        met = f"| {r['meteor']:.3f} " if meteor and r["meteor"] is not None else ("| - " if meteor else "")
        lines.append(
            f"| {r['visual_input']} | {r['macro_f1']:.3f} | {r['micro_f1']:.3f} | {r['bleu_4']:.3f} | "
            f"{r['rouge_l']:.3f} {met}| {r['duplicate_fraction']:.3f} | {r['mean_length']:.0f} "
            f"({r['ref_mean_length']:.0f}) |"
        )
    return "\n".join(lines)


def targets(rows: list[dict[str, Any]]) -> list[str]:
    by = {r["variant"]: r for r in rows}
    out = []
    if "3d" in by:
        out.append(
            f"- clinical macro-F1 with the 3D tokenizer >= 0.80: {by['3d']['macro_f1']:.3f} "
            f"({'met' if by['3d']['macro_f1'] >= 0.80 else 'NOT met'})"
        )
        out.append(
            f"- duplicate fraction < 0.2: {by['3d']['duplicate_fraction']:.3f} "
            f"({'met' if by['3d']['duplicate_fraction'] < 0.2 else 'NOT met'})"
        )
    if "3d" in by and "slicewise" in by and by["slicewise"]["macro_f1"] > 0:
        ratio = by["3d"]["macro_f1"] / by["slicewise"]["macro_f1"]
        out.append(f"- 3D / slice-wise macro-F1 >= 1.4: {ratio:.2f} ({'met' if ratio >= 1.4 else 'NOT met'})")
    return out


def model_card(facts: dict[str, Any], rows: list[dict[str, Any]], table: str, data_seed: int) -> str:
    """The report bundle's MODEL_CARD.md from the pipeline's facts and comparison rows."""
    from ctvl.report.bundle import load_report_model

    run = facts["train"]["3d"]
    loaded = load_report_model(run.get("bundle") or run["run_dir"])  # the exported model: calibrated threshold
    export = loaded.export
    mc = export["model"]
    lm = mc["lm"]
    params = sum(p.numel() for p in loaded.model.parameters())
    spec = export["preprocessing"]
    per_label = json.loads((Path(facts["out"]) / "eval" / "3d" / "metrics.json").read_text())["clinical"]["per_label"]
    worst = sorted(per_label.items(), key=lambda kv: kv[1]["f1"])[:4]
    lines = [
        "# report-phantom-cpu: radiology reports from the causal 3D tokenizer (CPU-sized)",
        "",
        "Writes a chest CT report (findings + impression) from a scan: the bundle's preprocessing → the causal",
        f"3D tokenizer ({export['tokenizer']['compression']}, {export['tokenizer']['token_channels']}-bit LFQ, id "
        f"`{export['tokenizer']['id']}`, copied in `tokenizer/`) → "
        + (
            f"{mc['conv_layers']} 3x3x3 conv layers ({mc['conv_width']} channels) on the latent grid → "
            if mc.get("conv_layers")
            else ""
        )
        + f"{mc['reduction']['kind']} token reduction (keep {mc['reduction'].get('keep')}) with 3D position codes"
        + (
            " + one summary token (mean/max-pooled features, with its own 18-label loss)"
            if mc.get("summary_token")
            else ""
        )
        + f" → MLP projector ({mc['conv_width'] if mc.get('conv_layers') else mc['visual_dim']} → "
        f"{lm['hidden_size']} → {lm['hidden_size']}) → a {lm['arch'].title()}-style causal LM built from a config "
        f"({lm['num_hidden_layers']} layers, width {lm['hidden_size']}, {params / 1e6:.1f} M parameters in all), "
        f"greedy decoding up to {mc['max_new_tokens']} tokens. Text: byte-level BPE ({loaded.text.vocab_size} ids) "
        "trained on the training reports. An auxiliary 18-label loss is read at `</image>` "
        f"(weight {mc['aux_label_weight']}); the labels returned by `ctvl report --json` are the report labeler's "
        "reading of the generated text.",
        *(
            [
                "",
                "**Diagnosis prompt** (after PromptMRG, Jin et al., AAAI 2024): 18 learned tokens between `</image>` "
                "and `<findings>`, one per CT-RATE label, each saying present or absent. In training they carry the "
                "ground-truth labels, so the LM learns to write what they say; at inference they carry the visual label "
                f"head (pooled conv features) thresholded at {mc['label_threshold']}, the threshold with the best macro-F1 "
                "on the *training* scans (`ctvl.eval.calibrate`; held-out scans never used). The visual tokens stay "
                "in the prompt for what the labels do not say (sides, sizes, severity). When the bundle has a "
                "`diagnosis/` folder (`pipelines/train_report_diagnosis.py`, as shipped) a 3D classifier of the voxels "
                "sets them instead: see *Diagnosis from the voxels* below; the tables above it were measured with the "
                "label head.",
            ]
            if mc.get("label_prompt")
            else []
        ),
        "",
        "**Use:** `ctvl report SCAN [--json]` (NIfTI, NRRD, MetaImage or DICOM). Trained on procedural phantoms only: it is a",
        "working demonstration of the pipeline, not a clinical model; on real CT it will write phantom-style reports.",
        "",
        "## Preprocessing (stored in the bundle, enforced at inference)",
        "",
        f"orientation {spec['orientation']}, spacing {spec['spacing']} mm, window {spec['window']} HU → "
        f"{spec['out_range']}, size {spec['size']} × depth {spec['depth']}, anti-aliasing {spec['antialias']}. "
        "Loading refuses a tokenizer or spec that differs from the training one; scans outside the training "
        "geometry or field of view are reported in `warnings`.",
        "",
        "## The paper's comparison on held-out phantoms",
        "",
        f"Same LM, steps ({run['steps']}) and batch ({run['batch_size']}) for the three visual inputs; "
        f"{facts['data']['n_train']} training and {facts['data']['n_valid']} held-out phantom scans (seed "
        f"{data_seed}). Clinical F1 against the phantom ground-truth labels (labels of the generated reports by "
        "the ctvl report labeler, CT-RATE's 18 labels, unweighted macro average); NLG reference: findings + "
        "impression; mean length in words.",
        "",
        table,
        "",
        *targets(rows),
        "",
        "Weakest labels of the 3D model: "
        + ", ".join(f"{k} (F1 {v['f1']:.2f}, n={v['support']})" for k, v in worst)
        + ".",
        "",
        "**Why the numbers are low.** The CPU tokenizer keeps 12 bits per 8 x 8 x 8 block of a 64 x 64 x 33 volume "
        "(6 mm voxels), and many findings (calcifications, small nodules, devices, septal lines) occupy a voxel or "
        "two: little of them survives in the tokens. " + probe_sentence(facts.get("probe")) + "The comparison is "
        "still informative: without visual input every report is the same (duplicate fraction ~1, macro-F1 ~0.03).",
        "",
        "## Training",
        "",
    ]
    for name, t in facts["train"].items():
        lines.append(
            f"- {name}: `ctvl train report --config {t['config']}` — {t['steps']} steps, "
            f"{t['seconds'] / 60:.1f} min on {t['threads']} thread(s); final loss {t['final_loss']:.3f}"
        )
    lines += [
        f"- hardware: {facts['hardware']}; whole pipeline {facts['pipeline_seconds'] / 60:.1f} min "
        "(data, token caches, trainings, calibration, evaluations, export)",
        "",
        "## Data and licence",
        "",
        "Procedural phantoms from `ctvl.data.phantom` (no patient data; generated reports and labels, see",
        "`data_cards/phantom.md`). Weights: same licence as ctvl.",
        "",
    ]
    return "\n".join(lines)


def probe_sentence(probe: dict[str, Any] | None) -> str:
    """The card's sentence on ``pipelines/probe_tokens.py`` (empty when it has not been run)."""
    if not probe or "voxels" not in probe or "codes" not in probe:
        return ""
    v, c = probe["voxels"], probe["codes"]
    return (
        f"`pipelines/probe_tokens.py` trains the same small 3D CNN ({v['epochs']} epochs, {probe['n_train']} "
        f"training / {probe['n_valid']} held-out scans, no LM) on the preprocessed voxels and on the tokenizer's "
        f"codes: macro-F1 {v['macro_f1']:.3f} from the voxels, {c['macro_f1']:.3f} from the codes (threshold 0.5 with "
        "positive-class weights; the report model's lower, calibrated threshold gains on the rare labels). The tokens keep "
        "about half of what a classifier can read from the 64 x 64 x 33 grid, and that grid itself does not "
        "show the smallest findings; 0.80 needs a finer tokenizer (more bits or less compression) on a finer "
        "grid, i.e. the paper-sized configuration on a GPU. "
    )


def splice_section(card: str, section: str, begin: str, end: str) -> str:
    """``card`` with the text between the ``begin`` / ``end`` markers replaced by ``section`` (appended when absent)."""
    if begin in card:
        head, rest = card.split(begin, 1)
        return head + section + rest.split(end, 1)[1].lstrip("\n")
    return card.rstrip("\n") + "\n\n" + section
