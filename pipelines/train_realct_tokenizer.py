"""Train the real-CT tokenizer at 1.5 mm isotropic end to end: data folders, curriculum stages 1 -> 2 -> 3 on
in-plane crops, the 2D slice-wise baseline on the same stream, evaluation, model card, and the bundle in
``ctvl/bundles/tokenizer-realct-1p5mm/``.

    python pipelines/train_realct_tokenizer.py                  # the real run (2 threads, about an hour)
    python pipelines/train_realct_tokenizer.py --quick --out runs/realct-smoke   # minutes-long smoke run

Why 1.5 mm isotropic (not the paper's 0.75 x 0.75 x 1.5 mm): the thin real scans here have 1-2 mm slices, so
1.5 mm keeps every slice's information along z while one 8 x 8 x 8 token covers 12 x 12 x 12 mm (the paper's
6 x 6 x 12 mm); isotropic voxels make the 3D-vs-2D question fair in every direction; and a whole scan (about
320 x 320 x 250 at 1.5 mm) is a quarter of the paper grid's voxels, so whole-scan encode/decode stays
affordable on a CPU. Training runs on 64 x 64 crops: a crop costs what it costs at any spacing.

Data (``../shared/data/volumes``; never the same patient in training and evaluation):

* training, excerpts and slices: LIDC-IDRI-0314 (Philips, 1 mm slices), and 1.5 mm phantoms rendered natively;
* training, single native slices (one slice each, stage 1's ``singles``): the Siemens Sensation 10 thorax
  (30 slices of 8 mm), the COPDGene GE LightSpeed slices (``simple_dicom``), the lungmask chest slice,
  pydicom's CT_small and the GE colonography slices;
* held out: the Philips Big Bore 2 mm series (evaluation only, per its licence note), COPDGene ``ct-64`` and
  ``TestInput`` (other subjects), the TotalSegmentator abdomen, and phantoms of the valid split.

Each stage is ``ctvl train tokenizer --config configs/realct-cpu-tokenizer-s{N}.yaml --stage N``; a finished
stage is skipped and an interrupted one resumed, so re-running the command continues where it stopped.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see pipelines/train_tokenizer.py

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
import train_tokenizer  # noqa: E402  (the sibling pipeline: train_run)
from realct_data import SHARED, TRAIN_SLICES, TRAIN_VOLUMES  # noqa: E402  (what trains, what is held out)

CONFIGS = REPO / "configs"
STAGE_CONFIGS = {n: CONFIGS / f"realct-cpu-tokenizer-s{n}.yaml" for n in (1, 2, 3)}
BASELINE_CONFIG = CONFIGS / "realct-cpu-slicewise.yaml"
BUNDLE_DIR = REPO / "ctvl" / "bundles" / "tokenizer-realct-1p5mm"
PHANTOM_SHAPE, PHANTOM_SPACING = (256, 256, 129), (1.5, 1.5, 1.5)  # 384 x 384 x 192 mm of mid-chest
N_TRAIN, N_VALID, DATA_SEED = 32, 6, 3
SINGLE_Z = 1.5  # mm given to a single native slice (one slice has no z extent; this keeps it one slice)


def single_slices(volume: Any, keep: list[int] | None) -> list[Any]:
    """Each axial slice of ``volume`` (I, J, K) as its own one-slice :class:`Volume` (I, J, 1), z step 1.5 mm."""
    from ctvl.io.volume import Volume, VolumeMeta

    out = []
    for k in keep if keep is not None else range(volume.shape[2]):
        affine = volume.affine.copy()
        affine[:3, 3] = volume.affine[:3, :3] @ np.array([0.0, 0.0, float(k)]) + volume.affine[:3, 3]
        affine[:3, 2] *= SINGLE_Z / np.linalg.norm(affine[:3, 2])
        out.append(
            Volume(
                np.ascontiguousarray(volume.data[:, :, k : k + 1]),
                affine,
                VolumeMeta(modality="CT", source=f"{volume.meta.source}#slice{k}"),
            )
        )
    return out


def write_split(root: Path, volumes: list[tuple[str, Any]]) -> dict[str, str]:
    """Write volumes as ``train/train_{i}/train_{i}_a/train_{i}_a_1.nii.gz`` (CT-RATE layout, int16 HU)."""
    from ctvl.io import write_nifti

    names = {}
    for i, (name, vol) in enumerate(volumes, start=1):
        path = root / "train" / f"train_{i}" / f"train_{i}_a" / f"train_{i}_a_1.nii.gz"
        write_nifti(vol, path, dtype="int16", description=name[:79])
        names[path.name] = name
    (root / "sources.json").write_text(json.dumps(names, indent=2) + "\n", encoding="utf-8")
    return names


def ensure_real(root: Path, shared: Path) -> dict[str, Any]:
    """The two real training folders (``volumes``: whole thin scans; ``slices``: native single slices)."""
    from ctvl.io import read_volume

    facts: dict[str, Any] = {}
    for sub, items, split in (("volumes", TRAIN_VOLUMES, False), ("slices", TRAIN_SLICES, True)):
        folder = root / sub
        if (folder / "sources.json").exists():
            facts[sub] = json.loads((folder / "sources.json").read_text())
            continue
        vols = []
        for name, rel, keep in items:
            vol = read_volume(shared / rel)
            if split:
                vols += [(f"{name}#{j}", v) for j, v in enumerate(single_slices(vol, keep))]
            else:
                vols.append((name, vol))
        facts[sub] = write_split(folder, vols)
    return facts


def ensure_phantoms(root: Path, n_train: int, n_valid: int) -> None:
    """1.5 mm phantoms (256 x 256 x 129), rendered natively at that spacing."""
    from ctvl.data.phantom import write_dataset

    for split, n in (("train", n_train), ("valid", n_valid)):
        manifest = root / f"phantom_{split}.json"
        if manifest.exists() and json.loads(manifest.read_text()).get("n") == n:
            continue
        write_dataset(
            root,
            n=n,
            seed=DATA_SEED,
            split=split,
            shape=PHANTOM_SHAPE,
            spacing=PHANTOM_SPACING,
            workers=2,
            progress=True,
        )


def fill_caches(config: Path, overrides: list[str]) -> None:
    """Preprocess every training volume once (so stage times are training only)."""
    from ctvl.tokenizers.causal3d.curriculum import open_volumes
    from ctvl.tokenizers.causal3d.task import parse_spec
    from ctvl.train import load_config

    cfg = load_config(config, overrides)
    mix = open_volumes(cfg.data, parse_spec(cfg.data["preprocessing"]))
    for source in mix.sources:
        for i in range(len(source)):
            source.dataset.image(i)


def data_overrides(data: Path) -> list[str]:
    """Overrides that point a config at the data folders below ``data``."""
    return [f"data.root={data / 'phantom-1p5'}"]


def mix_override(data: Path, singles: bool) -> str:
    real = data / "realct"
    items = [f"{{root: {real / 'volumes'}, weight: 1.0}}"]
    if singles:
        items.append(f"{{root: {real / 'slices'}, weight: 1.0, use: singles}}")
    return "data.mix=[" + ", ".join(items) + "]"


def train_all(out: Path, data: Path, quick: bool) -> dict[str, Any]:
    """Stages 1 -> 2 -> 3 and the slice-wise baseline (steps of the three stages together)."""
    from ctvl.train import load_config

    common = data_overrides(data) + (["steps=4", "log_every=2", "checkpoint_every=4"] if quick else [])
    runs, total = {}, 0
    for n in (1, 2, 3):
        over = [f"output_dir={out / f's{n}'}", *common, mix_override(data, singles=n == 1)]
        if n > 1:
            over.append(f"init_from={out / f's{n - 1}'}")
        if n == 1:
            fill_caches(STAGE_CONFIGS[1], over)
        runs[f"s{n}"] = train_tokenizer.train_run(n, STAGE_CONFIGS[n], over)
        total += load_config(STAGE_CONFIGS[n], over).steps
    over = [f"output_dir={out / 'slicewise'}", *common, mix_override(data, singles=True), f"steps={total}"]
    runs["slicewise"] = train_tokenizer.train_run(1, BASELINE_CONFIG, over)
    return runs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "tokenizer-realct")
    parser.add_argument("--data", type=Path, default=REPO / "runs" / "data", help="folder of the data folders")
    parser.add_argument("--shared", type=Path, default=SHARED, help="the shared real CT folder")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="smoke run: a few steps, few phantoms, no install")
    parser.add_argument("--train-only", action="store_true", help="stop after training (evaluate later)")
    parser.add_argument(
        "--install",
        action=argparse.BooleanOptionalAction,
        default=None,
        help=f"copy the bundle into {BUNDLE_DIR.relative_to(REPO)} (default: unless --quick)",
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if not args.shared.is_dir():
        print(f"error: {args.shared}: the shared real CT folder is missing; pass --shared", file=sys.stderr)
        return 2
    began = time.perf_counter()
    data = args.out / "data" if args.quick else args.data
    n_train, n_valid = (4, 2) if args.quick else (N_TRAIN, N_VALID)
    t0 = time.perf_counter()
    real = ensure_real(data / "realct", args.shared)
    ensure_phantoms(data / "phantom-1p5", n_train, n_valid)
    facts: dict[str, Any] = {
        "threads": args.threads,
        "data_seconds": round(time.perf_counter() - t0, 1),
        "real_training": real,
        "n_phantom_train": n_train,
        "n_phantom_valid": n_valid,
    }
    facts["runs"] = train_all(args.out, data, args.quick)
    facts["train_seconds"] = round(time.perf_counter() - began, 1)
    (args.out / "training.json").write_text(json.dumps(facts, indent=2) + "\n", encoding="utf-8")
    if args.train_only:
        return 0
    import realct_report  # noqa: PLC0415  (evaluation, card and install; a sibling script)

    install = (not args.quick) if args.install is None else args.install
    return realct_report.finish(
        out=args.out, data=data, shared=args.shared, facts=facts, install=install, bundle_dir=BUNDLE_DIR, began=began
    )


if __name__ == "__main__":
    sys.exit(main())
