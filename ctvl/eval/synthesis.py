"""``ctvl eval synthesis``: how real and how faithful generated CT volumes are, with baselines in the same run.

For a prompts CSV (``prompt`` column, optional ``id``) the generator makes ``n_per_prompt`` volumes per
prompt (seed ``seed + j`` for the j-th). Everything is compared in the tokenizer's model space with the
phantom-trained feature networks (:mod:`ctvl.eval.features`):

* ``fid_2p5d`` (axial, coronal, sagittal and their mean; slice-network features) and ``fd_3d`` (3D
  classifier features) of the generated volumes against a **reference** real set;
* ``label_consistency``: the prompts' labels (read with the report labeler) against the classifier's
  labels of the generated volumes, over the labels the prompts state, beside the classifier on the real
  evaluation set (``real_macro``, the ceiling); again for prompts of 1–3 findings (``label_consistency_1to3``);
* baselines: real vs real (the evaluation set against the reference: the floor), the tokenizer's
  reconstructions of the evaluation set (the floor a latent generator cannot beat; with their label
  consistency, the classifier's labels of each reconstruction against the scan's own, its ceiling), the unconditional
  generator (null text, same number of volumes) and shuffled prompts (the generated volumes scored against
  another prompt's labels: chance level);
* ``memorization``: each generated volume's RMSE to its nearest training volume against a real held-out
  volume's (:func:`ctvl.eval.features.consistency.memorization`);
* a PNG grid of generated slices beside a real volume with the same (or the most similar) labels.

Writes ``metrics.json``, ``summary.md``, ``grid.png`` and ``prompts_labels.csv`` in ``out``.
"""

from __future__ import annotations

import csv
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ctvl.atomic import atomic_file, write_json, write_text
from ctvl.data.datasets import scan_ctrate
from ctvl.data.labels import CTRATE_LABELS
from ctvl.errors import InputError
from ctvl.eval.features.bundle import load_feature_nets
from ctvl.eval.features.consistency import label_consistency, memorization
from ctvl.eval.features.frechet import fd_3d, fid_2p5d
from ctvl.eval.features.voxels import model_space_volumes
from ctvl.eval.labeler import ReportLabeler
from ctvl.synthesis import generate, load_generator

GRID_ROWS = 6


@dataclass
class RealSet:
    """Model-space volumes (N, 1, T, H, W) of a real set with their (N, 18) labels and where they came from."""

    volumes: torch.Tensor
    labels: torch.Tensor
    source: str


def read_prompts(path: str | Path) -> tuple[list[str], list[str]]:
    """(ids, prompts) of a prompts CSV with a ``prompt`` column (ids default to the row number).

    Raises:
        InputError: missing file, no ``prompt`` column, or no rows.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError("prompts CSV not found", path=path)
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        if "prompt" not in (reader.fieldnames or []):
            raise InputError(f"the prompts CSV needs a 'prompt' column (found {reader.fieldnames})", path=path)
        rows = list(reader)
    if not rows:
        raise InputError("the prompts CSV has no rows", path=path)
    ids = [str(r.get("id") or k) for k, r in enumerate(rows)]
    return ids, [str(r["prompt"] or "") for r in rows]


def load_real(root: str | Path, split: str, spec, cache_dir: str | Path | None, limit: int | None = None) -> RealSet:
    """A CT-RATE-layout split with labels, preprocessed into model space (cached)."""

    records = scan_ctrate(root, split=split, require=("labels",)).records
    records = records[:limit] if limit else records
    if not records:
        raise InputError(f"no scans with labels in split {split!r}", path=root)
    volumes, labels = model_space_volumes(records, spec, cache_dir=cache_dir)
    return RealSet(volumes=volumes, labels=labels.long(), source=f"{root}:{split}")


def reconstruct(tok, volumes: torch.Tensor, batch: int = 8) -> torch.Tensor:
    """Tokenizer (a :class:`~ctvl.tokenizers.causal3d.bundle.LoadedTokenizer`) encode → decode of model-space
    volumes (N, 1, T, H, W) → (N, 1, T, H, W) in [-1, 1]."""
    out = []
    with torch.no_grad():
        for i in range(0, len(volumes), batch):
            x = volumes[i : i + batch].float()
            codes = tok.model.encode(x, mode=tok.encode_mode, chunk=1).codes
            out.append(tok.model.decode(codes, shape=tuple(x.shape[2:]), chunk_latents=1).clamp(-1, 1))
    return torch.cat(out)


def _distances(nets, x: torch.Tensor, reference: torch.Tensor) -> dict[str, Any]:
    import warnings

    with warnings.catch_warnings():  # scipy's sqrtm warns on near-singular covariances of small sets
        warnings.simplefilter("ignore")
        return {"fid_2p5d": fid_2p5d(nets, x, reference), "fd_3d": fd_3d(nets, x, reference)}


def reconstruction_consistency(recon_pred: np.ndarray, real_true: np.ndarray, real_pred: np.ndarray) -> dict[str, Any]:
    """The classifier's labels of the tokenizer reconstructions against the real volumes' own labels.

    The ceiling of label consistency for a generator in this tokenizer's latent space: a perfect generator
    produces at best what the decoder makes of a real scan's codes. ``label_consistency`` over all volumes
    with a finding, and ``label_consistency_1to3`` over those with 1-3 findings (as for the prompts).
    """
    out: dict[str, Any] = {}
    counts = real_true.sum(1)
    for key, keep in (("label_consistency", counts >= 1), ("label_consistency_1to3", (counts >= 1) & (counts <= 3))):
        if keep.any():
            out[key] = label_consistency(real_true[keep], recon_pred[keep], real_true, real_pred)
        else:
            out[key] = {"skipped": "no real volume with such findings"}
    return out


def _grid(path: Path, prompts: list[str], generated: torch.Tensor, prompt_labels: np.ndarray, real: RealSet) -> None:
    """PNG: per row a prompt's generated axial + coronal mid slices beside a real volume with similar labels."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = min(GRID_ROWS, len(prompts))
    picks = np.linspace(0, len(prompts) - 1, rows).round().astype(int)
    fig, axes = plt.subplots(rows, 4, figsize=(10, 2.6 * rows), squeeze=False)
    truth = real.labels.numpy()
    for r, i in enumerate(picks):
        inter = (truth & prompt_labels[i]).sum(1)
        union = (truth | prompt_labels[i]).sum(1)
        jaccard = np.where(union > 0, inter / np.maximum(union, 1), 1.0)
        j = int(np.argmax(jaccard))
        for c, (vol, what) in enumerate(((generated[i], "generated"), (real.volumes[j].float(), "real"))):
            t, h = vol.shape[1] // 2, vol.shape[2] // 2
            axes[r, 2 * c].imshow(vol[0, t].numpy(), cmap="gray", vmin=-1, vmax=1)
            axes[r, 2 * c + 1].imshow(vol[0, :, h].numpy(), cmap="gray", vmin=-1, vmax=1, origin="lower", aspect="auto")
            axes[r, 2 * c].set_title(f"{what}: axial", fontsize=8)
            axes[r, 2 * c + 1].set_title(
                f"{what}: coronal (Jaccard {jaccard[j]:.2f})" if c else f"{what}: coronal", fontsize=8
            )
        axes[r, 0].set_ylabel(
            "\n".join(prompts[i][k : k + 40] for k in range(0, min(len(prompts[i]), 120), 40)), fontsize=7
        )
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    with atomic_file(path) as tmp:
        fig.savefig(tmp, dpi=90)
    plt.close(fig)


def evaluate_synthesis(
    prompts_csv: str | Path,
    out: str | Path,
    *,
    real: str | Path,
    real_split: str = "valid",
    reference: str | Path | None = None,
    reference_split: str = "valid",
    train: str | Path | None = None,
    train_split: str = "train",
    generator: str | Path | None = None,
    features: str | Path | None = None,
    n_per_prompt: int = 1,
    steps: int | None = None,
    guidance: float | None = None,
    seed: int = 0,
    batch_size: int = 8,
    cache_dir: str | Path | None = "runs/cache/feature-voxels",
    progress: bool = True,
) -> dict[str, Any]:
    """Generate for every prompt and measure (see the module docstring); returns what ``metrics.json`` holds.

    Args:
        prompts_csv: CSV with a ``prompt`` column (optional ``id``).
        out: output folder.
        real: CT-RATE-layout folder of the real evaluation set (labels needed): the ``real_macro`` ceiling,
            the reconstruction baseline and the PNG's real column.
        real_split: its split.
        reference: real set the distances are measured against (another held-out set); None = the second
            half of ``real`` (the first half then is the evaluation set).
        reference_split: its split.
        train: the generator's training set, for the memorization check (None = skipped).
        train_split: its split.
        generator: generator bundle (default: the shipped one).
        features: feature-network bundle (default: the shipped one).
        n_per_prompt: volumes per prompt.
        steps, guidance: sampling settings (default: the bundle's).
        seed: seed of the first volume of every prompt.
        batch_size: volumes generated together.
        cache_dir: cache of preprocessed real volumes (None = none).
        progress: show a progress bar.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    if n_per_prompt < 1:
        raise InputError(f"--n-per-prompt must be >= 1, got {n_per_prompt}")
    began = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    ids, prompts = read_prompts(prompts_csv)
    gen = load_generator(generator)
    nets = load_feature_nets(features)
    if nets.spec != gen.spec:
        raise InputError(
            f"the feature networks expect preprocessing {nets.spec.hash()}, the generator makes volumes "
            f"with {gen.spec.hash()}; use feature networks trained for this tokenizer"
        )
    steps = gen.config.default_steps if steps is None else int(steps)
    guidance = gen.config.default_guidance if guidance is None else float(guidance)
    evalset = load_real(real, real_split, gen.spec, cache_dir)
    if reference is None:
        half = len(evalset.volumes) // 2
        ref = RealSet(evalset.volumes[half:], evalset.labels[half:], f"{evalset.source} (second half)")
        evalset = RealSet(evalset.volumes[:half], evalset.labels[:half], f"{evalset.source} (first half)")
    else:
        ref = load_real(reference, reference_split, gen.spec, cache_dir)
    labeler = ReportLabeler()
    prompt_labels = np.array([[labeler.label(p)[name] for name in CTRATE_LABELS] for p in prompts], dtype=np.int64)
    depth = int(gen.spec.depth or 33)
    all_prompts = [p for p in prompts for _ in range(n_per_prompt)]
    all_seeds = [seed + j for _ in prompts for j in range(n_per_prompt)]
    rep_labels = np.repeat(prompt_labels, n_per_prompt, axis=0)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, disable=not progress, transient=False) as bar:
        made = {}
        for name, texts in (("prompts", all_prompts), ("null text", [""] * len(all_prompts))):
            job = bar.add_task(f"generating ({name})", total=len(texts))
            made[name] = generate(
                gen,
                texts,
                all_seeds,
                steps=steps,
                guidance=guidance,
                depth=depth,
                batch_size=batch_size,
                progress=lambda k, job=job: bar.update(job, completed=k),
            )
    generated, uncond = made["prompts"], made["null text"]
    recon = reconstruct(gen.tokenizer, evalset.volumes)
    real_pred = nets.predict(evalset.volumes.float()).numpy()
    gen_pred = nets.predict(generated).numpy()
    real_true = evalset.labels.numpy()
    consistency = label_consistency(rep_labels, gen_pred, real_true, real_pred)
    counts = rep_labels.sum(1)
    few = (counts >= 1) & (counts <= 3)
    consistency_few = (
        label_consistency(rep_labels[few], gen_pred[few], real_true, real_pred)
        if few.any()
        else {"skipped": "no prompt states 1-3 findings"}
    )
    rng = np.random.default_rng(seed)
    shuffled = label_consistency(rep_labels[rng.permutation(len(rep_labels))], gen_pred, real_true, real_pred)
    uncond_consistency = label_consistency(rep_labels, nets.predict(uncond).numpy(), real_true, real_pred)
    recon_consistency = reconstruction_consistency(nets.predict(recon).numpy(), real_true, real_pred)
    metrics: dict[str, Any] = {
        "n_prompts": len(prompts),
        "n_per_prompt": n_per_prompt,
        "n_generated": len(generated),
        "steps": steps,
        "guidance": guidance,
        "seed": seed,
        "depth": depth,
        "generator": {"id": gen.generator_id, "bundle": str(gen.source)},
        "feature_nets": str(nets.folder),
        "evaluation_set": evalset.source,
        "reference_set": ref.source,
        **_distances(nets, generated, ref.volumes.float()),
        "label_consistency": consistency,
        "label_consistency_1to3": consistency_few,
        "baselines": {
            "real_vs_real": _distances(nets, evalset.volumes.float(), ref.volumes.float()),
            "reconstruction": {**_distances(nets, recon, ref.volumes.float()), **recon_consistency},
            "unconditional": {**_distances(nets, uncond, ref.volumes.float()), "label_consistency": uncond_consistency},
            "shuffled_prompts": {"label_consistency": shuffled},
        },
    }
    if train is not None:
        train_set = load_real(train, train_split, gen.spec, cache_dir)
        metrics["memorization"] = memorization(generated, train_set.volumes, evalset.volumes)
    else:
        metrics["memorization"] = {"skipped": "no --train set given"}
    metrics["targets"] = targets(metrics)
    metrics["seconds"] = round(time.perf_counter() - began, 1)
    _grid(out / "grid.png", all_prompts, generated, rep_labels, evalset)
    with atomic_file(out / "prompts_labels.csv") as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(
            ["id", "prompt", *(f"prompt:{n}" for n in CTRATE_LABELS), *(f"classifier:{n}" for n in CTRATE_LABELS)]
        )
        for k, (i, p) in enumerate(zip([i for i in ids for _ in range(n_per_prompt)], all_prompts)):
            w.writerow([i, p, *rep_labels[k].tolist(), *gen_pred[k].tolist()])
    write_json(out / "metrics.json", metrics)
    write_text(out / "summary.md", summary_markdown(metrics))
    return metrics


def targets(m: dict[str, Any]) -> dict[str, Any]:
    """The issue's targets, each with the measured values and pass/fail."""
    few = m["label_consistency_1to3"]
    floor = m["baselines"]["real_vs_real"]["fid_2p5d"]["mean"]
    uncond = m["baselines"]["unconditional"]["fid_2p5d"]["mean"]
    fid = m["fid_2p5d"]["mean"]
    out: dict[str, Any] = {
        "fid_vs_floor": {"fid": fid, "floor": floor, "limit": 2 * floor, "pass": fid <= 2 * floor},
        "fid_vs_unconditional": {
            "fid": fid,
            "unconditional": uncond,
            "limit": 0.5 * uncond,
            "pass": fid <= 0.5 * uncond,
        },
    }
    if "macro" in few:
        out["consistency_vs_real"] = {
            "macro": few["macro"],
            "real_macro": few["real_macro"],
            "limit": 0.9 * few["real_macro"],
            "pass": few["macro"] >= 0.9 * few["real_macro"],
        }
        # the labels the classifier itself reads well on the real evaluation set (F1 >= 0.8 in this run)
        strong = [n for n, v in few["per_label"].items() if v["real_f1"] >= 0.8]
        if strong:
            mean = float(np.mean([few["per_label"][n]["f1"] for n in strong]))
            out["consistency_strong_labels"] = {"labels": strong, "macro": mean, "limit": 0.8, "pass": mean >= 0.8}
    mem = m.get("memorization", {})
    if "generated_not_closer" in mem:
        out["no_memorization"] = {"pass": bool(mem["generated_not_closer"])}
    return out


def summary_markdown(m: dict[str, Any]) -> str:
    """A short human-readable table of ``metrics.json``."""
    b = m["baselines"]

    def row(name: str, d: dict[str, Any]) -> str:
        f = d["fid_2p5d"]
        return (
            f"| {name} | {f['axial']:.3f} | {f['coronal']:.3f} | {f['sagittal']:.3f} | {f['mean']:.3f} | "
            f"{d['fd_3d']:.3f} |"
        )

    lines = [
        f"# Text-to-CT evaluation ({m['n_generated']} volumes, {m['steps']} steps, guidance {m['guidance']})",
        "",
        f"Reference set: {m['reference_set']}; evaluation set: {m['evaluation_set']}.",
        "",
        "| volumes vs reference | FID axial | FID coronal | FID sagittal | FID 2.5D mean | FD 3D |",
        "|---|---|---|---|---|---|",
        row("real vs real (floor)", b["real_vs_real"]),
        row("tokenizer reconstructions", b["reconstruction"]),
        row("generated from the prompts", m),
        row("unconditional (null text)", b["unconditional"]),
        "",
    ]
    for key, title in (("label_consistency", "all prompts"), ("label_consistency_1to3", "prompts of 1-3 findings")):
        c = m[key]
        if "macro" in c:
            lines.append(
                f"Label consistency ({title}): macro-F1 {c['macro']:.3f} (classifier on real: "
                f"{c['real_macro']:.3f}) over {len(c['labels'])} labels."
            )
    rc = b["reconstruction"].get("label_consistency_1to3", {})
    if "macro" in rc:
        lines.append(
            f"Tokenizer reconstructions of real volumes with 1-3 findings (the latent generator's ceiling): "
            f"{rc['macro']:.3f} over {len(rc['labels'])} labels."
        )
    sh = b["shuffled_prompts"]["label_consistency"]
    lines.append(
        f"Shuffled prompts: {sh['macro']:.3f}; unconditional: {b['unconditional']['label_consistency']['macro']:.3f}."
    )
    mem = m.get("memorization", {})
    if "generated_median" in mem:
        lines.append(
            f"Memorization: nearest-training RMSE median generated {mem['generated_median']:.4f} vs real "
            f"held-out {mem['real_median']:.4f}; below the real 5th percentile: "
            f"{mem['fraction_below_real_p5']:.1%}."
        )
    lines += ["", "| target | pass |", "|---|---|"] + [f"| {k} | {v.get('pass')} |" for k, v in m["targets"].items()]
    return "\n".join(lines) + "\n"
