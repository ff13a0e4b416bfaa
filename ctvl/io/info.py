"""``info``: what a CT file or folder holds, as a small JSON-able dict (``ctvl info``)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from ctvl.io.read import DEFAULT_MAX_VOXELS, read_volume


def info(
    path: str | Path,
    *,
    series: str | int | None = None,
    metadata: Mapping[str, object] | None = None,
    max_voxels: int = DEFAULT_MAX_VOXELS,
) -> dict:
    """Describe the stored volume at ``path`` without refusing doubtful data.

    The volume is read with ``strict=False, resample=False``: the grid is the stored one, and what
    :func:`~ctvl.io.read_volume` would refuse or resample is listed in ``warnings`` instead.
    Unreadable, unsafe, 4D or oversized inputs still raise :class:`~ctvl.errors.InputError`.

    Args:
        path: NIfTI, NRRD (.nrrd/.nhdr) or MetaImage (.mha/.mhd) file, DICOM folder, .zip, or single .dcm.
        series: which series of a multi-series folder (1-based number or SeriesInstanceUID).
        metadata: optional CT-RATE metadata row (RescaleSlope, RescaleIntercept).
        max_voxels: refuse grids larger than this.
    Returns:
        dict with ``shape`` ([I, J, K] stored voxel grid), ``spacing`` (mm along I, J, K),
        ``orientation`` (axis codes, e.g. "LPS"), ``hu_range`` ([min, max] after rescale),
        ``modality`` ("CT", "MR" or "unknown"), ``warnings`` (list of str), plus ``path``,
        ``format`` ("nifti"/"nrrd"/"metaimage"/"dicom"), ``manufacturer`` and ``rescale`` (slope, intercept, source).
    """
    volume = read_volume(path, series=series, metadata=metadata, max_voxels=max_voxels, strict=False, resample=False)
    meta = volume.meta
    return {
        "path": str(path),
        "format": meta.extra.get("format", ""),
        "shape": list(volume.shape),
        "spacing": [round(s, 6) for s in volume.spacing],
        "orientation": volume.axcodes,
        "hu_range": [round(float(np.min(volume.data)), 3), round(float(np.max(volume.data)), 3)],
        "modality": meta.modality,
        "manufacturer": meta.manufacturer,
        "rescale": {
            "slope": meta.rescale_slope,
            "intercept": meta.rescale_intercept,
            "source": meta.extra.get("rescale_source", ""),
        },
        "warnings": list(meta.warnings),
    }
