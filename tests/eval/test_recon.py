"""Reconstruction metrics: PSNR/SSIM in the [-1000, 1000] HU window, units, field of view."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ctvl.data.transforms import PreprocessSpec
from ctvl.eval.recon import (
    PSNR_CAP,
    field_of_view,
    mean_metrics,
    recon_metrics,
    recon_metrics_per_volume,
    to_unit,
)
from ctvl.io.volume import Volume


def _vol(seed: int = 0, shape=(5, 24, 24)) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(1, *shape, generator=g) * 2 - 1  # (1, T, H, W) in [-1, 1]


def test_identical_volumes_are_perfect() -> None:
    x = _vol()
    m = recon_metrics(x, x.clone())
    assert m["psnr"] == PSNR_CAP and m["ssim"] == pytest.approx(1.0, abs=1e-6) and m["mae_hu"] == 0.0


def test_psnr_matches_the_window_formula() -> None:
    x = torch.zeros(1, 3, 16, 16)
    y = x + 0.1  # 0.1 model units = 100 HU everywhere; in [0, 1] over the window: 0.05
    m = recon_metrics(x, y)
    assert m["psnr"] == pytest.approx(-10 * math.log10(0.05**2), abs=1e-3)  # 26.02 dB
    assert m["mae_hu"] == pytest.approx(100.0, rel=1e-4)


def test_hu_and_model_units_agree_and_clip_to_the_window() -> None:
    x, y = _vol(1), _vol(2)
    hu_x, hu_y = x * 1000, y * 1000
    a = recon_metrics(x, y)
    b = recon_metrics(hu_x.numpy(), hu_y.numpy(), units="hu")
    assert a == pytest.approx(b, rel=1e-5)
    # values outside the window do not count: bone at 3000 HU equals bone at 1000 HU
    hu_y2 = hu_y.clone()
    hu_y2[hu_y2 > 900] = 3000.0
    hu_x2 = hu_x.clone()
    hu_x2[hu_y > 900] = 1000.0
    c = recon_metrics(hu_x2, hu_y2, units="hu")
    d = recon_metrics(hu_x2.clamp(-1000, 1000), hu_y2.clamp(-1000, 1000), units="hu")
    assert c == pytest.approx(d)
    assert to_unit(torch.tensor([-5000.0, 0.0, 5000.0]), units="hu").tolist() == [0.0, 0.5, 1.0]


def test_per_volume_and_worse_is_lower() -> None:
    x = torch.stack([_vol(3), _vol(4)])  # (2, 1, T, H, W)
    noisy = x + 0.02 * torch.randn_like(x)
    noisier = x + 0.2 * torch.randn_like(x)
    rows = recon_metrics_per_volume(x, noisy)
    assert len(rows) == 2
    good, bad = recon_metrics(x, noisy), recon_metrics(x, noisier)
    assert good["psnr"] > bad["psnr"] + 10 and good["ssim"] > bad["ssim"]
    summary = mean_metrics(rows)
    assert summary["n"] == 2 and summary["psnr"] == pytest.approx(np.mean([r["psnr"] for r in rows]))


def test_small_slices_and_bad_shapes() -> None:
    x = _vol(5, (2, 4, 4))  # SSIM window clamped to the 4 x 4 slice
    assert math.isfinite(recon_metrics(x, x * 0.9)["ssim"])
    with pytest.raises(ValueError):
        recon_metrics(x, _vol(5, (2, 4, 5)))
    with pytest.raises(ValueError):
        to_unit(x, units="kelvin")


def test_field_of_view_excludes_padding() -> None:
    spec = PreprocessSpec.cpu()  # 64 x 64 x 33 at 5.625 x 5.625 x 11.25 mm
    affine = np.diag([3.0, 3.0, 11.25, 1.0])  # 60 x 60 x 5 at 3 mm: 180 mm in-plane, 5 slices
    volume = Volume(np.zeros((60, 60, 5), np.float32), affine)
    t, h, w = field_of_view(spec, volume)
    assert t.stop - t.start == 5 and 30 <= h.stop - h.start <= 34 and 30 <= w.stop - w.start <= 34
    big = Volume(np.zeros((80, 80, 40), np.float32), np.diag([6.0, 6.0, 11.25, 1.0]))  # covers the grid
    assert field_of_view(spec, big) == (slice(0, 33), slice(0, 64), slice(0, 64))
