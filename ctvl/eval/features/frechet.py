"""Fréchet distances between sets of CT volumes on the feature networks' features.

- :func:`frechet_distance`: between two feature sets, with MONAI's ``FIDMetric`` (Gaussian fit of each set,
  ``|mu_a - mu_b|² + Tr(Σa + Σb − 2 (Σa Σb)^½)``).
- :func:`fd_3d`: on :class:`~ctvl.classify.nets.CTNet3D` penultimate features of whole volumes
  (GenerateCT / BTB3D's "CT-Net" FVD-style distance).
- :func:`fid_2p5d`: the MAISI / VLM3D 2.5D FID: every axial, coronal and sagittal slice of each volume
  through one :class:`~ctvl.classify.nets.SliceNet2D`, a Fréchet distance per plane, and their mean.

Values depend on the feature network and on the set sizes (the estimate is biased upward for small sets):
compare only numbers computed with the same bundle and similar set sizes, next to the real-vs-real floor
the bundle's card reports.
"""

from __future__ import annotations

import warnings
from typing import Protocol

import torch
from torch import nn

from ctvl.classify.extract import PLANES, slice_features, volume_features
from ctvl.errors import InputError


class _HasNets(Protocol):
    ctnet3d: nn.Module
    slicenet2d: nn.Module


def frechet_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """Fréchet distance between two feature sets (MONAI ``FIDMetric``, float64).

    Args:
        a: (N, F) features of one set; b: (M, F) of the other; N, M >= 2.

    Returns:
        The distance (>= 0 up to rounding; 0 for identical sets).

    Raises:
        InputError: not 2D, different F, or fewer than two rows.
    """
    from monai.metrics import FIDMetric

    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise InputError(
            f"Fréchet distance needs (N, F) and (M, F) features, got {tuple(a.shape)} and {tuple(b.shape)}"
        )
    if len(a) < 2 or len(b) < 2:
        raise InputError(f"Fréchet distance needs at least 2 samples per set, got {len(a)} and {len(b)}")
    from scipy.linalg import LinAlgWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # MONAI passes scipy's deprecated `disp` to sqrtm
        # ReLU features that are zero on every input make the covariance singular; sqrtm still returns the
        # square root of the (positive semi-definite) product, and the distance is exact on the other features
        warnings.simplefilter("ignore", LinAlgWarning)
        value = FIDMetric()(a.detach().double().cpu(), b.detach().double().cpu())
    return max(0.0, float(value))  # sqrtm rounding can leave a tiny negative value for identical sets


def _check_pair(x: torch.Tensor, y: torch.Tensor) -> None:
    for name, t in (("x", x), ("y", y)):
        if t.ndim != 5 or t.shape[1] != 1:
            raise InputError(f"{name} must be model-space volumes (N, 1, T, H, W), got {tuple(t.shape)}")
    if x.shape[2:] != y.shape[2:]:
        raise InputError(f"volume shapes differ: {tuple(x.shape[2:])} vs {tuple(y.shape[2:])}")


def fd_3d(nets: _HasNets, x: torch.Tensor, y: torch.Tensor, batch: int = 16) -> float:
    """Fréchet distance of CTNet3D features between two sets of volumes.

    Args:
        nets: loaded feature networks (:func:`~ctvl.eval.features.bundle.load_feature_nets`).
        x: (N, 1, T, H, W) e.g. generated volumes; y: (M, 1, T, H, W) e.g. real held-out volumes.
        batch: volumes per forward pass.
    """
    _check_pair(x, y)
    return frechet_distance(volume_features(nets.ctnet3d, x, batch), volume_features(nets.ctnet3d, y, batch))


def fid_2p5d(nets: _HasNets, x: torch.Tensor, y: torch.Tensor, batch: int = 512) -> dict[str, float]:
    """2.5D FID: SliceNet2D features of all slices of each plane, one Fréchet distance per plane.

    Args:
        nets: loaded feature networks.
        x: (N, 1, T, H, W); y: (M, 1, T, H, W), same T, H, W.
        batch: slices per forward pass.

    Returns:
        ``{"axial", "coronal", "sagittal", "mean"}`` (mean = the average of the three planes).
    """
    _check_pair(x, y)
    out = {
        p: frechet_distance(slice_features(nets.slicenet2d, x, p, batch), slice_features(nets.slicenet2d, y, p, batch))
        for p in PLANES
    }
    out["mean"] = sum(out[p] for p in PLANES) / len(PLANES)
    return out
