"""Reconstruction table of the CT tokenizers: 3D after stage 1, 3D after stage 3, 2D slice-wise baseline.

Every model goes through the inference path a user gets (``load_tokenizer`` -> the model's stored
preprocessing spec -> windowed encode -> streaming decode). Metrics: PSNR and SSIM in the [-1000, 1000] HU
window (:mod:`ctvl.eval.recon`) on the model grid, over the box the scan covers (padding excluded), on

* held-out phantoms (the ``valid`` split, patients never seen in training), and
* the real CT files in ``<repo>/../shared/data/volumes`` when present (files that cannot be read are
  listed with the reason).

Writes ``recon_eval.json``, ``recon_eval.md`` and ``recon_montage.png`` (axial and coronal views of
input, reconstructions and errors) to ``--out``.

    python pipelines/eval_tokenizer.py --runs runs/tokenizer-phantom-cpu --out runs/tokenizer-phantom-cpu/eval
    python pipelines/eval_tokenizer.py --model "3D stage 3=ctvl/bundles/tokenizer-phantom-cpu" --model ...
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED_VOLUMES = REPO / ".." / "shared" / "data" / "volumes"


def default_models(runs: Path) -> dict[str, Path]:
    """The three rows of the table, from a pipeline output folder."""
    return {
        "3D after stage 1": runs / "s1",
        "3D after stage 3": runs / "s3",
        "2D slice-wise baseline": runs / "slicewise",
    }


def real_scans(folder: Path) -> list[Path]:
    """NIfTI files, DICOM folders and single .dcm files directly inside ``folder``."""
    if not folder.is_dir():
        return []
    found = []
    for p in sorted(folder.iterdir()):
        if p.name == "licenses":
            continue
        if p.is_dir() and any(q.suffix == ".dcm" for q in p.iterdir()):
            found.append(p)
        elif p.name.endswith((".nii", ".nii.gz", ".dcm")):
            found.append(p)
    return found


def _recon(tok: Any, x: torch.Tensor) -> torch.Tensor:
    """Windowed encode + streaming decode of a model tensor (1, T, H, W) -> (1, T, H, W)."""
    tokens = tok.model.encode(x[None], mode=tok.encode_mode)
    return tok.model.decode(tokens)[0]


def _crop(x: torch.Tensor, box: tuple[slice, slice, slice]) -> torch.Tensor:
    return x[(slice(None), *box)]


def evaluate(
    models: dict[str, Path],
    valid_root: Path,
    real_dir: Path | None,
    max_cases: int | None = None,
    keep: int = 2,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Score every model on the held-out phantoms and the real scans.

    Returns:
        (results JSON, images for the montage: ``{"phantom": [(name, input, {model: recon})], "real": ...}``).
    """
    from ctvl.data.datasets import load_record_volume, scan_ctrate
    from ctvl.errors import CtvlError
    from ctvl.eval.recon import field_of_view, mean_metrics, recon_metrics, to_unit
    from ctvl.io import read_volume
    from ctvl.psnr import psnr_from_mse
    from ctvl.tokenizers.causal3d.bundle import load_tokenizer

    toks = {name: load_tokenizer(path) for name, path in models.items()}
    records = scan_ctrate(valid_root, split="valid").records[:max_cases]
    first = next(iter(toks.values())).spec
    grid = f"{first.size[0]} x {first.size[1]} x {first.depth or 'any'}"
    results: dict[str, Any] = {
        "models": {},
        "phantom_cases": [r.volume_name for r in records],
        "real": {},
        "grid": grid,
    }
    images: dict[str, list] = {"phantom": [], "real": []}
    rows: dict[str, dict[str, list]] = {name: {"phantom": [], "real": []} for name in toks}
    scans: list[tuple[str, str, Any]] = [("phantom", r.volume_name, r) for r in records]
    skipped = {}
    slice_se: dict[str, torch.Tensor] = {}  # per model: summed squared error per slice (window units)
    adjacent: list[float] = []  # "copy the previous slice" predictor, per phantom
    for path in real_scans(real_dir) if real_dir is not None else []:
        scans.append(("real", path.name, path))
    for kind, label, item in scans:
        try:
            volume = load_record_volume(item) if kind == "phantom" else read_volume(item)
        except CtvlError as exc:
            skipped[label] = str(exc)
            continue
        per_model, shown = {}, {}
        for name, tok in toks.items():
            x = tok.spec.apply(volume)  # (1, T, H, W) with this model's stored spec
            box = field_of_view(tok.spec, volume)
            with torch.no_grad():
                recon = _recon(tok, x)
            m = recon_metrics(_crop(x, box), _crop(recon, box))
            rows[name][kind].append(m)
            per_model[name] = m
            shown[name] = recon
            if kind == "phantom":
                err = (to_unit(recon) - to_unit(x)).pow(2).mean(dim=(0, 2, 3))  # (T,)
                slice_se[name] = slice_se.get(name, 0) + err
        if kind == "phantom":
            u = to_unit(x)
            adjacent.append(psnr_from_mse(float((u[:, 1:] - u[:, :-1]).pow(2).mean()), data_range=1.0))
        if kind == "real":
            results["real"][label] = {"model_grid_box": [[s.start, s.stop] for s in box], **per_model}
        images[kind].append((label, x, shown, box))
    for name, tok in toks.items():
        results["models"][name] = {
            "source": str(models[name]),
            "kind": tok.kind,
            "stage": tok.stage,
            "compression": tok.model.config.compression,
            "token_channels": tok.model.config.token_channels,
            "latent_values": _latent_values(tok),
            "phantom": mean_metrics(rows[name]["phantom"]),
            "real": mean_metrics(rows[name]["real"]),
        }
        if name in slice_se:  # PSNR of the first slice (its own latent frame in 3D) and of the others
            se = slice_se[name] / len(rows[name]["phantom"])
            results["models"][name]["phantom_psnr_first_slice"] = psnr_from_mse(float(se[0]), data_range=1.0)
            results["models"][name]["phantom_psnr_other_slices"] = psnr_from_mse(float(se[1:].mean()), data_range=1.0)
    if adjacent:
        results["phantom_adjacent_slice_psnr"] = float(np.mean(adjacent))
    results["real_skipped"] = skipped
    depth = lambda item: (item[3][0].stop or 0) - (item[3][0].start or 0)  # noqa: E731  slices in the box
    images = {"phantom": images["phantom"][:keep], "real": sorted(images["real"], key=depth, reverse=True)[:1]}
    return results, images


def _latent_values(tok: Any) -> int:
    from ctvl.tokenizers.causal3d import latent_values

    t = tok.spec.depth or 33
    return latent_values(tok.model.config, (t, *tok.spec.size))


def markdown_table(results: dict[str, Any]) -> str:
    """The reconstruction table as markdown."""
    n = len(results["phantom_cases"])
    lines = [
        "| model | tokens | latent values / volume | phantom PSNR (dB) | phantom SSIM | real CT PSNR (dB) | real CT SSIM |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, r in results["models"].items():
        ph, re = r["phantom"], r["real"]
        real_psnr = f"{re['psnr']:.2f}" if re.get("n") else "n/a"
        real_ssim = f"{re['ssim']:.4f}" if re.get("n") else "n/a"
        lines.append(
            f"| {name} | {r['compression']}, {r['token_channels']} bit LFQ | {r['latent_values']} | "
            f"{ph['psnr']:.2f} ± {ph['psnr_std']:.2f} | {ph['ssim']:.4f} | {real_psnr} | {real_ssim} |"
        )
    names = list(results["models"])
    grid = results.get("grid", "64 x 64 x 65")
    lines += [
        "",
        f"Held-out phantoms: {n} volumes ({grid}, valid split). "
        f"Real CT: {len(results['real'])} scans ({', '.join(results['real']) or 'none'}); "
        f"metrics over the box each scan covers on the {grid} model grid.",
    ]
    if results["real"]:
        lines += [
            "",
            "| real scan | " + " | ".join(f"{m} PSNR / SSIM" for m in names) + " |",
            "|---|" + "---|" * len(names),
        ]
        for label, r in results["real"].items():
            cells = [f"{r[m]['psnr']:.2f} / {r[m]['ssim']:.4f}" for m in names]
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
    for label, why in results.get("real_skipped", {}).items():
        lines.append(f"\nSkipped {label}: {why}")
    return "\n".join(lines) + "\n"


def montage(images: dict[str, list], out: Path, title: str = "", dpi: int = 110) -> Path:
    """PNG: per scan an axial row and a coronal row: input, each model's reconstruction, and its |error|."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = images["phantom"] + images["real"]
    if not panels:
        raise ValueError("nothing to show")
    names = list(panels[0][2])
    cols = 1 + 2 * len(names)
    fig, axes = plt.subplots(2 * len(panels), cols, figsize=(1.9 * cols, 2.0 * 2 * len(panels)), squeeze=False)
    for p, (label, x, recons, box) in enumerate(panels):
        t_mid = (box[0].start + box[0].stop) // 2 if box[0].start is not None else x.shape[1] // 2
        h_mid = (box[1].start + box[1].stop) // 2 if box[1].start is not None else x.shape[2] // 2
        views = {"axial": lambda v, t=t_mid: v[0, t], "coronal": lambda v, h=h_mid: v[0, :, h].flip(0)}
        for r, (view, cut) in enumerate(views.items()):
            row = axes[2 * p + r]
            row[0].imshow(cut(x), cmap="gray", vmin=-1, vmax=1, aspect="auto")
            row[0].set_title(f"{label[:22]}\n{view} input", fontsize=7)
            for j, name in enumerate(names):
                rec = recons[name]
                row[1 + 2 * j].imshow(cut(rec), cmap="gray", vmin=-1, vmax=1, aspect="auto")
                row[1 + 2 * j].set_title(name, fontsize=7)
                row[2 + 2 * j].imshow((cut(rec) - cut(x)).abs(), cmap="magma", vmin=0, vmax=0.25, aspect="auto")
                row[2 + 2 * j].set_title("|error| (0-250 HU)", fontsize=7)
            for ax in row:
                ax.set_xticks([])
                ax.set_yticks([])
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=dpi)
    plt.close(fig)
    return out


def run(
    models: dict[str, Path], valid_root: Path, real_dir: Path | None, out: Path, max_cases: int | None = None
) -> dict[str, Any]:
    """Evaluate, write JSON + markdown + PNG into ``out``; returns the results."""
    t0 = time.perf_counter()
    results, images = evaluate(models, valid_root, real_dir, max_cases)
    results["seconds"] = round(time.perf_counter() - t0, 1)
    out.mkdir(parents=True, exist_ok=True)
    (out / "recon_eval.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    (out / "recon_eval.md").write_text(markdown_table(results), encoding="utf-8")
    title = "windowed encode + streaming decode; HU window [-1000, 1000]"
    montage(images, out / "recon_montage.png", title)
    montage(images, out / "recon_montage_small.png", title, dpi=55)  # for the shipped bundle
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--runs",
        type=Path,
        default=REPO / "runs" / "tokenizer-phantom-cpu",
        help="pipeline output folder with s1/, s3/, slicewise/ runs",
    )
    parser.add_argument(
        "--model",
        action="append",
        default=[],
        metavar="NAME=PATH",
        help="evaluate these instead (bundle, checkpoint or run folder); repeatable",
    )
    parser.add_argument(
        "--valid", type=Path, default=REPO / "runs" / "data" / "phantom", help="phantom dataset with a valid split"
    )
    parser.add_argument("--real", type=Path, default=SHARED_VOLUMES, help="folder of real CT files (optional)")
    parser.add_argument("--max-cases", type=int, default=None, help="evaluate only the first N phantoms")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: <runs>/eval)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.model:
        models = {}
        for item in args.model:
            name, sep, path = item.partition("=")
            if not sep:
                parser.error(f"--model needs NAME=PATH, got {item!r}")
            models[name] = Path(path)
    else:
        models = default_models(args.runs)
    from ctvl.errors import CtvlError

    try:
        results = run(
            models,
            args.valid,
            args.real if args.real.is_dir() else None,
            args.out or args.runs / "eval",
            args.max_cases,
        )
    except CtvlError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(markdown_table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
