"""The one in-memory CT volume type that every ctvl layer passes around."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


@dataclass
class VolumeMeta:
    """What we know about where a volume came from and how it was read.

    Attributes:
        modality: "CT", "MR" or "unknown".
        manufacturer: scanner manufacturer from the header, or "".
        rescale_slope: slope that was applied to stored values to get HU (1.0 if none).
        rescale_intercept: intercept that was applied (0.0 if none).
        rescale_applied: whether ``data`` already has slope/intercept applied (always True once read).
        source: path the volume was read from ("" for generated volumes).
        warnings: human-readable warnings found while reading (non-HU data, irregular spacing, ...).
        extra: free-form header facts (series description, gantry tilt, slice positions, ...).
    """

    modality: str = "unknown"
    manufacturer: str = ""
    rescale_slope: float = 1.0
    rescale_intercept: float = 0.0
    rescale_applied: bool = True
    source: str = ""
    warnings: list[str] = field(default_factory=list)
    extra: dict = field(default_factory=dict)


@dataclass
class Volume:
    """A CT volume in Hounsfield units on its stored voxel grid.

    Attributes:
        data: float32 array of shape (I, J, K) in HU, indexed like the stored grid (NIfTI order;
            K is the slice axis for axial scans).
        affine: (4, 4) float64 voxel-to-world matrix in RAS+ millimetres (nibabel convention);
            DICOM's LPS geometry is converted on read. Oblique affines are kept exactly.
        meta: provenance and warnings.
    """

    data: np.ndarray
    affine: np.ndarray
    meta: VolumeMeta = field(default_factory=VolumeMeta)

    @property
    def shape(self) -> tuple[int, int, int]:
        """Stored voxel grid (I, J, K)."""
        return tuple(int(s) for s in self.data.shape)  # type: ignore[return-value]

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel size in mm along I, J, K (column norms of the affine)."""
        return tuple(float(v) for v in np.linalg.norm(self.affine[:3, :3], axis=0))  # type: ignore[return-value]

    @property
    def axcodes(self) -> str:
        """Anatomical direction each voxel axis points to, e.g. "LPS" or "RAS" (nibabel aff2axcodes)."""
        import nibabel as nib

        return "".join(nib.aff2axcodes(self.affine))

    @property
    def source(self) -> Path | None:
        return Path(self.meta.source) if self.meta.source else None
