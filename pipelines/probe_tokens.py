"""How much of the 18 labels can be read from a scan: raw voxels vs the tokenizer's codes.

    python pipelines/probe_tokens.py                       # ~16 min on 2 cores (raw ~14, codes ~2)
    python pipelines/probe_tokens.py --inputs codes --epochs 2 --n-train 64 --n-valid 32   # smoke run

The same small 3D CNN (conv + BatchNorm + ReLU, three stride-2 stages, mean+max pooling, one linear layer;
BCE with sqrt inverse-prevalence positive weights; 0.5 threshold) is trained on the training split of the
report phantoms and scored on the held-out split, once on the preprocessed voxels (1, 33, 64, 64) and once
on the tokenizer's quantized latents (12, 5, 8, 8). The gap is what the tokens lose for the report model,
with no language model involved. Writes ``probe.json`` (macro-F1 and per-label F1 per input) in ``--out``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

REPO = Path(__file__).resolve().parents[1]


def load_split(data: Path, split: str, n: int, tok) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(N, 1, T, H, W) preprocessed voxels, (N, D, t, h, w) codes and (N, 18) labels of one split."""
    from ctvl.data.datasets import load_record_volume, scan_ctrate

    records = scan_ctrate(data, split=split, require=("labels",)).records[:n]
    voxels, codes = [], []
    with torch.no_grad():
        for r in records:
            x = tok.spec.apply(load_record_volume(r)).float()[None]  # (1, 1, T, H, W)
            voxels.append(x[0])
            codes.append(tok.model.encode(x, mode=tok.encode_mode, chunk=1).codes[0].float())
    return torch.stack(voxels), torch.stack(codes), torch.from_numpy(np.stack([r.labels for r in records])).float()


def probe_net(channels: int, downsample: bool, stem: int = 0) -> nn.Module:
    """The probe: 6 conv layers (3 stride-2 when reading voxels, none on the already coarse codes).

    ``stem`` extra stride-2 conv layers (16 channels) go first: a grid twice as fine per axis then costs
    about what the coarse one does, and every voxel still reaches the probe through a 3 x 3 x 3 kernel.
    """

    def block(i: int, o: int, stride: int) -> nn.Module:
        return nn.Sequential(nn.Conv3d(i, o, 3, stride=stride, padding=1), nn.BatchNorm3d(o), nn.ReLU())

    s = 2 if downsample else 1
    stems = [block(channels if k == 0 else 16, 16, 2) for k in range(stem)]
    widths = [16 if stem else channels, 24, 32, 64, 64, 96, 96]
    layers = stems + [block(widths[k], widths[k + 1], s if k % 2 == 0 else 1) for k in range(6)]

    class Pool(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, t, h, w) -> (B, 2C)
            return torch.cat([x.amax((2, 3, 4)), x.mean((2, 3, 4))], 1)

    return nn.Sequential(*layers, Pool(), nn.Linear(2 * widths[-1], 18))


def fit_and_score(
    x_tr: torch.Tensor,
    y_tr: torch.Tensor,
    x_va: torch.Tensor,
    y_va: torch.Tensor,
    downsample: bool,
    epochs: int,
    seed: int = 0,
    stem: int = 0,
    extra_valid: dict[str, tuple[torch.Tensor, torch.Tensor]] | None = None,
) -> dict[str, object]:
    """Train the probe with AdamW + one-cycle LR (left-right flips) and score macro / per-label F1.

    Inputs may be stored as float16 (large grids); each batch is cast to float32. ``extra_valid`` names
    more held-out sets ``{name: (x, y)}`` scored by the same trained probe (under ``"also"``).
    """
    from ctvl.eval.clinical import clinical_metrics

    torch.manual_seed(seed)
    net = probe_net(x_tr.shape[1], downsample, stem)
    opt = torch.optim.AdamW(net.parameters(), 1e-3, weight_decay=1e-4)
    prevalence = y_tr.mean(0).clamp(0.02, 0.98)
    loss_fn = nn.BCEWithLogitsLoss(pos_weight=((1 - prevalence) / prevalence).sqrt())
    batch = 16
    steps = epochs * max(1, len(x_tr) // batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, 1e-3, total_steps=steps, pct_start=0.1)
    began = time.perf_counter()
    for _ in range(epochs):
        net.train()
        perm = torch.randperm(len(x_tr))
        for i in range(0, max(1, len(x_tr) - batch + 1), batch):
            idx = perm[i : i + batch]
            x = x_tr[idx].float()
            x = x.flip(-1) if torch.rand(1) < 0.5 else x
            loss = loss_fn(net(x), y_tr[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    net.eval()

    def score(x_eval: torch.Tensor, y_eval: torch.Tensor) -> dict[str, object]:
        with torch.no_grad():
            logits = torch.cat([net(x_eval[i : i + 32].float()) for i in range(0, len(x_eval), 32)])
        metrics = clinical_metrics(y_eval.long().numpy(), (logits > 0).long().numpy())
        per_label = {name: round(v["f1"], 3) for name, v in metrics["per_label"].items()}
        return {"macro_f1": round(metrics["macro_f1"], 4), "per_label_f1": per_label}

    out: dict[str, object] = {**score(x_va, y_va), "seconds": round(time.perf_counter() - began, 1), "epochs": epochs}
    if extra_valid:
        out["also"] = {name: {"n": len(y), **score(x, y)} for name, (x, y) in extra_valid.items()}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO / "runs" / "data" / "phantom-report")
    parser.add_argument("--tokenizer", default=str(REPO / "ctvl" / "bundles" / "tokenizer-phantom-cpu"))
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "probe-tokens")
    parser.add_argument("--n-train", type=int, default=2000)
    parser.add_argument("--n-valid", type=int, default=250)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--inputs", default="voxels,codes")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    from ctvl.tokenizers.causal3d.bundle import load_tokenizer

    torch.set_num_threads(args.threads)
    tok = load_tokenizer(args.tokenizer)
    vox_tr, codes_tr, y_tr = load_split(args.data, "train", args.n_train, tok)
    vox_va, codes_va, y_va = load_split(args.data, "valid", args.n_valid, tok)
    result: dict[str, object] = {"tokenizer": tok.tokenizer_id, "n_train": len(y_tr), "n_valid": len(y_va)}
    for name in [s.strip() for s in args.inputs.split(",") if s.strip()]:
        tr, va = (vox_tr, vox_va) if name == "voxels" else (codes_tr, codes_va)
        result[name] = {"shape": list(tr.shape[1:]), **fit_and_score(tr, y_tr, va, y_va, name == "voxels", args.epochs)}
        print(name, result[name]["macro_f1"], flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "probe.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps({k: (v["macro_f1"] if isinstance(v, dict) else v) for k, v in result.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
