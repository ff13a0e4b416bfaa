"""Model card and per-label F1 plot of the feature-network bundle (used by ``train_feature_nets.py``)."""

from __future__ import annotations

import io
from typing import Any

from ctvl.data.labels import CTRATE_LABELS

SETS = (("valid_seed0", "held-out valid (seed 0)"), ("test_seed1", "phantom-synth-b (seed 1)"))


def per_label_png(heldout: dict[str, Any]) -> bytes:
    """Horizontal bars of CTNet3D's per-label F1 on both held-out sets, as PNG bytes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    y = np.arange(len(CTRATE_LABELS))
    fig, ax = plt.subplots(figsize=(8, 7), dpi=100)
    for k, (key, title) in enumerate(SETS):
        f1 = [heldout[key]["per_label"][n]["f1"] for n in CTRATE_LABELS]
        ax.barh(y + (k - 0.5) * 0.4, f1, height=0.4, label=f"{title}: macro {heldout[key]['macro_f1']:.3f}")
    ax.set_yticks(y, CTRATE_LABELS)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("F1 (threshold from the bundle)")
    ax.set_title("CTNet3D per-label F1 on held-out phantoms")
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def _f1_table(heldout: dict[str, Any]) -> str:
    a, b = (heldout[k]["per_label"] for k, _ in SETS)
    rows = ["| label | F1 valid (seed 0) | support | F1 synth-b (seed 1) | support |", "|---|---:|---:|---:|---:|"]
    for n in CTRATE_LABELS:
        rows.append(f"| {n} | {a[n]['f1']:.3f} | {a[n]['support']} | {b[n]['f1']:.3f} | {b[n]['support']} |")
    va, te = (heldout[k] for k, _ in SETS)
    rows.append(f"| **macro** | **{va['macro_f1']:.3f}** | {va['n']} | **{te['macro_f1']:.3f}** | {te['n']} |")
    rows.append(f"| micro | {va['micro_f1']:.3f} | | {te['micro_f1']:.3f} | |")
    rows.append(f"| support-weighted | {va['weighted_f1']:.3f} | | {te['weighted_f1']:.3f} | |")
    return "\n".join(rows)


def _arch(name: str, cfg: Any, dims: str) -> str:
    strides = list(cfg.strides) if cfg.strides else [2] * len(cfg.widths)
    return (
        f"- **{name}** ({dims}): {len(cfg.widths)} conv layers (3 wide, {cfg.norm} norm, ReLU) of widths "
        f"{list(cfg.widths)}, strides {strides}, {cfg.blocks} residual block(s) after each; mean+max global "
        f"pooling, linear → {cfg.feature_dim} features (ReLU; the Fréchet features), dropout {cfg.dropout}, "
        f"linear → {cfg.num_labels} logits."
    )


def model_card(results: dict[str, Any], ct_cfg: Any, sl_cfg: Any) -> str:
    """The bundle's MODEL_CARD.md from the run's results (every number measured in this run)."""
    t, h = results["training"], results["heldout"]
    s, fl = t["seconds"], h["floors"]
    d = t["data"]
    ct, sl = t["ctnet3d"], t["slicenet2d"]
    thr = "0.5 for every label" if ct["thresholds"] == "fixed" else "per label, chosen on the training volumes"
    quick = "\n> **Smoke run (`--quick`)**: tiny data, 1 epoch; the numbers mean nothing.\n" if t["quick"] else ""
    return f"""# Feature networks for synthesis metrics — phantom, CPU grid
{quick}
Two networks trained by ctvl on phantoms, for the text-to-CT metrics of `ctvl eval synthesis`
(like GenerateCT's CT-Net, whose weights are not available): **CTNet3D**, a 3D classifier of the 18
CT-RATE labels whose penultimate features give the 3D Fréchet distance (`fd_3d`, FVD-style) and whose labels
give label consistency; **SliceNet2D**, one 2D network for the axial, coronal and sagittal slices of the
2.5D FID (`fid_2p5d`, the MAISI / VLM3D protocol: per plane and their mean).

Load: `ctvl.eval.features.load_feature_nets()`; inputs are model-space volumes (N, 1, 33, 64, 64) in [-1, 1],
made with the preprocessing spec stored in `config.json` (the tokenizer bundle's: {t["tokenizer"]}).

## How it was made
- Command: `{t["command"]}` ({t["machine"]}).
- Time: preprocessing {s["preprocess"]:.0f} s (cached after the first run), CTNet3D {s["ctnet3d"]:.0f} s,
  SliceNet2D {s["slicenet2d"]:.0f} s, evaluation {s["evaluate"]:.0f} s; {s["total"] / 60:.1f} min in all.
- Training data: `{d["train"]["root"]}` split `{d["train"]["split"]}`, {d["train"]["n"]} phantoms (seed {d["train"]["seed"]}).
- Held-out: `{d["valid_seed0"]["root"]}` `{d["valid_seed0"]["split"]}` ({d["valid_seed0"]["n"]}, seed {d["valid_seed0"]["seed"]}),
  and `{d["test_seed1"]["root"]}` `{d["test_seed1"]["split"]}` ({d["test_seed1"]["n"]}, seed {d["test_seed1"]["seed"]}), which
  was used for nothing but the numbers below. The recipe (net size, epochs, thresholds) was chosen
  looking at the seed-0 valid split, so the seed-1 numbers are the unbiased ones.
- CTNet3D: {ct["epochs"]} epochs, batch {ct["batch_size"]}, {ct["optimiser"]} (peak lr {ct["lr"]}), {ct["loss"]},
  augmentation {ct["augmentation"]} (±{ct["shift"]} voxels); thresholds {thr}. {t["parameters"]["ctnet3d"]:,} parameters.
- SliceNet2D: {sl["epochs"]} epochs of one slice per volume per plane (planes in turn, batch {sl["batch_size"]},
  central {sl["slice_band"]:.0%} of each axis), {sl["loss"]}, {sl["augmentation"]}. {t["parameters"]["slicenet2d"]:,} parameters.

## Architecture
{_arch("CTNet3D", ct_cfg, "(B, 1, T, H, W) → (B, 18)")}
{_arch("SliceNet2D", sl_cfg, "(B, 1, h, w) → (B, 18): axial 64 × 64, coronal / sagittal 33 × 64 through the same net")}

## CTNet3D per-label F1 on held-out real phantoms
This is the ceiling of what label consistency can show: a generated volume's labels can agree with its
prompt only as well as this classifier reads real volumes.

{_f1_table(h)}

![per-label F1](per_label_f1.png)

## Real-vs-real floors
Distances between the two held-out real sets ({fl["n"][0]} vs {fl["n"][1]} volumes, different phantom seeds):
what a perfect generator would score against real volumes at this set size.

| metric | value |
|---|---:|
| 2.5D FID axial | {fl["fid_2p5d"]["axial"]:.4f} |
| 2.5D FID coronal | {fl["fid_2p5d"]["coronal"]:.4f} |
| 2.5D FID sagittal | {fl["fid_2p5d"]["sagittal"]:.4f} |
| 2.5D FID mean | {fl["fid_2p5d"]["mean"]:.4f} |
| 3D FD (CTNet3D features) | {fl["fd_3d"]:.4f} |

## What it is for, and limits
- For comparing generators **within one table** computed with this bundle and similar set sizes. The
  values are not comparable with published FID/FVD (Inception / CT-Net features, real CT-RATE, other
  sizes): they live in this bundle's feature space.
- Trained on phantoms only, on the 64 × 64 × 33 CPU grid (5.6 × 5.6 × 11.25 mm): it has never seen a real CT
  scan and knows only what the phantom renders; findings smaller than a few voxels are hard for it.
- The slice network is trained with volume labels as weak slice labels: its features separate anatomy and
  large findings, not the labels of one slice. Slices at the ends of an axis that hold little anatomy are
  included in the 2.5D FID, as in the protocol.
- Fréchet distances are biased upward for small sets (sample covariance); compare at equal sizes and next
  to the floors above.
"""
