"""Batched, memory-bounded feature extraction and label prediction with the feature networks.

Every function runs the net in eval mode under ``torch.no_grad`` and feeds it at most ``batch`` inputs at a
time (float16 inputs are cast to float32 one batch at a time), so a set of thousands of volumes or hundreds
of thousands of slices never sits in memory as float32 activations.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch
from torch import nn

PLANES: tuple[str, ...] = ("axial", "coronal", "sagittal")


def _check_volumes(x: torch.Tensor) -> None:
    if x.ndim != 5 or x.shape[1] != 1:
        raise ValueError(f"expected model-space volumes (N, 1, T, H, W), got {tuple(x.shape)}")


def plane_slices(x: torch.Tensor, plane: str) -> torch.Tensor:
    """All slices of one plane of model-space volumes.

    Args:
        x: (N, 1, T, H, W) volumes (T superior, H posterior, W patient left).
        plane: "axial" (fixed T), "coronal" (fixed H) or "sagittal" (fixed W).

    Returns:
        axial (N·T, 1, H, W); coronal (N·H, 1, T, W); sagittal (N·W, 1, T, H), volume-major order
        (the slices of volume 0 first).
    """
    _check_volumes(x)
    n, _, t, h, w = x.shape
    if plane == "axial":
        return x.permute(0, 2, 1, 3, 4).reshape(n * t, 1, h, w)
    if plane == "coronal":
        return x.permute(0, 3, 1, 2, 4).reshape(n * h, 1, t, w)
    if plane == "sagittal":
        return x.permute(0, 4, 1, 2, 3).reshape(n * w, 1, t, h)
    raise ValueError(f"plane must be one of {PLANES}, got {plane!r}")


def _in_batches(
    fn: Callable[[torch.Tensor], torch.Tensor], chunks: Iterator[torch.Tensor], net: nn.Module
) -> torch.Tensor:
    device = next(net.parameters()).device
    was_training = net.training
    net.eval()
    out = []
    try:
        with torch.no_grad():
            for chunk in chunks:
                out.append(fn(chunk.to(device=device, dtype=torch.float32)).float().cpu())
    finally:
        net.train(was_training)
    return torch.cat(out) if out else torch.empty(0)


def volume_features(net: nn.Module, x: torch.Tensor, batch: int = 16) -> torch.Tensor:
    """CTNet3D penultimate features of volumes: (N, 1, T, H, W) -> (N, F) float32."""
    _check_volumes(x)
    return _in_batches(net.features, (x[i : i + batch] for i in range(0, len(x), batch)), net)


def volume_logits(net: nn.Module, x: torch.Tensor, batch: int = 16) -> torch.Tensor:
    """CTNet3D label logits of volumes: (N, 1, T, H, W) -> (N, 18) float32."""
    _check_volumes(x)
    return _in_batches(net, (x[i : i + batch] for i in range(0, len(x), batch)), net)


def slice_features(net: nn.Module, x: torch.Tensor, plane: str, batch: int = 512) -> torch.Tensor:
    """SliceNet2D features of every slice of one plane: (N, 1, T, H, W) -> (N·S, F) float32.

    Volumes are sliced a few at a time, so about ``batch`` slices are in flight at once.
    """
    _check_volumes(x)
    per_volume = {"axial": x.shape[2], "coronal": x.shape[3], "sagittal": x.shape[4]}.get(plane)
    if per_volume is None:
        raise ValueError(f"plane must be one of {PLANES}, got {plane!r}")
    vols = max(1, batch // per_volume)
    return _in_batches(net.features, (plane_slices(x[i : i + vols], plane) for i in range(0, len(x), vols)), net)


def predict_labels(
    net: nn.Module, x: torch.Tensor, thresholds: torch.Tensor | None = None, batch: int = 16
) -> torch.Tensor:
    """0/1 labels of volumes: sigmoid(logits) >= threshold per label (0.5 when ``thresholds`` is None).

    Args:
        net: a CTNet3D.
        x: (N, 1, T, H, W) model-space volumes.
        thresholds: (18,) probability thresholds, e.g. ``FeatureNets.thresholds``.
        batch: volumes per forward pass.

    Returns:
        (N, 18) int64 0/1.
    """
    probs = torch.sigmoid(volume_logits(net, x, batch))
    thr = torch.full((probs.shape[1],), 0.5) if thresholds is None else thresholds.float().cpu()
    return (probs >= thr).long()
