"""Train the feature networks of the synthesis metrics on phantoms and ship them as a bundle.

    flock /tmp/ctvl-train.lock python pipelines/train_feature_nets.py      # the real run (~12 min, 2 threads)
    python pipelines/train_feature_nets.py --quick --out runs/featurenets-smoke   # smoke run, never installs

Steps:

1. model-space volumes (tokenizer bundle's preprocessing spec) of the phantom training split (``--data``,
   seed 0), its held-out valid split, and a second held-out set (``--test-data``, seed 1, used for nothing
   but this measurement), cached under ``--cache`` (:func:`ctvl.eval.features.model_space_volumes`);
2. :func:`~ctvl.classify.train_classifier` (CTNet3D) and :func:`~ctvl.classify.train_slice_net`
   (SliceNet2D) on the training split;
3. CTNet3D per-label / macro F1 on both held-out sets (:func:`ctvl.eval.clinical.clinical_metrics`);
4. real-vs-real floors: 2.5D FID and 3D FD between the two held-out sets;
5. ``results.json``, ``MODEL_CARD.md``, ``per_label_f1.png`` and the bundle in ``--out/bundle``, installed in
   ``ctvl/bundles/featurenets-phantom-cpu/`` unless ``--quick`` or ``--no-install``.
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from feature_nets_card import model_card, per_label_png  # noqa: E402  (the sibling card writer)

INSTALL_DIR = REPO / "ctvl" / "bundles" / "featurenets-phantom-cpu"


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=REPO / "runs" / "data" / "phantom-report")
    p.add_argument("--test-data", type=Path, default=REPO / "runs" / "data" / "phantom-synth-b")
    p.add_argument("--tokenizer", type=Path, default=REPO / "ctvl" / "bundles" / "tokenizer-phantom-cpu")
    p.add_argument("--cache", type=Path, default=REPO / "runs" / "cache" / "feature-voxels")
    p.add_argument("--out", type=Path, default=REPO / "runs" / "featurenets")
    p.add_argument("--n-train", type=int, default=None, help="first N training volumes (default all)")
    p.add_argument("--n-valid", type=int, default=None, help="first N of each held-out set (default all)")
    p.add_argument("--epochs-3d", type=int, default=6)
    p.add_argument("--epochs-2d", type=int, default=4)
    p.add_argument("--thresholds", choices=("fixed", "train"), default="train")
    p.add_argument(
        "--blur", type=float, default=0.0, help="max Gaussian sigma (voxels) blurring half of each CTNet3D batch"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--quick", action="store_true", help="smoke run: 16 train / 8 held-out volumes, 1 epoch each")
    p.add_argument("--no-install", action="store_true")
    args = p.parse_args(argv)
    if args.quick:
        args.n_train, args.n_valid = args.n_train or 16, args.n_valid or 8
        args.epochs_3d = args.epochs_2d = 1
        args.no_install = True
    return args


def load(root: Path, split: str, n: int | None, spec, cache: Path) -> tuple[torch.Tensor, torch.Tensor, dict]:
    from ctvl.data.datasets import scan_ctrate
    from ctvl.eval.features import model_space_volumes

    records = scan_ctrate(root, split=split, require=("labels",)).records[:n]
    x, y = model_space_volumes(records, spec, cache, progress=True)
    manifest = root / f"phantom_{split}.json"
    seed = json.loads(manifest.read_text()).get("seed") if manifest.exists() else None
    return (
        x,
        y,
        {
            "root": str(root.relative_to(REPO) if root.is_relative_to(REPO) else root),
            "split": split,
            "n": len(records),
            "seed": seed,
            "prevalence": [round(float(v), 4) for v in y.mean(0)],
        },
    )


def score(nets, x: torch.Tensor, y: torch.Tensor) -> dict[str, Any]:
    from ctvl.eval.clinical import clinical_metrics

    m = clinical_metrics(y.long().numpy(), nets.predict(x).numpy())
    return {
        "macro_f1": m["macro_f1"],
        "micro_f1": m["micro_f1"],
        "weighted_f1": m["weighted_f1"],
        "n": m["n_reports"],
        "per_label": {
            k: {"f1": v["f1"], "support": v["support"], "precision": v["precision"], "recall": v["recall"]}
            for k, v in m["per_label"].items()
        },
    }


def main(argv: list[str] | None = None) -> int:
    from ctvl.atomic import write_json
    from ctvl.eval.features import FeatureNets, fd_3d, fid_2p5d, save_feature_nets, train_classifier, train_slice_net
    from ctvl.tokenizers.causal3d.bundle import load_tokenizer

    args = parse(argv)
    began = time.perf_counter()
    torch.set_num_threads(args.threads)
    tok = load_tokenizer(args.tokenizer)
    x_tr, y_tr, d_tr = load(args.data, "train", args.n_train, tok.spec, args.cache)
    x_va, y_va, d_va = load(args.data, "valid", args.n_valid, tok.spec, args.cache)
    x_te, y_te, d_te = load(args.test_data, "valid", args.n_valid, tok.spec, args.cache)
    prep_s = time.perf_counter() - began
    print(f"volumes: train {tuple(x_tr.shape)}, valid {len(x_va)}, test {len(x_te)} ({prep_s:.0f} s)", flush=True)

    ct = train_classifier(
        x_tr, y_tr, epochs=args.epochs_3d, blur=args.blur, thresholds=args.thresholds, seed=args.seed, progress=True
    )
    print(f"CTNet3D: {ct.seconds:.0f} s, losses {[round(v, 4) for v in ct.losses]}", flush=True)
    sl = train_slice_net(x_tr, y_tr, epochs=args.epochs_2d, seed=args.seed, progress=True)
    print(f"SliceNet2D: {sl.seconds:.0f} s, losses {[round(v, 4) for v in sl.losses]}", flush=True)
    nets = FeatureNets(ct.net, sl.net, ct.thresholds, tok.spec)

    t0 = time.perf_counter()
    heldout = {"valid_seed0": score(nets, x_va, y_va), "test_seed1": score(nets, x_te, y_te)}
    heldout["floors"] = {
        "fid_2p5d": fid_2p5d(nets, x_va, x_te),
        "fd_3d": fd_3d(nets, x_va, x_te),
        "between": ["valid_seed0", "test_seed1"],
        "n": [len(x_va), len(x_te)],
    }
    eval_s = time.perf_counter() - t0
    for name in ("valid_seed0", "test_seed1"):
        print(f"{name}: macro-F1 {heldout[name]['macro_f1']:.4f}", flush=True)
    print(f"floors: fid_2p5d {heldout['floors']['fid_2p5d']}, fd_3d {heldout['floors']['fd_3d']:.4f}", flush=True)

    training = {
        "command": "python pipelines/train_feature_nets.py"
        + "".join(" " + shlex.quote(a) for a in (argv or sys.argv[1:])),
        "data": {"train": d_tr, "valid_seed0": d_va, "test_seed1": d_te},
        "tokenizer": tok.tokenizer_id,
        "ctnet3d": ct.facts,
        "slicenet2d": sl.facts,
        "seconds": {
            "preprocess": round(prep_s, 1),
            "ctnet3d": round(ct.seconds, 1),
            "slicenet2d": round(sl.seconds, 1),
            "evaluate": round(eval_s, 1),
            "total": round(time.perf_counter() - began, 1),
        },
        "losses": {"ctnet3d": ct.losses, "slicenet2d": sl.losses},
        "threads": args.threads,
        "machine": f"{platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}",
        "parameters": {
            "ctnet3d": sum(p.numel() for p in ct.net.parameters()),
            "slicenet2d": sum(p.numel() for p in sl.net.parameters()),
        },
        "quick": args.quick,
    }
    results = {"training": training, "heldout": heldout, "thresholds": [float(t) for t in ct.thresholds]}
    args.out.mkdir(parents=True, exist_ok=True)
    write_json(args.out / "results.json", results)
    extra = {
        "MODEL_CARD.md": model_card(results, ct.net.config, sl.net.config),
        "per_label_f1.png": per_label_png(heldout),
    }
    kwargs = dict(
        ctnet3d=ct.net,
        slicenet2d=sl.net,
        thresholds=ct.thresholds,
        spec=tok.spec,
        training=training,
        heldout=heldout,
        extra_files=extra,
    )
    bundle = save_feature_nets(args.out / "bundle", **kwargs)
    print(f"bundle: {bundle}", flush=True)
    if not args.no_install:
        print(f"installed: {save_feature_nets(INSTALL_DIR, **kwargs)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
