"""The data and sizes shared by the quantizer and 1D-tokenizer benchmarks.

:class:`BenchConfig` sizes both benchmarks, :data:`METHODS` names the quantizers compared, and
:func:`phantom_data` renders the phantom slices (N, 1, H, W) and slabs (M, 1, T, H, W) both train on.
HU are clipped to [-1000, 1000] and divided by 1000 (range 2 for PSNR).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ctvl.data.phantom import render_case

#: method → (build_quantizer kind, kwargs); all ~10 bits per latent position (msrvq: 8 bits × 1.3
#: indices per position once its coarse scales are counted), latent dim 8 for every method
METHODS: dict[str, tuple[str | None, dict[str, Any]]] = {
    "continuous": (None, {}),
    "fsq": ("fsq", {"levels": (8, 5, 5, 5)}),
    "lfq": ("lfq", {"bits": 10}),
    "group_lfq": ("group_lfq", {"groups": 2, "bits_per_group": 5}),
    "vq": ("vq", {"codebook_size": 1024, "codebook_dim": 8}),
    "msrvq": ("msrvq", {"codebook_size": 256, "scales": (1, 2, 4, 8)}),
}


@dataclass
class BenchConfig:
    """Sizes of the benchmark (defaults: a few minutes on one CPU core)."""

    steps: int = 300  # autoencoder training steps per method and setting
    oned_steps: int = 1500  # 1D tokenizer training steps per drop mode (600 left the curves flat past 2 tokens)
    batch_2d: int = 16  # slices per step
    batch_3d: int = 2  # slabs per step
    lr: float = 2e-3  # learning rate (Adam for the autoencoders, AdamW + warm-up for the 1D tokenizers)
    latent_dim: int = 8  # channels of the autoencoder latent (the quantizers' dim)
    width: int = 32  # width of the autoencoder at 1/2 and 1/4 resolution (half of it at full resolution)
    train_cases: int = 32  # phantom cases (patients) for training
    test_cases: int = 2  # held-out phantom cases
    phantom_shape: tuple[int, int, int] = (
        32,
        32,
        33,
    )  # (I, J, K) rendered per case (K = axial slices)
    slab_depth: int = 8  # T of the 3D slabs (T, I, J); training slabs at every offset, test ones disjoint
    oned_tokens: int = 8  # K latent tokens of the 1D tokenizer (on the 2D slices)
    oned_patch: int = 8  # patch size of the 1D tokenizer
    oned_batch: int = 32  # slices per 1D tokenizer step
    oned_levels: tuple[int, ...] = (
        8,
        5,
        5,
        5,
    )  # FSQ levels of one 1D token (1,000 codes ≈ 10 bits)
    kept_tokens: tuple[int, ...] = (1, 2, 4, 8)  # prefixes evaluated
    oned_train_cases: int = 256  # phantom patients for the 1D tokenizers (32 over-fitted: 1,056 slices)
    oned_test_cases: int = 8  # held-out patients for the 1D curves (264 slices)
    oned_full_share: float = 0.5  # share of draws at full length, both drop modes (pipelines/bench_oned_seeds.py)
    methods: tuple[str, ...] = tuple(METHODS)  # subset of METHODS to run
    seed: int = 0


@dataclass
class BenchData:
    """Normalised tensors in [-1, 1]: slices (N, 1, H, W), volumes (M, 1, T, H, W)."""

    train_2d: torch.Tensor
    test_2d: torch.Tensor
    train_3d: torch.Tensor
    test_3d: torch.Tensor
    source: str = "phantom"
    extra: dict[str, Any] = field(default_factory=dict)


def normalise_hu(hu: np.ndarray | torch.Tensor) -> torch.Tensor:
    """HU → [-1, 1]: clip to [-1000, 1000] and divide by 1000."""
    return torch.as_tensor(np.asarray(hu, dtype=np.float32)).clamp(-1000, 1000) / 1000.0


def phantom_data(cfg: BenchConfig) -> BenchData:
    """Render phantom cases with ``ctvl.data.phantom.render_case``; cut axial slices and slabs.

    Train slabs start at every slice offset; test slabs are disjoint. Layout (1, T, H, W) with
    T = the axial slice axis (the model layout of ctvl), H, W = I, J.
    """
    parts: dict[str, list[list[torch.Tensor]]] = {"train": [[], []], "test": [[], []]}
    depth = cfg.slab_depth
    for i in range(cfg.train_cases + cfg.test_cases):
        name = "train" if i < cfg.train_cases else "test"
        case = render_case(cfg.seed * 1000 + i, shape=cfg.phantom_shape)
        vol = normalise_hu(case.volume.data).permute(2, 0, 1).contiguous()  # (K, I, J) = (T, H, W)
        if vol.shape[0] < depth:
            raise ValueError(f"phantom depth {vol.shape[0]} is smaller than slab_depth {depth}")
        parts[name][0].extend(vol[:, None])  # axial slices (1, H, W)
        step = 1 if name == "train" else depth
        parts[name][1].extend(vol[t : t + depth][None] for t in range(0, vol.shape[0] - depth + 1, step))
    return BenchData(
        torch.stack(parts["train"][0]),
        torch.stack(parts["test"][0]),
        torch.stack(parts["train"][1]),
        torch.stack(parts["test"][1]),
    )


def batches(data: torch.Tensor, size: int) -> list[torch.Tensor]:
    """(N, ...) → consecutive chunks of at most ``size`` along the first axis."""
    return [data[i : i + size] for i in range(0, len(data), size)]
