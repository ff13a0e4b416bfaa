"""Planes and windows: turn a :class:`~ctvl.io.Volume` into the three images a radiologist expects.

Display conventions (what every PACS shows, so a person can trust the picture):

* **axial**: radiological convention, seen from the feet: the patient's right on the image's left,
  anterior at the top;
* **coronal**: seen from the front: the patient's right on the image's left, superior at the top;
* **sagittal**: seen from the patient's left: anterior on the image's left, superior at the top.

The stored grid can point anywhere (LPS from DICOM, RAS from many NIfTI writers, slices in any
order), so the volume is first put on its closest canonical RAS+ grid with nibabel's orientation
tools (``io_orientation``/``apply_orientation``: axis permutations and flips only, no resampling; an
oblique scan shows on its nearest orthogonal axes). Pixels are then resized so one display pixel
covers the same millimetres in every plane, which keeps anatomy in proportion when the slice
spacing differs from the in-plane spacing.

Windowing maps HU linearly from ``[level - width / 2, level + width / 2]`` to 0..255 (the usual
window/level of CT viewers).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from ctvl.errors import InputError
from ctvl.io.volume import Volume

Plane = Literal["axial", "coronal", "sagittal"]
PLANES: tuple[Plane, ...] = ("axial", "coronal", "sagittal")

# (level, width) in HU
WINDOW_PRESETS: dict[str, tuple[float, float]] = {
    "lung": (-600.0, 1500.0),
    "mediastinum": (50.0, 350.0),
    "bone": (400.0, 1800.0),
}
DEFAULT_PRESET = "mediastinum"
DISPLAY_SIZE = 512  # pixels along the longest physical extent of the volume

# canonical RAS axis that each plane's slider walks along (x: R, y: A, z: S)
_SLICE_AXIS: dict[str, int] = {"sagittal": 0, "coronal": 1, "axial": 2}


def window_preset(name: str) -> tuple[float, float]:
    """(level, width) in HU of a named preset ("lung", "mediastinum" or "bone")."""
    try:
        return WINDOW_PRESETS[name]
    except KeyError:
        raise InputError(f"unknown window preset {name!r}; choose one of {', '.join(WINDOW_PRESETS)}") from None


def preset_for(level: float, width: float) -> str:
    """Name of the preset with exactly this level and width, or "custom"."""
    for name, (lv, wd) in WINDOW_PRESETS.items():
        if np.isclose(level, lv) and np.isclose(width, wd):
            return name
    return "custom"


def apply_window(hu: np.ndarray, level: float, width: float) -> np.ndarray:
    """Map HU to display grey levels with a linear window.

    Args:
        hu: array of any shape in HU.
        level: window centre (HU).
        width: window width (HU), > 0.
    Returns:
        uint8 array of the same shape: 0 at or below ``level - width / 2``, 255 at or above
        ``level + width / 2``, linear in between (rounded to nearest).
    """
    if not np.isfinite(level) or not np.isfinite(width) or width <= 0:
        raise InputError(f"window width must be a positive number of HU and level finite, got L={level} W={width}")
    low = level - width / 2.0
    scaled = (np.asarray(hu, dtype=np.float32) - np.float32(low)) * np.float32(255.0 / width)
    return np.rint(np.clip(np.nan_to_num(scaled, nan=0.0), 0.0, 255.0)).astype(np.uint8)


@dataclass
class ScanView:
    """A volume on its closest canonical RAS+ grid, ready to cut into planes.

    Attributes:
        data: (X, Y, Z) int16 HU; index grows towards the patient's Right, Anterior, Superior.
        spacing: (sx, sy, sz) mm of ``data``'s axes.
        ornt: (3, 2) nibabel orientation of the stored grid: row ``a`` = (canonical axis, +1/-1)
            of stored axis ``a``.
        stored_shape: (I, J, K) of the stored grid.
    """

    data: np.ndarray
    spacing: tuple[float, float, float]
    ornt: np.ndarray
    stored_shape: tuple[int, int, int]

    @classmethod
    def from_volume(cls, volume: Volume) -> ScanView:
        """Reorient ``volume`` (stored grid (I, J, K), any orientation) to canonical RAS+ (X, Y, Z).

        HU are rounded and clipped to int16 (display only; halves the memory a session holds).
        """
        from nibabel.orientations import apply_orientation, io_orientation

        if volume.data.ndim != 3:
            raise InputError(f"expected a 3D volume, got an array of shape {volume.data.shape}")
        ornt = io_orientation(volume.affine)
        data = apply_orientation(volume.data, ornt)  # (X, Y, Z) view: flips and a transpose
        data = np.rint(np.clip(np.nan_to_num(data, nan=-1024.0), -32768, 32767)).astype(np.int16)
        spacing = [0.0, 0.0, 0.0]
        for axis, (target, _flip) in enumerate(ornt):
            spacing[int(target)] = volume.spacing[axis]
        return cls(np.ascontiguousarray(data), tuple(spacing), ornt, volume.shape)  # type: ignore[arg-type]

    @property
    def shape(self) -> tuple[int, int, int]:
        """Canonical grid (X, Y, Z)."""
        return tuple(int(s) for s in self.data.shape)  # type: ignore[return-value]

    def n_slices(self, plane: Plane) -> int:
        """Number of slices a plane's slider walks through."""
        return self.shape[_SLICE_AXIS[_check_plane(plane)]]

    def plane(self, plane: Plane, index: int) -> np.ndarray:
        """HU image of one slice, oriented for display (module docstring).

        Args:
            plane: "axial" (index along S), "coronal" (along A) or "sagittal" (along R).
            index: slice index in ``0 .. n_slices(plane) - 1``, counted from inferior / posterior /
                left.
        Returns:
            int16 (rows, columns): axial (Y, X), coronal (Z, X), sagittal (Z, Y).
        """
        n = self.n_slices(plane)
        index = int(index)
        if not 0 <= index < n:
            raise InputError(f"{plane} slice {index} is outside 0..{n - 1}")
        d = self.data
        if plane == "axial":
            return d[::-1, ::-1, index].T  # rows: anterior→posterior, cols: right→left
        if plane == "coronal":
            return d[::-1, index, ::-1].T  # rows: superior→inferior, cols: right→left
        return d[index, ::-1, ::-1].T  # sagittal — rows: superior→inferior, cols: anterior→posterior

    def pixel_spacing(self, plane: Plane) -> tuple[float, float]:
        """(row, column) spacing in mm of :meth:`plane`'s image."""
        sx, sy, sz = self.spacing
        return {"axial": (sy, sx), "coronal": (sz, sx), "sagittal": (sz, sy)}[_check_plane(plane)]

    def display_shape(self, plane: Plane, size: int = DISPLAY_SIZE) -> tuple[int, int]:
        """(height, width) in pixels so that every plane shares one mm-per-pixel scale.

        The scale puts the volume's longest physical extent on ``size`` pixels.
        """
        extent = max(n * s for n, s in zip(self.shape, self.spacing))
        mm_per_pixel = extent / float(size)
        rows, cols = self.plane(plane, 0).shape
        row_mm, col_mm = self.pixel_spacing(plane)
        return max(1, round(rows * row_mm / mm_per_pixel)), max(1, round(cols * col_mm / mm_per_pixel))

    def stored_to_slices(self, ijk: tuple[int, int, int]) -> dict[str, int]:
        """Slider positions that show stored voxel ``ijk`` (e.g. a model's evidence location).

        Args:
            ijk: voxel index on the stored grid (I, J, K).
        Returns:
            {"axial": z, "coronal": y, "sagittal": x} canonical slice indices.
        """
        if len(ijk) != 3 or any(not 0 <= int(v) < n for v, n in zip(ijk, self.stored_shape)):
            raise InputError(f"voxel {tuple(ijk)} is outside the scan's grid {self.stored_shape}")
        canonical = [0, 0, 0]
        for axis, (target, flip) in enumerate(self.ornt):
            v = int(ijk[axis])
            canonical[int(target)] = v if flip > 0 else self.stored_shape[axis] - 1 - v
        return {plane: canonical[_SLICE_AXIS[plane]] for plane in PLANES}


def render_plane(
    view: ScanView, plane: Plane, index: int, level: float, width: float, size: int = DISPLAY_SIZE
) -> np.ndarray:
    """Windowed, aspect-correct grey image of one slice.

    Args:
        view: the canonical scan.
        plane: "axial", "coronal" or "sagittal".
        index: slice index (see :meth:`ScanView.plane`).
        level: window centre in HU.
        width: window width in HU.
        size: pixels along the volume's longest physical extent.
    Returns:
        uint8 (H, W) image, resized bilinearly to :meth:`ScanView.display_shape`.
    """
    from PIL import Image

    grey = apply_window(view.plane(plane, index), level, width)  # (rows, cols)
    height, width_px = view.display_shape(plane, size)
    if grey.shape == (height, width_px):
        return grey
    image = Image.fromarray(np.ascontiguousarray(grey))
    return np.asarray(image.resize((width_px, height), Image.Resampling.BILINEAR))


def middle_slices(view: ScanView) -> dict[str, int]:
    """The central slice of each plane (where the viewer opens)."""
    return {plane: view.n_slices(plane) // 2 for plane in PLANES}


def _check_plane(plane: str) -> Plane:
    if plane not in _SLICE_AXIS:
        raise InputError(f"unknown plane {plane!r}; choose one of {', '.join(PLANES)}")
    return plane  # type: ignore[return-value]
