"""How much of each finding survives a tokenizer: the label-consistency ceiling of any generator in its latent
space, and what a reader of its tokens can at best see (synthesis and report issues).

    python pipelines/reconstruction_ceiling.py --tokenizer ctvl/bundles/tokenizer-phantom-cpu \
        --tokenizer runs/tokenizer-phantom-cpu-f4/bundle

For every tokenizer, the held-out report phantoms (seed 0 valid, 250 scans; and a second seed's valid set)
are encoded and decoded; the shipped phantom feature classifier (``ctvl/bundles/featurenets-phantom-cpu``)
then reads the real scans and the reconstructions. Written to ``--out``: ``ceiling.json`` (per tokenizer and
set: PSNR, latent values per scan, the classifier's macro-F1 on the reconstructions against the true labels,
and label consistency of the reconstructions against each scan's own labels, all scans with a finding and
those with 1-3, per label) and ``ceiling.png`` (per-label F1 of real scans and of each tokenizer's
reconstructions).
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
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from train_report_diagnosis import ensure  # noqa: E402  (the sibling pipeline script)

from ctvl.atomic import write_json  # noqa: E402
from ctvl.data.labels import CTRATE_LABELS  # noqa: E402
from ctvl.errors import InputError  # noqa: E402
from ctvl.eval.clinical import clinical_metrics  # noqa: E402
from ctvl.eval.features.bundle import load_feature_nets  # noqa: E402
from ctvl.eval.recon import recon_metrics  # noqa: E402
from ctvl.eval.synthesis import load_real, reconstruct, reconstruction_consistency  # noqa: E402
from ctvl.tokenizers.causal3d.bundle import load_tokenizer  # noqa: E402


def measure(tokenizers: list[str], sets: dict[str, Path], features: str | None, cache: Path, n: int) -> dict[str, Any]:
    """The ceiling of each tokenizer on each held-out set (see the module docstring)."""
    nets = load_feature_nets(features)
    result: dict[str, Any] = {"features": features or "ctvl/bundles/featurenets-phantom-cpu", "sets": {}}
    toks = {name: load_tokenizer(name) for name in tokenizers}
    for name, tok in toks.items():
        if tok.spec != nets.spec:
            raise InputError(f"{name}: the feature networks read another preprocessing than this tokenizer")
    for set_name, root in sets.items():
        real = load_real(root, "valid", nets.spec, cache, limit=n)
        truth = real.labels.numpy()
        real_pred = nets.predict(real.volumes.float()).numpy()
        m = clinical_metrics(truth, real_pred)
        row: dict[str, Any] = {
            "n": len(truth),
            "real": {"macro_f1": round(m["macro_f1"], 4)},
            "real_per_label": {k: round(v["f1"], 4) for k, v in m["per_label"].items()},
            "tokenizers": {},
        }
        for name, tok in toks.items():
            began = time.perf_counter()
            recon = reconstruct(tok, real.volumes)
            shape = tok.model.latent_shape(*real.volumes.shape[2:])
            pred = nets.predict(recon).numpy()
            m = clinical_metrics(truth, pred)
            consistency = reconstruction_consistency(pred, truth, real_pred)
            row["tokenizers"][name] = {
                "latent_shape": list(shape),
                "latent_values": int(np.prod(shape)),
                "psnr_db": round(recon_metrics(real.volumes.float(), recon)["psnr"], 2),
                "macro_f1_vs_truth": round(m["macro_f1"], 4),
                "per_label_f1_vs_truth": {k: round(v["f1"], 4) for k, v in m["per_label"].items()},
                "label_consistency": round(consistency["label_consistency"]["macro"], 4),
                "label_consistency_1to3": round(consistency["label_consistency_1to3"]["macro"], 4),
                "seconds": round(time.perf_counter() - began, 1),
            }
            print(
                set_name, name, json.dumps({k: v for k, v in row["tokenizers"][name].items() if "per_label" not in k})
            )
        result["sets"][set_name] = row
    return result


def chart(result: dict[str, Any], path: Path) -> None:
    """PNG: per-label F1 against the true labels, real scans vs each tokenizer's reconstructions."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sets = list(result["sets"])
    fig, axes = plt.subplots(len(sets), 1, figsize=(12, 3.6 * len(sets)), squeeze=False)
    for ax, set_name in zip(axes[:, 0], sets):
        row = result["sets"][set_name]
        names = list(row["tokenizers"])
        width = 0.8 / (1 + len(names))
        x = np.arange(len(CTRATE_LABELS))
        ax.bar(
            x, [row["real_per_label"][k] for k in CTRATE_LABELS], width, label=f"real ({row['real']['macro_f1']:.2f})"
        )
        for i, name in enumerate(names):
            t = row["tokenizers"][name]
            label = f"{Path(name).name if Path(name).name != 'bundle' else Path(name).parent.name} ({t['macro_f1_vs_truth']:.2f})"
            ax.bar(x + (i + 1) * width, [t["per_label_f1_vs_truth"][k] for k in CTRATE_LABELS], width, label=label)
        ax.set_xticks(x + width * len(names) / 2, CTRATE_LABELS, rotation=60, ha="right", fontsize=7)
        ax.set_ylabel("F1 vs true labels")
        ax.set_title(f"{set_name}: classifier on real scans and on tokenizer reconstructions")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokenizer", action="append", required=True, help="tokenizer bundle (repeatable)")
    parser.add_argument("--data", type=Path, default=REPO / "runs" / "data" / "phantom-report")
    parser.add_argument("--new-seed-data", type=Path, default=REPO / "runs" / "data" / "phantom-report-seed7")
    parser.add_argument("--n-valid", type=int, default=250)
    parser.add_argument("--features", default=None, help="feature-network bundle (default: shipped)")
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "reconstruction-ceiling")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    ensure(args.data, 0, "valid", args.n_valid)
    ensure(args.new_seed_data, 7, "valid", args.n_valid)
    args.out.mkdir(parents=True, exist_ok=True)
    result = measure(
        args.tokenizer,
        {"seed0-valid": args.data, "seed7-valid": args.new_seed_data},
        args.features,
        args.out / "cache",
        args.n_valid,
    )
    write_json(args.out / "ceiling.json", result)
    chart(result, args.out / "ceiling.png")
    print(f"wrote {args.out / 'ceiling.json'} and {args.out / 'ceiling.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
