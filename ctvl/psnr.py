"""Peak signal-to-noise ratio from a mean squared error: the one PSNR formula of ctvl.

``PSNR = 10 · log10(data_range² / MSE)`` in dB. ctvl's model intensities live in [-1, 1]
(HU / 1000 after clipping to [-1000, 1000], or the preprocessing window mapped to [-1, 1]), so the
default ``data_range`` is 2. Reconstruction evaluation over whole volumes uses MONAI's ``PSNRMetric``
(:mod:`ctvl.eval.recon`); this function serves the places that already hold an MSE (training
metrics, benchmarks, per-slice curves). The MSE is floored at 1e-10 so a perfect match reads 100 dB
(range 1) instead of infinity.
"""

from __future__ import annotations

import math
from typing import overload

import torch

_FLOOR = 1e-10


@overload
def psnr_from_mse(mse: float, *, data_range: float = 2.0) -> float: ...
@overload
def psnr_from_mse(mse: torch.Tensor, *, data_range: float = 2.0) -> torch.Tensor: ...


def psnr_from_mse(mse: float | torch.Tensor, *, data_range: float = 2.0) -> float | torch.Tensor:
    """MSE (a float, or a tensor of any shape, element-wise) → PSNR in dB, same type and shape."""
    if isinstance(mse, torch.Tensor):
        return 10.0 * torch.log10(data_range**2 / mse.clamp_min(_FLOOR))
    return float(10.0 * math.log10(data_range**2 / max(float(mse), _FLOOR)))
