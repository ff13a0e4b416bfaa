"""The information ceiling of the report path at several grids (issue 13): what a CNN reads from voxels.

    python pipelines/probe_ceiling.py                  # render 128 x 128 x 65 phantoms, probe two grids
    python pipelines/probe_ceiling.py --n-train 64 --n-valid 16 --epochs 1   # smoke run

The report phantoms (the labels and reports of ``pipelines/train_report.py``'s data, seed 0) are rendered
once at 128 x 128 x 65 (2.8 x 2.8 x 5.6 mm), then each grid's preprocessing spec resamples them, as the
report model's input would be: ``cpu`` (the shipped 64 x 64 x 33 grid, 5.6 x 5.6 x 11.25 mm) and ``fine``
(128 x 128 x 65). The same small 3D CNN as ``pipelines/probe_tokens.py`` (one extra stride-2 stem layer
on the fine grid, so both cost about the same) is trained on the training split and scored on the
held-out split of the same seed and on a held-out set drawn from seed 7, which nothing was tuned on.
Writes ``ceiling.json`` and ``ceiling_per_label.png`` in ``--out``.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ctvl.atomic import write_text  # noqa: E402
from ctvl.data.datasets import load_record_volume, scan_ctrate  # noqa: E402
from ctvl.data.labels import CTRATE_LABELS  # noqa: E402
from ctvl.data.phantom import write_dataset  # noqa: E402
from ctvl.data.transforms import PreprocessSpec  # noqa: E402

RENDER_SHAPE = (128, 128, 65)
DATA_SEED, NEW_SEED = 0, 7


def _probe_module():
    spec = importlib.util.spec_from_file_location("probe_tokens", REPO / "pipelines" / "probe_tokens.py")
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def grids() -> dict[str, tuple[PreprocessSpec, int]]:
    """Grid name -> (preprocessing spec, stride-2 stem layers of the probe)."""
    cpu = PreprocessSpec.cpu()
    fine = dataclasses.replace(cpu, spacing=tuple(s / 2 for s in cpu.spacing), size=(128, 128), depth=65)
    return {"cpu": (cpu, 0), "fine": (fine, 1)}


def render(root: Path, split: str, n: int, seed: int) -> None:
    """Render ``n`` phantoms of ``split`` at :data:`RENDER_SHAPE` unless they are there already."""
    have = scan_ctrate(root, split=split, require=("labels",)).records if (root / split).is_dir() else []
    if len(have) >= n:
        return
    write_dataset(root, n, seed, split=split, shape=RENDER_SHAPE, workers=0, progress=True)


def load(root: Path, split: str, n: int, spec: PreprocessSpec) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, 1, T, H, W) float16 preprocessed voxels and (N, 18) labels."""
    records = scan_ctrate(root, split=split, require=("labels",)).records[:n]
    x = torch.stack([spec.apply(load_record_volume(r)).to(torch.float16) for r in records])
    y = torch.from_numpy(np.stack([r.labels for r in records])).float()
    return x, y


def write_chart(result: dict, path: Path) -> None:
    """Per-label F1 of each grid on the new-seed held-out set (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [g for g in result["grids"]]
    fig, ax = plt.subplots(figsize=(11, 4.2))
    width = 0.8 / len(names)
    for k, g in enumerate(names):
        f1 = result["grids"][g]["also"][f"seed{NEW_SEED}"]["per_label_f1"]
        ax.bar(np.arange(18) + k * width, [f1[label] for label in CTRATE_LABELS], width, label=g)
    ax.set_xticks(np.arange(18) + width * (len(names) - 1) / 2)
    ax.set_xticklabels(CTRATE_LABELS, rotation=60, ha="right", fontsize=7)
    ax.set_ylabel(f"voxel-probe F1 (held-out, seed {NEW_SEED})")
    ax.set_ylim(0, 1)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO / "runs" / "data" / "phantom-report-128")
    parser.add_argument("--new-seed-data", type=Path, default=REPO / "runs" / "data" / "phantom-report-128-seed7")
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "probe-ceiling")
    parser.add_argument("--n-train", type=int, default=2000)
    parser.add_argument("--n-valid", type=int, default=250)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--grids", default="cpu,fine")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    probe = _probe_module()
    render(args.data, "train", args.n_train, DATA_SEED)
    render(args.data, "valid", args.n_valid, DATA_SEED)
    render(args.new_seed_data, "valid", args.n_valid, NEW_SEED)
    result: dict = {
        "rendered": list(RENDER_SHAPE),
        "n_train": args.n_train,
        "n_valid": args.n_valid,
        "seeds": {"train_valid": DATA_SEED, "new": NEW_SEED},
        "grids": {},
    }
    for name in [g.strip() for g in args.grids.split(",") if g.strip()]:
        spec, stem = grids()[name]
        began = time.perf_counter()
        x_tr, y_tr = load(args.data, "train", args.n_train, spec)
        x_va, y_va = load(args.data, "valid", args.n_valid, spec)
        x_new, y_new = load(args.new_seed_data, "valid", args.n_valid, spec)
        prep = time.perf_counter() - began
        scored = probe.fit_and_score(
            x_tr, y_tr, x_va, y_va, True, args.epochs, stem=stem, extra_valid={f"seed{NEW_SEED}": (x_new, y_new)}
        )
        result["grids"][name] = {
            "spacing_mm": list(spec.spacing),
            "shape": list(x_tr.shape[2:]),
            "preprocess_s": round(prep, 1),
            **scored,
        }
        print(name, scored["macro_f1"], scored["also"][f"seed{NEW_SEED}"]["macro_f1"], flush=True)
        del x_tr, x_va, x_new
    args.out.mkdir(parents=True, exist_ok=True)
    write_text(args.out / "ceiling.json", json.dumps(result, indent=2) + "\n")
    write_chart(result, args.out / "ceiling_per_label.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
