"""Reconstruction metrics for CT tokenizers: PSNR and SSIM in the [-1000, 1000] HU window (MONAI metrics).

Both volumes are first brought to the same window scale: HU values are clipped to ``window`` and mapped to
[0, 1]; model-space tensors (``units="model"``, values in ``out_range`` = the window after preprocessing,
e.g. [-1, 1]) are mapped to [0, 1] the same way. Then

* PSNR = MONAI ``PSNRMetric(max_val=1)`` over each whole volume (one MSE per volume), capped at
  :data:`PSNR_CAP` dB for identical volumes (an infinite PSNR breaks JSON and means);
* SSIM = MONAI ``SSIMMetric(spatial_dims=2, data_range=1)`` per axial slice (Gaussian window 7, clamped to
  small slices), averaged over the volume's slices. Per-slice SSIM treats a 3D tokenizer and a slice-wise
  one alike (a 3D SSIM window would also span 7 slices of 11 mm on the CPU grid);
* MAE in HU over the window (mean absolute error x window width).

Example::

    m = recon_metrics(x, recon)                       # model space, (1, T, H, W) in [-1, 1]
    m = recon_metrics(vol.data, back.data, units="hu")  # (I, J, K) HU arrays
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import torch

from ctvl.io.volume import Volume

WINDOW = (-1000.0, 1000.0)  # HU window of the metrics (the paper's clip range)
PSNR_CAP = 100.0  # dB reported for identical volumes


def to_unit(
    x: torch.Tensor | np.ndarray,
    units: str = "model",
    window: Sequence[float] = WINDOW,
    out_range: Sequence[float] = (-1.0, 1.0),
) -> torch.Tensor:
    """Map a volume to [0, 1] over the HU window.

    Args:
        x: any shape; HU (``units="hu"``) or model values (``units="model"``, ``out_range`` = the window).
        units: ``"hu"`` or ``"model"``.
        window: HU window (low, high).
        out_range: model values the window maps to.

    Returns:
        float32 tensor of the same shape, clipped to [0, 1].
    """
    t = torch.as_tensor(np.asarray(x) if isinstance(x, np.ndarray) else x).detach().to("cpu", torch.float32)
    if units == "hu":
        lo, hi = float(window[0]), float(window[1])
    elif units == "model":
        lo, hi = float(out_range[0]), float(out_range[1])
    else:
        raise ValueError(f"units must be 'hu' or 'model', got {units!r}")
    return ((t - lo) / (hi - lo)).clamp(0.0, 1.0)


def _as_batch(x: torch.Tensor) -> torch.Tensor:
    """(T, H, W) | (1, T, H, W) | (B, 1, T, H, W) -> (B, T, H, W)."""
    if x.dim() == 3:
        return x[None]
    if x.dim() == 4:
        return x
    if x.dim() == 5 and x.shape[1] == 1:
        return x[:, 0]
    raise ValueError(f"expected (T, H, W), (1, T, H, W) or (B, 1, T, H, W), got {tuple(x.shape)}")


def recon_metrics(
    target: torch.Tensor | np.ndarray,
    recon: torch.Tensor | np.ndarray,
    units: str = "model",
    window: Sequence[float] = WINDOW,
    out_range: Sequence[float] = (-1.0, 1.0),
    win_size: int = 7,
) -> dict[str, float]:
    """PSNR (dB), SSIM and MAE (HU) of a reconstruction, in the HU window.

    Args:
        target, recon: same shape; (T, H, W), (1, T, H, W) or (B, 1, T, H, W); the last two axes are the
            slice plane (pass a ``Volume.data`` (I, J, K) transposed to (K, J, I) for axial slices).
        units: ``"model"`` (values in ``out_range``) or ``"hu"``.
        window: HU window.
        out_range: model values of the window.
        win_size: SSIM Gaussian window (clamped to the slice size, kept odd).

    Returns:
        ``{"psnr", "ssim", "mae_hu"}`` averaged over the batch.
    """
    per = recon_metrics_per_volume(target, recon, units, window, out_range, win_size)
    return {k: float(np.mean([m[k] for m in per])) for k in ("psnr", "ssim", "mae_hu")}


def recon_metrics_per_volume(
    target: torch.Tensor | np.ndarray,
    recon: torch.Tensor | np.ndarray,
    units: str = "model",
    window: Sequence[float] = WINDOW,
    out_range: Sequence[float] = (-1.0, 1.0),
    win_size: int = 7,
) -> list[dict[str, float]]:
    """Like :func:`recon_metrics`, one dict per volume of the batch."""
    from monai.metrics import PSNRMetric, SSIMMetric

    a = _as_batch(to_unit(target, units, window, out_range))  # (B, T, H, W) in [0, 1]
    b = _as_batch(to_unit(recon, units, window, out_range))
    if a.shape != b.shape:
        raise ValueError(f"target {tuple(a.shape)} and reconstruction {tuple(b.shape)} differ in shape")
    n, t, h, w = a.shape
    psnr = PSNRMetric(max_val=1.0, reduction="none")(b.reshape(n, 1, -1), a.reshape(n, 1, -1))  # (B, 1)
    psnr = torch.nan_to_num(psnr, posinf=PSNR_CAP).clamp(max=PSNR_CAP)
    win = max(1, min(win_size, h, w))
    win -= 1 - win % 2  # odd
    ssim = SSIMMetric(spatial_dims=2, data_range=1.0, win_size=win, reduction="none")(
        b.reshape(n * t, 1, h, w), a.reshape(n * t, 1, h, w)
    ).reshape(n, t)  # (B, T) per slice
    mae = (a - b).abs().flatten(1).mean(1) * float(window[1] - window[0])  # (B,) HU
    return [{"psnr": float(psnr[i]), "ssim": float(ssim[i].mean()), "mae_hu": float(mae[i])} for i in range(n)]


def mean_metrics(rows: Iterable[Mapping[str, float]], keys: Sequence[str] = ("psnr", "ssim", "mae_hu")) -> dict:
    """Mean and standard deviation of each metric over ``rows``; ``{"n": 0}`` for no rows."""
    rows = list(rows)
    out: dict[str, float] = {"n": len(rows)}
    for k in keys:
        vals = np.array([r[k] for r in rows if k in r], dtype=np.float64)
        if vals.size:
            out[k] = float(vals.mean())
            out[f"{k}_std"] = float(vals.std())
    return out


def field_of_view(spec: object, volume: object) -> tuple[slice, slice, slice]:
    """The (T, H, W) box of the model grid that holds scanned voxels (not padding), for a volume and a spec.

    A volume of the same geometry filled with the window's centre is preprocessed with ``spec``: voxels the
    scan covers come out at the centre value, padding at the pad value. Metrics over this box compare a
    tokenizer on what the scan holds, not on padding (a 30-slice slab padded to 33 x 11 mm slices).

    Args:
        spec: a :class:`ctvl.data.transforms.PreprocessSpec`.
        volume: the :class:`ctvl.io.Volume` (only its shape and affine are used).

    Returns:
        Slices along (T, H, W) of the model tensor (1, T, H, W); the whole grid if nothing is padded.
    """

    centre = 0.5 * (spec.window[0] + spec.window[1])  # type: ignore[attr-defined]
    probe = Volume(np.full(volume.shape, centre, np.float32), np.asarray(volume.affine))  # type: ignore[attr-defined]
    x = spec.apply(probe)[0]  # type: ignore[attr-defined]  # (T, H, W)
    mid = 0.5 * (spec.out_range[0] + spec.out_range[1])  # type: ignore[attr-defined]
    inside = (x - mid).abs() < 0.25 * abs(spec.out_range[1] - spec.out_range[0])  # type: ignore[attr-defined]
    if not bool(inside.any()):
        return slice(None), slice(None), slice(None)
    box = []
    for axis in range(3):
        other = tuple(a for a in range(3) if a != axis)
        idx = torch.nonzero(inside.any(dim=other[1]).any(dim=other[0])).flatten()
        box.append(slice(int(idx[0]), int(idx[-1]) + 1))
    return box[0], box[1], box[2]
