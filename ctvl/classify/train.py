"""Train the feature networks from in-memory model-space tensors (CPU-sized, deterministic for a seed).

Recipe (the one of ``pipelines/probe_tokens.py``, which reached held-out macro-F1 0.585 on raw voxels):
AdamW with a one-cycle learning rate, BCE with positive weights sqrt((1 − p) / p) of the training
prevalence p (clamped to [0.02, 0.98]) so rare labels are not ignored, and augmentation by left-right flips
(the 18 labels carry no side) and small in-plane shifts (±``shift`` voxels, wrapped; the borders are air).
Optionally (``blur > 0``) half of each batch is smoothed with a Gaussian of one random sigma in
[0, ``blur``] voxels (MONAI ``GaussianFilter``): without it a classifier trained on crisp phantom renders
reads sharpness as well as findings (the 16k-phantom CTNet3D falls from macro-F1 0.73 to 0.56 at sigma 0.5 and to
0.16 on tokenizer reconstructions), which makes it a poor judge of decoded or generated volumes.
The slice network sees slices of all three planes, one plane per step in turn, each slice labelled with
its volume's labels (weak labels); slices are drawn from the central ``slice_band`` of each axis, where
the findings lie.

Per-label thresholds (``thresholds="train"``) are chosen on the training volumes only (the F1-maximising
probability on a grid); with ``"fixed"`` every label uses 0.5.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace

import torch
from torch import nn

from ctvl.classify.extract import PLANES, volume_logits
from ctvl.classify.nets import SLICE_CONFIG, CTNet3D, FeatureNetConfig, SliceNet2D
from ctvl.errors import ConfigError, InputError


@dataclass
class TrainResult:
    """A trained feature network and how it was trained.

    Attributes:
        net: the network, in eval mode.
        thresholds: (18,) probability thresholds (0.5 each unless chosen on the training set).
        losses: mean training loss of each epoch.
        seconds: wall time of the training (threshold selection included).
        facts: the hyper-parameters (JSON-able), for the bundle.
    """

    net: nn.Module
    thresholds: torch.Tensor
    losses: list[float] = field(default_factory=list)
    seconds: float = 0.0
    facts: dict = field(default_factory=dict)


def _check(x: torch.Tensor, y: torch.Tensor) -> None:
    if x.ndim != 5 or x.shape[1] != 1:
        raise InputError(f"training volumes must be (N, 1, T, H, W), got {tuple(x.shape)}")
    if y.ndim != 2 or y.shape[0] != x.shape[0]:
        raise InputError(f"labels must be (N, L) with N = {x.shape[0]}, got {tuple(y.shape)}")
    if len(x) < 2:
        raise InputError("need at least 2 training volumes")


def pos_weight(y: torch.Tensor) -> torch.Tensor:
    """sqrt((1 − p) / p) per label from the prevalence p of ``y`` (N, L), p clamped to [0.02, 0.98]."""
    p = y.float().mean(0).clamp(0.02, 0.98)
    return ((1 - p) / p).sqrt()


def _augment(x: torch.Tensor, gen: torch.Generator, shift: int, flip: bool = True) -> torch.Tensor:
    """Per-sample left-right flip (last axis = W) and one random in-plane shift for the batch."""
    flips = torch.rand(len(x), generator=gen) < 0.5
    if flip:
        x = torch.where(flips.view(-1, *[1] * (x.ndim - 1)), x.flip(-1), x)
    if shift > 0:
        dh, dw = (int(v) for v in torch.randint(-shift, shift + 1, (2,), generator=gen))
        x = torch.roll(x, (dh, dw), (-2, -1))
    return x


def _blur_half(x: torch.Tensor, gen: torch.Generator, blur: float) -> torch.Tensor:
    """A random half of the batch (B, 1, T, H, W) smoothed with one Gaussian of sigma ~ U(0, ``blur``) voxels."""
    from monai.networks.layers import GaussianFilter

    sigma = float(torch.rand((), generator=gen)) * blur
    pick = torch.rand(len(x), generator=gen) < 0.5
    if sigma < 0.05 or not bool(pick.any()):
        return x
    smooth = GaussianFilter(spatial_dims=3, sigma=sigma, truncated=3.0)(x[pick])
    out = x.clone()
    out[pick] = smooth
    return out


def _optimiser(
    net: nn.Module, lr: float, steps: int
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    opt = torch.optim.AdamW(net.parameters(), lr, weight_decay=1e-4)
    return opt, torch.optim.lr_scheduler.OneCycleLR(opt, lr, total_steps=max(1, steps), pct_start=0.1)


def _progress(what: str, total: int, enabled: bool):
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    bar = Progress(
        TextColumn(what),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]:.4f}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        disable=not enabled,
    )
    return bar, bar.add_task("", total=total, loss=float("nan"))


def choose_thresholds(probs: torch.Tensor, y: torch.Tensor, grid: int = 19) -> torch.Tensor:
    """Per label, the probability threshold on {0.05, 0.10, ..., 0.95} with the best F1 of ``probs`` vs ``y``.

    Args:
        probs: (N, L) probabilities; y: (N, L) 0/1 targets. Ties go to the threshold nearest 0.5.

    Returns:
        (L,) thresholds.
    """
    grid_t = torch.linspace(0.05, 0.95, grid)
    order = torch.argsort((grid_t - 0.5).abs(), stable=True)  # prefer thresholds near 0.5 on ties
    y = y.bool()
    best = torch.full((y.shape[1],), 0.5)
    for j in range(y.shape[1]):
        scores = []
        for t in grid_t[order]:
            pred = probs[:, j] >= t
            tp = (pred & y[:, j]).sum().item()
            denom = pred.sum().item() + y[:, j].sum().item()
            scores.append(2 * tp / denom if denom else 0.0)
        best[j] = grid_t[order][int(torch.tensor(scores).argmax())]
    return best


def train_classifier(
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    config: FeatureNetConfig | None = None,
    epochs: int = 10,
    batch_size: int = 16,
    lr: float = 1e-3,
    shift: int = 2,
    blur: float = 0.0,
    thresholds: str = "train",
    seed: int = 0,
    progress: bool = False,
) -> TrainResult:
    """Train a :class:`CTNet3D` on model-space volumes.

    Args:
        x: (N, 1, T, H, W) volumes in [-1, 1] (float16 or float32; batches are cast to float32).
        y: (N, 18) 0/1 labels.
        config: net config (default :class:`FeatureNetConfig`, the token probe's CNN).
        epochs, batch_size, lr: optimisation (AdamW, one-cycle peak ``lr``).
        shift: maximum in-plane shift of the augmentation, voxels (0 = flips only).
        blur: maximum Gaussian sigma (voxels) of the blur augmentation of half of each batch (0 = none).
        thresholds: "fixed" (0.5 each) or "train" (chosen per label on the training volumes).
        seed: seeds the initialisation, the order, dropout and the augmentation.
        progress: rich progress bar on stderr.

    Returns:
        :class:`TrainResult` with the net in eval mode.
    """
    _check(x, y)
    if blur < 0:
        raise ConfigError(f"blur must be >= 0 voxels, got {blur}")
    if thresholds not in ("fixed", "train"):
        raise ConfigError(f"thresholds must be 'fixed' or 'train', got {thresholds!r}")
    began = time.perf_counter()
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    net = CTNet3D(config=config or FeatureNetConfig(num_labels=y.shape[1]))
    net = net.to(memory_format=torch.channels_last_3d)  # oneDNN's fast layout on CPU (~1.4x here)
    y = y.float()
    loss_fn = nn.BCEWithLogitsLoss(pos_weight=pos_weight(y))
    per_epoch = max(1, len(x) // batch_size)
    opt, sched = _optimiser(net, lr, epochs * per_epoch)
    losses: list[float] = []
    bar, task = _progress("CTNet3D", epochs * per_epoch, progress)
    with bar:
        for _ in range(epochs):
            net.train()
            perm = torch.randperm(len(x), generator=gen)
            total = 0.0
            for i in range(per_epoch):
                idx = perm[i * batch_size : (i + 1) * batch_size]
                xb = _augment(x[idx].float(), gen, shift)
                if blur > 0:
                    xb = _blur_half(xb, gen, blur)
                xb = xb.contiguous(memory_format=torch.channels_last_3d)
                loss = loss_fn(net(xb), y[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                total += loss.item()
                bar.update(task, advance=1, loss=loss.item())
            losses.append(total / per_epoch)
    net = net.to(memory_format=torch.contiguous_format).eval()
    thr = torch.full((y.shape[1],), 0.5)
    if thresholds == "train":
        thr = choose_thresholds(torch.sigmoid(volume_logits(net, x)), y)
    facts = {
        "epochs": epochs,
        "batch_size": batch_size,
        "lr": lr,
        "shift": shift,
        "blur": blur,
        "seed": seed,
        "thresholds": thresholds,
        "n_train": len(x),
        "optimiser": "AdamW wd 1e-4, one-cycle",
        "loss": "BCE, pos_weight sqrt((1-p)/p)",
        "augmentation": "left-right flip, in-plane shift"
        + (f", Gaussian blur of half the batch, sigma <= {blur}" if blur else ""),
    }
    return TrainResult(net, thr, losses, time.perf_counter() - began, facts)


def _slice_batch(x: torch.Tensor, idx: torch.Tensor, plane: str, gen: torch.Generator, band: float) -> torch.Tensor:
    """One random slice of ``plane`` from each volume ``x[idx]``, drawn from the central ``band`` of the axis."""
    axis = {"axial": 2, "coronal": 3, "sagittal": 4}[plane]
    size = x.shape[axis]
    lo = int(round(size * (1 - band) / 2))
    hi = max(lo + 1, size - lo)
    pos = torch.randint(lo, hi, (len(idx),), generator=gen)
    vols = x[idx]  # (B, 1, T, H, W)
    picked = vols.movedim(axis, 1)[torch.arange(len(idx)), pos]  # (B, 1, a, b)
    return picked.float()


def train_slice_net(
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    config: FeatureNetConfig | None = None,
    epochs: int = 6,
    batch_size: int = 64,
    lr: float = 2e-3,
    slice_band: float = 0.7,
    seed: int = 0,
    progress: bool = False,
) -> TrainResult:
    """Train one :class:`SliceNet2D` on slices of all three planes, weakly labelled with the volume's labels.

    Args:
        x: (N, 1, T, H, W) volumes in [-1, 1].
        y: (N, 18) 0/1 volume labels.
        config: net config (default :data:`~ctvl.classify.nets.SLICE_CONFIG`).
        epochs: passes; each pass draws ``3 · ceil(N / batch_size)`` batches (one slice per volume per plane).
        batch_size: slices per step (from as many different volumes).
        lr: AdamW one-cycle peak.
        slice_band: central share of each axis slices are drawn from (findings lie there).
        seed: seeds everything.
        progress: rich progress bar.

    Returns:
        :class:`TrainResult` (thresholds 0.5: the slice net is used for features only).
    """
    _check(x, y)
    if not 0 < slice_band <= 1:
        raise ConfigError(f"slice_band must be in (0, 1], got {slice_band}")
    began = time.perf_counter()
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    net = SliceNet2D(config=config or replace(SLICE_CONFIG, num_labels=y.shape[1]))
    net = net.to(memory_format=torch.channels_last)
    y = y.float()
    loss_fn = nn.BCEWithLogitsLoss(pos_weight=pos_weight(y))
    per_plane = max(1, -(-len(x) // batch_size))
    steps = epochs * per_plane * len(PLANES)
    opt, sched = _optimiser(net, lr, steps)
    losses: list[float] = []
    bar, task = _progress("SliceNet2D", steps, progress)
    with bar:
        for _ in range(epochs):
            net.train()
            perms = [torch.randperm(len(x), generator=gen) for _ in PLANES]
            total = 0.0
            for i in range(per_plane):
                for plane, perm in zip(PLANES, perms):
                    idx = perm[i * batch_size : (i + 1) * batch_size]
                    if len(idx) < 2:  # BatchNorm needs two samples
                        idx = perm[:2]
                    # sagittal slices have no W axis: a left-right flip of the volume only reorders them
                    xb = _augment(_slice_batch(x, idx, plane, gen, slice_band), gen, 0, plane != "sagittal")
                    xb = xb.contiguous(memory_format=torch.channels_last)
                    loss = loss_fn(net(xb), y[idx])
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    sched.step()
                    total += loss.item()
                    bar.update(task, advance=1, loss=loss.item())
            losses.append(total / (per_plane * len(PLANES)))
    net = net.to(memory_format=torch.contiguous_format).eval()
    facts = {
        "epochs": epochs,
        "batch_size": batch_size,
        "lr": lr,
        "slice_band": slice_band,
        "seed": seed,
        "n_train": len(x),
        "planes": list(PLANES),
        "optimiser": "AdamW wd 1e-4, one-cycle",
        "loss": "BCE, pos_weight sqrt((1-p)/p), volume labels as weak slice labels",
        "augmentation": "left-right flip of axial and coronal slices",
    }
    return TrainResult(net, torch.full((y.shape[1],), 0.5), losses, time.perf_counter() - began, facts)
