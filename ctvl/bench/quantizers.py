"""Quantizer and 1D-tokenizer benchmark on phantom CT (real training, CPU-sized).

Part 1 trains the same tiny conv autoencoder (4× down per axis, 8 latent channels) on axial phantom
slices (2D, 32 × 32) and on small phantom volumes (3D, 8 × 32 × 32 slabs) once per quantizer at a
comparable budget of ~10 bits per latent position, plus a continuous (unquantized) baseline, and
reports held-out reconstruction PSNR, codebook usage, perplexity, bits per voxel and encode/decode
time. Part 2 trains a TiTok-style 1D tokenizer (FSQ tokens) with FlexTok nested dropout and with
One-D-Piece tail drop (:mod:`ctvl.bench.oned`) and reports the reconstruction error against the
number of kept tokens.

HU are clipped to [-1000, 1000] and divided by 1000 (range 2 for PSNR).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ctvl.atomic import write_json
from ctvl.bench.bench_data import METHODS, BenchConfig, BenchData, batches, phantom_data
from ctvl.bench.oned import error_vs_kept, oned_config, oned_data, train_titok
from ctvl.psnr import psnr_from_mse
from ctvl.tokenizers.oned import TiTok1D
from ctvl.tokenizers.quantizers import Quantizer, build_quantizer


class TinyAutoencoder(nn.Module):
    """Conv autoencoder, 4× down per axis: (B, 1, *S) → latent (B, D, *S/4) → (B, 1, *S)."""

    def __init__(
        self, *, spatial_dims: int, latent_dim: int, width: int = 32, quantizer: Quantizer | None = None
    ) -> None:
        super().__init__()
        conv = {2: nn.Conv2d, 3: nn.Conv3d}[spatial_dims]
        up = nn.Upsample(scale_factor=2, mode="nearest")
        w1, w2 = max(1, width // 2), width
        self.encoder = nn.Sequential(
            conv(1, w1, 3, padding=1),
            nn.SiLU(),
            conv(w1, w2, 4, stride=2, padding=1),
            nn.SiLU(),
            conv(w2, w2, 4, stride=2, padding=1),
            nn.SiLU(),
            conv(w2, latent_dim, 1),
        )
        self.quantizer = quantizer
        self.decoder = nn.Sequential(
            conv(latent_dim, w2, 3, padding=1),
            nn.SiLU(),
            up,
            conv(w2, w2, 3, padding=1),
            nn.SiLU(),
            up,
            conv(w2, w1, 3, padding=1),
            nn.SiLU(),
            conv(w1, 1, 3, padding=1),
        )

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor, dict[str, float]]:
        z = self.encoder(x)
        if self.quantizer is None:
            return z, None, z.new_zeros(()), {}
        q = self.quantizer(z)
        return q.quantized, q.indices, q.aux_loss, q.stats

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z, _, aux, _ = self.encode(x)
        return self.decoder(z), aux


def train_autoencoder(
    model: TinyAutoencoder,
    data: torch.Tensor,
    steps: int,
    batch: int,
    lr: float,
    gen: torch.Generator,
    tick: Callable[[], None] = lambda: None,
) -> None:
    """MSE + quantizer aux loss, Adam; the quantizer is told the step (entropy annealing)."""
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    for step in range(steps):
        x = data[torch.randint(0, len(data), (batch,), generator=gen)]
        if model.quantizer is not None:
            model.quantizer.set_step(step)
        recon, aux = model(x)
        loss = F.mse_loss(recon, x) + aux
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        tick()


@torch.no_grad()
def evaluate_autoencoder(model: TinyAutoencoder, data: torch.Tensor, batch: int = 16) -> dict[str, Any]:
    """Held-out PSNR, usage over the whole set, bits per voxel and per-sample encode/decode ms."""
    model.eval()
    se, n, all_idx, enc_s, dec_s = 0.0, 0, [], 0.0, 0.0
    latent_numel = 0
    for x in batches(data, batch):
        t0 = time.perf_counter()
        z, idx, _, _ = model.encode(x)
        t1 = time.perf_counter()
        recon = model.decoder(z)
        dec_s += time.perf_counter() - t1
        enc_s += t1 - t0
        se += float(F.mse_loss(recon, x, reduction="sum"))
        n += x.numel()
        latent_numel = z[0].numel()
        if idx is not None:
            all_idx.append(idx)
    voxels = data[0].numel()
    mse = se / n
    row: dict[str, Any] = {
        "mse": mse,
        "psnr": psnr_from_mse(mse),
        "encode_ms": 1000 * enc_s / len(data),
        "decode_ms": 1000 * dec_s / len(data),
    }
    q = model.quantizer
    if q is None:
        row.update(codebook_usage=None, perplexity=None, codebook_size=None, bits_per_voxel=32 * latent_numel / voxels)
    else:
        indices = torch.cat(all_idx)
        row.update(q.usage_stats(indices))
        row.update(codebook_size=q.codebook_size, bits_per_voxel=q.index_bits(indices) / voxels)
    return row


def run_benchmark(
    cfg: BenchConfig, out_dir: str | Path | None = None, data: BenchData | None = None, progress: bool = True
) -> list[dict[str, Any]]:
    """Run everything; write ``quantizers.json``, ``quantizers.png`` and ``oned_tokens.png`` to ``out_dir``.

    Args:
        data: slices and slabs for both parts; by default the quantizers get :func:`phantom_data` and
            the 1D tokenizers the larger :func:`ctvl.bench.oned.oned_data`.

    Returns:
        one row per (method, setting) and per (1D model, kept tokens); every row has ``method``,
        ``psnr``, ``codebook_usage`` and ``bits_per_voxel``.
    """
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    unknown = [m for m in cfg.methods if m not in METHODS]
    if unknown:
        raise ValueError(f"unknown methods {unknown}; choose from {list(METHODS)}")
    torch.manual_seed(cfg.seed)
    qdata = data if data is not None else phantom_data(cfg)
    settings = [
        ("2d", 2, qdata.train_2d, qdata.test_2d, cfg.batch_2d),
        ("3d", 3, qdata.train_3d, qdata.test_3d, cfg.batch_3d),
    ]
    total = len(cfg.methods) * len(settings) * cfg.steps + 2 * cfg.oned_steps
    rows: list[dict[str, Any]] = []
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=Console(stderr=True), disable=not progress) as bar:
        task = bar.add_task("bench quantizers", total=total)
        tick = lambda: bar.advance(task)  # noqa: E731
        for setting, sd, train, test, batch in settings:
            for method in cfg.methods:
                bar.update(task, description=f"{setting} {method}")
                kind, kwargs = METHODS[method]
                kwargs = dict(kwargs)
                if kind in ("lfq", "group_lfq"):  # anneal the entropy weight over the first third
                    kwargs["entropy_anneal_steps"] = max(1, cfg.steps // 3)
                if kind == "msrvq":
                    kwargs["spatial_dims"] = sd
                torch.manual_seed(cfg.seed)
                quantizer = build_quantizer(kind, cfg.latent_dim, **kwargs) if kind else None
                model = TinyAutoencoder(
                    spatial_dims=sd, latent_dim=cfg.latent_dim, width=cfg.width, quantizer=quantizer
                )
                gen = torch.Generator().manual_seed(cfg.seed)
                t0 = time.perf_counter()
                train_autoencoder(model, train, cfg.steps, batch, cfg.lr, gen, tick)
                train_s = time.perf_counter() - t0
                row = {
                    "method": method,
                    "kind": "quantizer",
                    "setting": setting,
                    "spatial_dims": sd,
                    "input_shape": list(test.shape[2:]),
                }
                row.update(evaluate_autoencoder(model, test))
                row.update(
                    bits_per_token=None if quantizer is None else quantizer.bits_per_token,
                    train_s=train_s,
                    steps=cfg.steps,
                )
                rows.append(row)
        if data is None:
            bar.update(task, description=f"1d: render {cfg.oned_train_cases + cfg.oned_test_cases} phantom patients")
        odata = data if data is not None else oned_data(cfg)
        for drop, name in (("nested", "titok-nested-dropout"), ("tail", "titok-tail-drop")):
            bar.update(task, description=f"1d {name}")
            torch.manual_seed(cfg.seed)
            model = TiTok1D(config=oned_config(cfg, drop, odata.test_2d.shape[2:]))
            gen = torch.Generator().manual_seed(cfg.seed)
            t0 = time.perf_counter()
            train_titok(model, odata.train_2d, cfg.oned_steps, cfg.oned_batch, cfg.lr, gen, tick)
            train_s = time.perf_counter() - t0
            if model.quantizer is None:
                raise RuntimeError("TiTok1D was built without a quantizer")
            bits_per_token = model.quantizer.bits_per_token
            with torch.no_grad():
                usage = model.quantizer.usage_stats(model.encode(odata.test_2d)[1])
            for point in error_vs_kept(model, odata.test_2d, [k for k in cfg.kept_tokens if k <= cfg.oned_tokens]):
                rows.append(
                    {
                        "method": name,
                        "kind": "oned",
                        "setting": "2d",
                        "spatial_dims": 2,
                        "input_shape": list(odata.test_2d.shape[2:]),
                        **point,
                        "codebook_usage": usage["codebook_usage"],
                        "perplexity": usage["perplexity"],
                        "bits_per_voxel": point["kept_tokens"] * bits_per_token / odata.test_2d[0].numel(),
                        "train_s": train_s,
                        "steps": cfg.oned_steps,
                    }
                )
    if out_dir is not None:
        write_outputs(rows, cfg, Path(out_dir), qdata.source)
    return rows


def write_outputs(rows: list[dict[str, Any]], cfg: BenchConfig, out_dir: Path, source: str) -> None:
    """``quantizers.json`` (rows + config), ``quantizers.png`` (bars) and ``oned_tokens.png`` (curves)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    payload = {"config": asdict(cfg), "data": source, "results": rows}
    write_json(out_dir / "quantizers.json", payload)
    qrows = [r for r in rows if r["kind"] == "quantizer"]
    methods = list(dict.fromkeys(r["method"] for r in qrows))
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    for ax, key, label in zip(
        axes,
        ("psnr", "codebook_usage", "bits_per_voxel"),
        ("held-out PSNR (dB)", "codebook usage (fraction)", "bits per voxel"),
        strict=True,
    ):
        for j, setting in enumerate(("2d", "3d")):
            by_method = {r["method"]: r[key] for r in qrows if r["setting"] == setting}
            vals = [by_method.get(m) for m in methods]
            xs = np.arange(len(methods)) + (j - 0.5) * 0.38
            ax.bar(xs, [np.nan if v is None else v for v in vals], width=0.38, label=setting)
        ax.set_xticks(np.arange(len(methods)), methods, rotation=30)
        ax.set_title(label)
        if key == "bits_per_voxel":
            ax.set_yscale("log")
        if key == "psnr" and qrows:
            values = [r["psnr"] for r in qrows]
            ax.set_ylim(min(values) - 2, max(values) + 2)
    axes[0].legend(loc="upper right", ncol=2)
    fig.suptitle(f"Tiny conv autoencoder on phantom CT, {cfg.steps} steps per run (continuous = fp32 latent)")
    fig.tight_layout()
    fig.savefig(out_dir / "quantizers.png", dpi=110)
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(6, 4))
    for name in dict.fromkeys(r["method"] for r in rows if r["kind"] == "oned"):
        pts = [r for r in rows if r["method"] == name]
        ax.plot([p["kept_tokens"] for p in pts], [p["mse"] for p in pts], marker="o", label=name)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("kept tokens (prefix length)")
    ax.set_ylabel("held-out MSE")
    ax.set_title("1D tokenizer: error vs kept tokens")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out_dir / "oned_tokens.png", dpi=110)
    plt.close(fig)
