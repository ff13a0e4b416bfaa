"""Sanity checks on what a reader produced: is it HU, is it CT, is it a regular stack of slices.

Every check returns :class:`Issue` objects instead of raising, so one policy decides what happens:
``read_volume(strict=True)`` raises :class:`~ctvl.errors.InputError` for issues marked ``refuse``
and records the rest as warnings; ``info()`` (``strict=False``) records all of them as warnings.

The HU test looks at the lowest values of the scan. Real CT always holds air (about -1000 HU) or
lung (about -850 HU) unless it was cropped inside the body, so the 0.5th percentile of the voxels
falls in [-1300, -500]. Padding outside the reconstruction circle (-2048, -3024, -2000 ...) would
drag that percentile down, so a constant minimum below -1500 HU that fills part of the grid is
treated as padding and left out, as is the header's ``PixelPaddingValue``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ctvl.errors import InputError

AIR_HU = -1000.0
HU_LOW_RANGE = (-1300.0, -500.0)  # where the lowest 0.5 % of a real CT falls (air or lung)
PADDING_BELOW = -1500.0  # a constant minimum below this is padding, not anatomy
MAX_SAMPLES = 2_000_000  # voxels looked at by the value checks (strided sample of the grid)
CT_SOP_CLASSES = {"1.2.840.10008.5.1.4.1.1.2": "CT Image Storage", "1.2.840.10008.5.1.4.1.1.2.1": "Enhanced CT"}
MR_SOP_CLASSES = {"1.2.840.10008.5.1.4.1.1.4": "MR Image Storage", "1.2.840.10008.5.1.4.1.1.4.1": "Enhanced MR"}


@dataclass(frozen=True)
class Issue:
    """Something wrong or doubtful about an input.

    Attributes:
        message: one human-readable sentence with the values that triggered it.
        refuse: True when ``read_volume(strict=True)`` must refuse the input.
    """

    message: str
    refuse: bool = False


def sample_grid(data: np.ndarray, max_samples: int = MAX_SAMPLES) -> np.ndarray:
    """A strided 1-D sample of at most about ``max_samples`` voxels, without copying the volume.

    Args:
        data: (I, J, K) array (any memory order).
        max_samples: budget of voxels.
    Returns:
        1-D float32 array.
    """
    step = max(1, int(np.ceil((data.size / max_samples) ** (1.0 / data.ndim)))) if data.size else 1
    return np.asarray(data[(slice(None, None, step),) * data.ndim], dtype=np.float32).ravel()


def padding_values(sample: np.ndarray, declared: Sequence[float] = ()) -> list[float]:
    """Values that mark voxels outside the scanned field of view.

    Args:
        sample: 1-D sample of the volume in HU.
        declared: padding values from the header, already in HU (e.g. rescaled PixelPaddingValue).
    Returns:
        The declared values plus the sample minimum when it is a constant below -1500 HU that
        covers at least 0.1 % of the sample.
    """
    pads = [float(v) for v in declared]
    if sample.size:
        low = float(sample.min())
        if low <= PADDING_BELOW and float(np.mean(sample == low)) >= 1e-3:
            pads.append(low)
    return pads


def low_value(sample: np.ndarray, pads: Sequence[float]) -> float | None:
    """0.5th percentile of the non-padding voxels (None when every voxel is padding)."""
    keep = sample[~np.isin(sample, np.asarray(pads, dtype=np.float32))] if pads else sample
    return float(np.percentile(keep, 0.5)) if keep.size else None


def _hu_like(value: float) -> bool:
    return HU_LOW_RANGE[0] <= value <= HU_LOW_RANGE[1]


def check_hu(
    data: np.ndarray,
    *,
    stored_dtype: str,
    slope: float,
    intercept: float,
    declared_padding: Sequence[float] = (),
) -> list[Issue]:
    """Does ``data`` look like Hounsfield units?

    Refuses 8-bit data that was not rescaled (a windowed display image: its 0..255 grey levels are
    not HU), NaN/inf voxels, and data rescaled twice (the lowest voxels sit far below air but would
    be air without the applied intercept: the stored values were already HU). Warns when there is
    no air or lung at all (raw scanner values, MR, or a crop inside the body).

    Args:
        data: (I, J, K) float32 volume after rescale.
        stored_dtype: numpy dtype name of the values as stored in the file.
        slope: rescale slope that was applied.
        intercept: rescale intercept that was applied.
        declared_padding: header padding values in HU.
    Returns:
        The issues found (empty when the data looks like CT in HU).
    """
    if data.size == 0:
        return [Issue("the volume has no voxels", refuse=True)]
    issues: list[Issue] = []
    if np.dtype(stored_dtype).kind == "f":
        bad = sum(int(np.count_nonzero(~np.isfinite(data[..., k]))) for k in range(data.shape[-1]))
        if bad:
            return [Issue(f"{bad} voxels are NaN or infinite; CT in HU is always finite", refuse=True)]
    sample = sample_grid(data)
    lo_all, hi_all = float(sample.min()), float(sample.max())
    if np.dtype(stored_dtype).itemsize == 1 and slope == 1.0 and intercept == 0.0:
        issues.append(
            Issue(
                f"values are 8-bit {stored_dtype} ({lo_all:.0f}..{hi_all:.0f}): a windowed display image, "
                "not HU; export the original CT series instead",
                refuse=True,
            )
        )
        return issues
    low = low_value(sample, padding_values(sample, declared_padding))
    if low is None:
        return [Issue(f"every voxel equals the padding value {lo_all:g}: the volume holds no image", refuse=True)]
    if _hu_like(low):
        return issues
    if low < PADDING_BELOW and intercept <= -500.0 and slope != 0 and _hu_like((low - intercept) / slope):
        once = (low - intercept) / slope
        issues.append(
            Issue(
                f"values look rescaled twice: the lowest voxels sit at {low:.0f} HU, but without the intercept "
                f"{intercept:g} they would be at {once:.0f} (air), so the stored values were already HU; "
                "fix the header or read with rescale='none'",
                refuse=True,
            )
        )
    elif low < HU_LOW_RANGE[0]:
        issues.append(
            Issue(
                f"the lowest voxels sit at {low:.0f}, far below air (-1000 HU): the data may not be in HU "
                "(wrong rescale or unusual padding)"
            )
        )
    else:
        hint = ""
        if intercept == 0.0 and _hu_like(low - 1024.0):
            hint = " they look like raw scanner values missing the -1024 intercept (for CT-RATE pass its metadata row);"
        issues.append(
            Issue(
                f"no air near -1000 HU: the lowest voxels sit at {low:.0f};{hint} the data may not be in HU "
                "(unscaled values, MR, or a crop inside the body)"
            )
        )
    return issues


def check_modality(modality: str | None, sop_class_uid: str | None) -> tuple[str, list[Issue]]:
    """Map a DICOM Modality (and SOP Class when Modality is missing) to "CT", "MR" or "unknown".

    Args:
        modality: the Modality tag value, or None when absent.
        sop_class_uid: the SOP Class UID, or None.
    Returns:
        (modality, issues): non-CT modalities are refused (their intensities are not HU).
    """
    mod = (modality or "").strip().upper()
    sop = (sop_class_uid or "").strip()
    if mod == "CT":
        return "CT", []
    if mod == "MR":
        return "MR", [Issue("DICOM Modality is MR, not CT: MR intensities are not HU", refuse=True)]
    if mod:
        return "unknown", [Issue(f"DICOM Modality is {mod}, not CT: its values are not HU", refuse=True)]
    if sop in CT_SOP_CLASSES:
        return "CT", [Issue(f"Modality tag missing; CT assumed from the SOP Class ({CT_SOP_CLASSES[sop]})")]
    if sop in MR_SOP_CLASSES:
        return "MR", [Issue(f"Modality tag missing and the SOP Class is {MR_SOP_CLASSES[sop]}: not CT", refuse=True)]
    return "unknown", [Issue("Modality tag missing and the SOP Class does not say CT: the values may not be HU")]


def duplicate_slices(data: np.ndarray) -> list[int]:
    """Indices k where slice k+1 holds exactly the same voxels as slice k.

    Real adjacent CT slices never match bit for bit (noise), so a match means a copied slice.

    Args:
        data: (I, J, K) volume.
    Returns:
        Sorted list of k.
    """
    return [k for k in range(data.shape[2] - 1) if np.array_equal(data[:, :, k], data[:, :, k + 1])]


def check_voxels(shape: Sequence[int], max_voxels: int, what: str = "the header") -> Issue | None:
    """Refuse a grid whose float32 copy would exceed ``max_voxels`` voxels (checked before any read).

    Args:
        shape: grid dimensions from the header.
        max_voxels: the cap.
        what: where the shape came from, for the message.
    Returns:
        A refusing issue, or None when the grid fits.
    """
    n = int(np.prod([int(s) for s in shape], dtype=np.float64))
    if n > max_voxels:
        dims = " x ".join(str(int(s)) for s in shape)
        gib = n * 4 / 2**30
        return Issue(
            f"{what} declares a {dims} grid ({n:,} voxels, {gib:.1f} GiB as float32), over the cap of "
            f"{max_voxels:,} voxels; refusing before allocating (raise max_voxels if the scan is real)",
            refuse=True,
        )
    return None


class IssueLog:
    """Applies the read policy to issues as they are found.

    With ``strict=True`` the first refusing issue raises :class:`~ctvl.errors.InputError` at once
    (before any further work); otherwise every issue becomes a warning string, refusals marked.

    Args:
        path: the input, named in errors.
        strict: refuse (True) or only report (False).
    """

    def __init__(self, *, path: str, strict: bool) -> None:
        self.path = path
        self.strict = strict
        self.warnings: list[str] = []
        self.refused = False

    def add(self, issue: Issue | None) -> None:
        """Record ``issue`` (None is ignored); raise when strict and it refuses."""
        if issue is None:
            return
        if issue.refuse:
            if self.strict:
                raise InputError(issue.message, path=self.path)
            self.refused = True
            self.warnings.append(f"{issue.message} (read_volume refuses this input)")
        elif issue.message not in self.warnings:
            self.warnings.append(issue.message)

    def extend(self, issues: Sequence[Issue]) -> None:
        for issue in issues:
            self.add(issue)


def parse_metadata_row(row: object) -> tuple[float, float] | None:
    """(slope, intercept) from a CT-RATE metadata CSV row (a mapping or pandas Series).

    Accepts the CT-RATE column names ``RescaleSlope``/``RescaleIntercept`` (any case) or
    ``slope``/``intercept``. Returns None when ``row`` is None or the values are empty/NaN.
    """
    if row is None:
        return None
    items = {str(k).lower(): v for k, v in dict(row).items()}  # type: ignore[call-overload]
    slope = items.get("rescaleslope", items.get("slope"))
    inter = items.get("rescaleintercept", items.get("intercept"))
    try:
        s, b = float(slope), float(inter)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    if not (np.isfinite(s) and np.isfinite(b)) or s == 0:
        return None
    return s, b


def decide_metadata_rescale(stored: np.ndarray, slope: float, intercept: float) -> tuple[bool, Issue | None]:
    """Should a metadata-row rescale be applied to values whose header carries no scaling?

    Applying is refused (and reported) when the stored values already look like HU while the
    rescaled ones would not: CT-RATE v2 volumes are HU already, and their metadata intercept
    (-1024, or -8192 on some Siemens scans) would push air to about -2000 or -9000 HU.

    Args:
        stored: (I, J, K) values as stored (no scaling applied).
        slope: metadata RescaleSlope.
        intercept: metadata RescaleIntercept.
    Returns:
        (apply, issue): issue explains a skipped rescale (a warning: the data stays correct).
    """
    sample = sample_grid(stored)
    raw_low = low_value(sample, padding_values(sample))
    if raw_low is None:
        return True, None
    new_low = raw_low * slope + intercept
    if _hu_like(raw_low) and not _hu_like(new_low):
        return False, Issue(
            f"metadata rescale (slope {slope:g}, intercept {intercept:g}) not applied: the stored values are already "
            f"HU (lowest voxels at {raw_low:.0f}); applying it would put them at {new_low:.0f} HU (double rescaling)"
        )
    return True, None
