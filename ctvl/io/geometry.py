"""Geometry of a stack of 2-D slices (DICOM) and the two corrections ctvl makes to it.

DICOM gives each slice its own ``ImagePositionPatient`` (IPP) in LPS millimetres and one
``ImageOrientationPatient`` (row and column direction cosines). A voxel grid with one affine only
exists when the slice origins lie on a straight line perpendicular to the slices at equal steps.
Two real-world cases break that:

* **Gantry tilt**: the origins step along a line that is *not* perpendicular to the slices, so
  each slice is shifted in-plane relative to the previous one. ctvl resamples: every slice is
  shifted back in-plane (linear interpolation, ``scipy.ndimage.shift``) onto an orthogonal grid,
  the way dcm2niix does. The exact sheared affine is kept only for ``resample=False`` (``info``).
* **Irregular spacing** (a missing slice, mixed reconstruction increments): ctvl resamples to a
  regular grid at the smallest gap by linear interpolation along the slice normal, but refuses
  when a gap is more than :data:`MAX_GAP_FACTOR` times the smallest one (interpolating across a
  hole that large would invent anatomy).

The z-interpolation is written by hand (a weighted sum of the two bracketing slices) because it
must run slice by slice in float32 to keep memory at one output volume; scipy's interpolators work
in float64 on the whole array.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ctvl.io.checks import Issue

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])  # DICOM LPS world -> nibabel RAS+ world
MAX_GAP_FACTOR = 3.0  # refuse to interpolate across a gap larger than this many smallest gaps
GAP_TOL_MM = 0.02  # slice gaps equal within max(GAP_TOL_MM, 1 % of the smallest gap) are regular
SHEAR_TOL_VOX = 0.05  # slice origins drifting in-plane by more than this (voxels) = sheared stack


@dataclass
class StackGeometry:
    """Where the slices of one DICOM stack lie, sorted along the slice normal.

    Attributes:
        row: (3,) LPS unit vector of increasing column index i (IOP[:3]).
        col: (3,) LPS unit vector of increasing row index j (IOP[3:]).
        normal: (3,) ``row x col``; k increases along it.
        spacing_ij: (2,) pixel size along i and j in mm (PixelSpacing reversed).
        positions: (K, 3) LPS origin of each slice, sorted.
        thickness: slice step used when there is only one slice (SpacingBetweenSlices/SliceThickness).
    """

    row: np.ndarray
    col: np.ndarray
    normal: np.ndarray
    spacing_ij: np.ndarray
    positions: np.ndarray
    thickness: float

    @property
    def z(self) -> np.ndarray:
        """(K,) position of each slice along the normal, mm."""
        return self.positions @ self.normal

    @property
    def gaps(self) -> np.ndarray:
        """(K-1,) distance between consecutive slices along the normal, mm."""
        return np.diff(self.z)

    @property
    def offsets(self) -> np.ndarray:
        """(K, 2) in-plane drift of each slice origin from slice 0's normal line, in voxels (i, j)."""
        d = self.positions - self.positions[0] - np.outer(self.z - self.z[0], self.normal)
        return np.stack([d @ self.row / self.spacing_ij[0], d @ self.col / self.spacing_ij[1]], axis=1)

    @property
    def irregular(self) -> bool:
        gaps = self.gaps
        if gaps.size < 2:
            return False
        return float(gaps.max() - gaps.min()) > max(GAP_TOL_MM, 0.01 * float(gaps.min()))

    @property
    def sheared(self) -> bool:
        return len(self.positions) > 1 and float(np.abs(self.offsets).max()) > SHEAR_TOL_VOX

    @property
    def tilt_deg(self) -> float:
        """Angle between the slice-origin line and the slice normal (the gantry tilt), degrees."""
        if len(self.positions) < 2:
            return 0.0
        step = self.positions[-1] - self.positions[0]
        along = float(step @ self.normal)
        across = float(np.linalg.norm(step - along * self.normal))
        return float(np.degrees(np.arctan2(across, abs(along))))

    def _affine(self, step: np.ndarray) -> np.ndarray:
        a = np.eye(4)
        a[:3, 0] = self.row * self.spacing_ij[0]
        a[:3, 1] = self.col * self.spacing_ij[1]
        a[:3, 2] = step
        a[:3, 3] = self.positions[0]
        return LPS_TO_RAS @ a

    def stored_affine(self) -> np.ndarray:
        """(4, 4) RAS+ affine of the slices as stored: the mean step between origins (SimpleITK's
        convention; exact for a regular stack, sheared for a tilted one)."""
        k = len(self.positions)
        step = (self.positions[-1] - self.positions[0]) / (k - 1) if k > 1 else self.normal * self.thickness
        return self._affine(step)

    def orthogonal_affine(self, dz: float) -> np.ndarray:
        """(4, 4) RAS+ affine of the orthogonal grid with slice spacing ``dz`` starting at slice 0."""
        return self._affine(self.normal * dz)


def describe_positions(z: np.ndarray, limit: int = 8) -> str:
    """Slice positions as a short string: "-99.48, 103.02, 104.27, 105.52" (elided past ``limit``)."""
    vals = [f"{v:.2f}" for v in z]
    if len(vals) > limit:
        vals = vals[: limit // 2] + ["..."] + vals[-limit // 2 :]
    return ", ".join(vals)


def plan_regular_grid(geom: StackGeometry, resampling: bool = True) -> tuple[np.ndarray | None, Issue | None]:
    """Decide how to put an irregular stack on a regular grid.

    Args:
        geom: the stack.
        resampling: whether the caller will resample (only changes the wording of the issue).
    Returns:
        (new_z, issue): ``new_z`` (N,) target positions along the normal when resampling is
        possible (None for a regular stack or a refusal); ``issue`` describes what was found and
        done (refusing when a gap exceeds :data:`MAX_GAP_FACTOR` times the smallest).
    """
    if not geom.irregular:
        return None, None
    z, gaps = geom.z, geom.gaps
    small, big = float(gaps.min()), float(gaps.max())
    where = int(np.argmax(gaps))
    listing = f"slice positions along the normal (mm): {describe_positions(z)}"
    if big > MAX_GAP_FACTOR * small:
        return None, Issue(
            f"irregular slice spacing: a {big:.2f} mm gap between slices at {z[where]:.2f} and {z[where + 1]:.2f} mm "
            f"where the smallest gap is {small:.2f} mm ({listing}); refusing to interpolate across more than "
            f"{MAX_GAP_FACTOR:g}x the smallest gap: remove the stray slices or read one contiguous part"
            + ("" if resampling else "; stored slices kept, the spacing shown is the mean step"),
            refuse=True,
        )
    n = int(np.floor((z[-1] - z[0]) / small + 1e-6)) + 1
    new_z = z[0] + small * np.arange(n)
    done = "resampled" if resampling else "stored slices kept (spacing shown is the mean); read_volume resamples it"
    return new_z, Issue(
        f"irregular slice spacing: gaps from {small:.2f} to {big:.2f} mm ({listing}); {done} to a regular "
        f"{small:.2f} mm grid by linear interpolation along the slice normal ({len(z)} -> {n} slices)"
    )


def deskew(data: np.ndarray, offsets: np.ndarray, fill: float) -> np.ndarray:
    """Undo a gantry-tilt shear: shift every slice back in-plane onto an orthogonal grid.

    Args:
        data: (I, J, K) float32 stored slices.
        offsets: (K, 2) in-plane drift of each slice origin in voxels (i, j), from
            :attr:`StackGeometry.offsets`.
        fill: value for voxels shifted in from outside the stored field of view.
    Returns:
        (I, J, K) float32 volume on the orthogonal grid (voxel (i, j) of slice k now lies on the
        normal line through voxel (i, j) of slice 0).
    """
    from scipy import ndimage

    out = np.empty(data.shape, dtype=np.float32, order="F")  # slices contiguous
    for k in range(data.shape[2]):
        # stored voxel (i, j) lies at orthogonal-grid voxel (i + u, j + v): out[x] = in[x - shift]
        ndimage.shift(data[:, :, k], offsets[k], output=out[:, :, k], order=1, mode="constant", cval=fill)
    return out


def resample_slices(data: np.ndarray, z: np.ndarray, new_z: np.ndarray) -> np.ndarray:
    """Linear interpolation of slices at positions ``z`` onto positions ``new_z``.

    Args:
        data: (I, J, K) float32 slices at increasing positions ``z`` (K,).
        z: (K,) current positions along the normal.
        new_z: (N,) target positions inside [z[0], z[-1]].
    Returns:
        (I, J, N) float32.
    """
    out = np.empty(data.shape[:2] + (len(new_z),), dtype=np.float32, order="F")  # slices contiguous
    hi = np.clip(np.searchsorted(z, new_z, side="left"), 1, len(z) - 1)
    for n, (t, h) in enumerate(zip(new_z, hi)):
        w = float(np.clip((t - z[h - 1]) / (z[h] - z[h - 1]), 0.0, 1.0))
        if w <= 1e-9:
            out[:, :, n] = data[:, :, h - 1]
        elif w >= 1 - 1e-9:
            out[:, :, n] = data[:, :, h]
        else:
            np.multiply(data[:, :, h - 1], 1.0 - w, out=out[:, :, n])
            out[:, :, n] += w * data[:, :, h]
    return out
