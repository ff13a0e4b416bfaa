"""Analytic shapes in millimetre world coordinates, as signed distance functions (SDFs).

A phantom patient is a list of these shapes; :mod:`ctvl.data.phantom.raster` turns them into voxels
at any grid. Every shape answers two questions:

* ``sdf(x, y, z, h)``: approximate signed distance in mm (negative inside) at world points given as
  broadcastable arrays (e.g. ``x`` of shape (I, 1, 1), ``y`` (1, J, 1), ``z`` (1, 1, K), or three
  equal-length 1-D point lists). ``h`` is the voxel size of the grid being drawn; only "blooming"
  shapes (metal, calcium) use it, to stay at least a fraction of a voxel thick as they do on real CT.
* ``bbox()``: world-space bounds ``(lo, hi)``, each (3,), so the rasteriser only evaluates the shape
  where it can be (±inf for unbounded shapes).

Combinations (union, intersection, offset, Voronoi walls) live in :mod:`ctvl.data.phantom.csg`.

Written by hand because no maintained library offers vectorised numpy SDFs with bounding boxes and
partial-volume rasterisation; the formulas are the standard ones (segment distance, ellipsoid bound
``k0 (k0 - 1) / k1``, torus, rounded box, Voronoi-border distance ``(d2 - d1) / 2``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

INF = np.inf
FAR = 25.0  # mm; distance reported for points far outside a child's bounding box


class Prim:
    """Base class: a shape with a signed distance and a bounding box."""

    expensive: bool = False  # Intersect evaluates expensive children only near the others' surfaces

    def sdf(self, x, y, z, h: float) -> np.ndarray:  # pragma: no cover - interface
        raise NotImplementedError

    def bbox(self) -> tuple[np.ndarray, np.ndarray]:
        return np.full(3, -INF), np.full(3, INF)


def _box(lo: Sequence[float], hi: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    return np.asarray(lo, dtype=float), np.asarray(hi, dtype=float)


class Ellipsoid(Prim):
    """Ellipsoid with semi-axes ``radii`` along the columns of rotation ``rot`` (world ← local).

    Args:
        center: (3,) mm.
        radii: (3,) semi-axes in mm.
        rot: (3, 3) rotation whose columns are the local axes in world coordinates (identity if None).
        bloom: minimum semi-axis as a fraction of the voxel size (0 = none).
    """

    def __init__(self, *, center, radii, rot=None, bloom: float = 0.0) -> None:
        self.c = np.asarray(center, dtype=float)
        self.r = np.asarray(radii, dtype=float)
        self.rot = np.eye(3) if rot is None else np.asarray(rot, dtype=float)
        self.bloom = bloom

    def sdf(self, x, y, z, h):
        r = [max(float(v), self.bloom * h) for v in self.r]
        cx, cy, cz = (float(v) for v in self.c)
        rot = self.rot.tolist()  # python floats keep float32 inputs in float32
        dx, dy, dz = x - cx, y - cy, z - cz
        k0 = 0.0
        k1 = 0.0
        for k in range(3):
            u = rot[0][k] * dx + rot[1][k] * dy + rot[2][k] * dz
            k0 = k0 + (u / r[k]) ** 2
            k1 = k1 + (u / r[k] ** 2) ** 2
        k0 = np.sqrt(k0)
        return k0 * (k0 - 1.0) / (np.sqrt(k1) + 1e-9)

    def bbox(self):
        half = np.sqrt(((self.rot * np.maximum(self.r, 3.0)[None, :]) ** 2).sum(axis=1))
        return self.c - half, self.c + half


class Capsule(Prim):
    """Segment ``a``-``b`` swept by a radius that goes linearly from ``r0`` to ``r1``.

    Args:
        a, b: (3,) end points in mm.
        r0, r1: radii at ``a`` and ``b`` (``r1`` defaults to ``r0``).
        bloom: minimum radius as a fraction of the voxel size.
    """

    def __init__(self, *, a, b, r0: float, r1: float | None = None, bloom: float = 0.0) -> None:
        self.a = np.asarray(a, dtype=float)
        self.b = np.asarray(b, dtype=float)
        self.r0 = float(r0)
        self.r1 = float(r0 if r1 is None else r1)
        self.bloom = bloom
        self.ba = self.b - self.a
        self.len2 = max(float(self.ba @ self.ba), 1e-9)

    def sdf(self, x, y, z, h):
        ax, ay, az = (float(v) for v in self.a)
        bx, by, bz = (float(v) for v in self.ba)
        px, py, pz = x - ax, y - ay, z - az
        t = np.clip((px * bx + py * by + pz * bz) / self.len2, 0.0, 1.0)
        d = np.sqrt((px - t * bx) ** 2 + (py - t * by) ** 2 + (pz - t * bz) ** 2)
        r = self.r0 + t * (self.r1 - self.r0)
        return d - np.maximum(r, self.bloom * h)

    def bbox(self):
        r = max(self.r0, self.r1, 3.0)
        return np.minimum(self.a, self.b) - r, np.maximum(self.a, self.b) + r


class CapsuleSet(Prim):
    """Many capsules drawn as one shape (their union): vessel and airway trees, ribs.

    The rasteriser evaluates a set sparsely, each capsule only inside its own bounding box, all
    capsules in one vectorised pass (see :func:`ctvl.data.phantom.raster.rasterise`).

    Args:
        a, b: (M, 3) end points in mm.
        r0, r1: (M,) radii at ``a`` and ``b``.
        bloom: minimum radius as a fraction of the voxel size.
    """

    def __init__(self, *, a, b, r0, r1=None, bloom: float = 0.0) -> None:
        self.a = np.asarray(a, dtype=float).reshape(-1, 3)
        self.b = np.asarray(b, dtype=float).reshape(-1, 3)
        self.r0 = np.broadcast_to(np.asarray(r0, dtype=float), (len(self.a),)).copy()
        self.r1 = self.r0.copy() if r1 is None else np.broadcast_to(np.asarray(r1, dtype=float), (len(self.a),)).copy()
        self.bloom = bloom

    def __len__(self) -> int:
        return len(self.a)

    def boxes(self, pad: float) -> tuple[np.ndarray, np.ndarray]:
        """Per-capsule bounds (M, 3) each, grown by ``pad``."""
        r = np.maximum(self.r0, self.r1)[:, None] + pad
        return np.minimum(self.a, self.b) - r, np.maximum(self.a, self.b) + r

    def distance(self, idx: np.ndarray, px, py, pz, h: float) -> np.ndarray:
        """Signed distance of points to capsule ``idx`` (one capsule index per point)."""
        a, ba = self.a[idx], self.b[idx] - self.a[idx]
        len2 = np.maximum((ba * ba).sum(axis=1), 1e-9)
        qx, qy, qz = px - a[:, 0], py - a[:, 1], pz - a[:, 2]
        t = np.clip((qx * ba[:, 0] + qy * ba[:, 1] + qz * ba[:, 2]) / len2, 0.0, 1.0)
        d = np.sqrt((qx - t * ba[:, 0]) ** 2 + (qy - t * ba[:, 1]) ** 2 + (qz - t * ba[:, 2]) ** 2)
        r = self.r0[idx] + t * (self.r1[idx] - self.r0[idx])
        return d - np.maximum(r, self.bloom * h)

    def sdf(self, x, y, z, h):
        shape = np.broadcast_shapes(np.shape(x), np.shape(y), np.shape(z))
        out = np.full(shape, FAR, dtype=np.float32)
        for i in range(len(self)):
            out = np.minimum(
                out, Capsule(a=self.a[i], b=self.b[i], r0=self.r0[i], r1=self.r1[i], bloom=self.bloom).sdf(x, y, z, h)
            )
        return out

    def bbox(self):
        if len(self) == 0:
            return np.full(3, INF), np.full(3, -INF)
        lo, hi = self.boxes(0.0)
        return lo.min(axis=0), hi.max(axis=0)

    @staticmethod
    def of(capsules: Sequence[Capsule], bloom: float = 0.0) -> CapsuleSet:
        """Collect single :class:`Capsule` s into a set."""
        if not capsules:
            return CapsuleSet(a=np.zeros((0, 3)), b=np.zeros((0, 3)), r0=np.zeros(0), bloom=bloom)
        return CapsuleSet(
            a=[c.a for c in capsules],
            b=[c.b for c in capsules],
            r0=[c.r0 for c in capsules],
            r1=[c.r1 for c in capsules],
            bloom=bloom,
        )


class Torus(Prim):
    """Ring of major radius ``major`` and tube radius ``minor`` around local axis 2 of ``rot``."""

    def __init__(self, *, center, major: float, minor: float, rot=None, bloom: float = 0.0) -> None:
        self.c = np.asarray(center, dtype=float)
        self.major, self.minor = float(major), float(minor)
        self.rot = np.eye(3) if rot is None else np.asarray(rot, dtype=float)
        self.bloom = bloom

    def sdf(self, x, y, z, h):
        cx, cy, cz = (float(v) for v in self.c)
        rot = self.rot.tolist()
        dx, dy, dz = x - cx, y - cy, z - cz
        u = [rot[0][k] * dx + rot[1][k] * dy + rot[2][k] * dz for k in range(3)]
        q = np.sqrt(u[0] ** 2 + u[1] ** 2) - self.major
        return np.sqrt(q**2 + u[2] ** 2) - max(self.minor, self.bloom * h)

    def bbox(self):
        half = np.full(3, self.major + max(self.minor, 3.0))
        return self.c - half, self.c + half


class Box(Prim):
    """Rounded box: half-sizes ``half`` along the local axes, edges rounded by ``round`` mm."""

    def __init__(self, *, center, half, rot=None, round: float = 0.0) -> None:
        self.c = np.asarray(center, dtype=float)
        self.half = np.asarray(half, dtype=float) - round
        self.round = float(round)
        self.rot = np.eye(3) if rot is None else np.asarray(rot, dtype=float)

    def sdf(self, x, y, z, h):
        cx, cy, cz = (float(v) for v in self.c)
        rot, half = self.rot.tolist(), self.half.tolist()
        dx, dy, dz = x - cx, y - cy, z - cz
        q = [np.abs(rot[0][k] * dx + rot[1][k] * dy + rot[2][k] * dz) - half[k] for k in range(3)]
        outside = np.sqrt(sum(np.maximum(qk, 0.0) ** 2 for qk in q))
        inside = np.minimum(np.maximum(np.maximum(q[0], q[1]), q[2]), 0.0)
        return outside + inside - self.round

    def bbox(self):
        half = np.sqrt(((self.rot * (self.half + self.round)[None, :]) ** 2).sum(axis=1))
        return self.c - half, self.c + half


class Profile:
    """A quantity that varies along z, linearly interpolated from a table (mm → value)."""

    def __init__(self, *, zs: Sequence[float], values: Sequence[float]) -> None:
        order = np.argsort(zs)
        self.zs = np.asarray(zs, dtype=float)[order]
        self.values = np.asarray(values, dtype=float)[order]

    def __call__(self, z) -> np.ndarray:
        out = np.interp(z, self.zs, self.values)
        return out.astype(z.dtype, copy=False) if isinstance(z, np.ndarray) and z.dtype == np.float32 else out

    def max(self) -> float:
        return float(self.values.max())


class EllipticCylinder(Prim):
    """Axial ellipse whose centre (``cx``, ``cy``) and semi-axes (``ax``, ``ay``) are z-profiles.

    Bounded in z by ``z0 < z < z1``. Used for the body outline, the thoracic cavity, the spine.
    """

    def __init__(self, *, cx: Profile, cy: Profile, ax: Profile, ay: Profile, z0: float, z1: float) -> None:
        self.cx, self.cy, self.ax, self.ay = cx, cy, ax, ay
        self.z0, self.z1 = float(z0), float(z1)

    def sdf(self, x, y, z, h):
        a, b = self.ax(z), self.ay(z)
        u, v = x - self.cx(z), y - self.cy(z)
        k0 = np.sqrt((u / a) ** 2 + (v / b) ** 2)
        k1 = np.sqrt((u / a**2) ** 2 + (v / b**2) ** 2)
        d = k0 * (k0 - 1.0) / (k1 + 1e-9)
        return np.maximum(d, np.maximum(self.z0 - z, z - self.z1))

    def bbox(self):
        ax, ay = self.ax.max(), self.ay.max()
        cxs, cys = self.cx.values, self.cy.values
        return _box([cxs.min() - ax, cys.min() - ay, self.z0], [cxs.max() + ax, cys.max() + ay, self.z1])


class HalfSpace(Prim):
    """Points with ``n · p < d`` (``n`` is normalised)."""

    def __init__(self, *, normal, offset: float) -> None:
        n = np.asarray(normal, dtype=float)
        norm = float(np.linalg.norm(n))
        self.n = [float(v) for v in n / norm]
        self.d = float(offset) / norm

    def sdf(self, x, y, z, h):
        return self.n[0] * x + self.n[1] * y + self.n[2] * z - self.d


class HeightField(Prim):
    """Points below (``below=True``) or above a surface ``z = f(x, y)``; distance measured along z."""

    def __init__(self, *, f: Callable[[np.ndarray, np.ndarray], np.ndarray], below: bool) -> None:
        self.f = f
        self.sign = 1.0 if below else -1.0

    def sdf(self, x, y, z, h):
        return self.sign * (z - self.f(x, y))


class PeriodicSlabs(Prim):
    """Horizontal slabs of ``thickness`` repeating every ``period`` mm from ``z0`` (vertebrae, ribs)."""

    def __init__(self, *, z0: float, period: float, thickness: float) -> None:
        self.z0, self.period, self.thickness = float(z0), float(period), float(thickness)

    def sdf(self, x, y, z, h):
        phase = np.mod(z - self.z0, self.period)
        return np.abs(phase - self.thickness / 2) - self.thickness / 2


def polyline(points: np.ndarray, radius: float | Sequence[float], bloom: float = 0.0) -> list[Capsule]:
    """Capsules along a polyline (a tube), one per segment.

    Args:
        points: (N, 3) mm.
        radius: one radius or N radii (tapering tube).
        bloom: see :class:`Capsule`.
    """
    pts = np.asarray(points, dtype=float)
    radii = np.broadcast_to(np.asarray(radius, dtype=float), (len(pts),))
    return [Capsule(a=pts[i], b=pts[i + 1], r0=radii[i], r1=radii[i + 1], bloom=bloom) for i in range(len(pts) - 1)]


def rotation(yaw: float = 0.0, pitch: float = 0.0, roll: float = 0.0) -> np.ndarray:
    """Rotation matrix (columns = local axes in world): about z by ``yaw``, then y, then x (radians)."""
    cz, sz, cy, sy, cx, sx = np.cos(yaw), np.sin(yaw), np.cos(pitch), np.sin(pitch), np.cos(roll), np.sin(roll)
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    return rz @ ry @ rx


def frame_from(direction) -> np.ndarray:
    """A rotation whose third column is the unit vector ``direction`` (for rings around a tube)."""
    w = np.asarray(direction, dtype=float)
    w = w / (np.linalg.norm(w) + 1e-12)
    helper = np.array([0.0, 0.0, 1.0]) if abs(w[2]) < 0.9 else np.array([1.0, 0.0, 0.0])
    u = np.cross(helper, w)
    u /= np.linalg.norm(u)
    v = np.cross(w, u)
    return np.stack([u, v, w], axis=1)
