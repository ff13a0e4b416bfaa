"""Combining shapes: union, intersection, complement, offset, shell, and Voronoi walls.

All work on the same broadcastable point arrays as :mod:`ctvl.data.phantom.sdf`. Unions evaluate
each child only inside that child's bounding box, and intersections evaluate costly children (the
Voronoi walls) only where the cheap ones are close to the surface, so large unions (the
mediastinum: heart, great vessels, spine) and septal networks stay affordable at 512 × 512 × 241.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ctvl.data.phantom.sdf import FAR, INF, Prim


def _bbox_overlaps(box: tuple[np.ndarray, np.ndarray], x, y, z, margin: float) -> bool:
    lo, hi = box
    for c, a, b in ((x, lo[0], hi[0]), (y, lo[1], hi[1]), (z, lo[2], hi[2])):
        cmin, cmax = float(np.min(c)), float(np.max(c))
        if cmax < a - margin or cmin > b + margin:
            return False
    return True


class VoronoiWalls(Prim):
    """Walls of thickness ``width`` between the Voronoi cells of ``seeds`` (interlobular septa).

    Uses scipy's cKDTree for the two nearest seeds; marked expensive so an :class:`Intersect`
    evaluates it only near the surfaces of its cheap siblings.
    """

    expensive = True

    def __init__(self, *, seeds: np.ndarray, width: float) -> None:
        from scipy.spatial import cKDTree

        self.seeds = np.asarray(seeds, dtype=float)
        self.tree = cKDTree(self.seeds)
        self.width = float(width)

    def sdf(self, x, y, z, h):
        x, y, z = np.broadcast_arrays(x, y, z)
        pts = np.stack([x.ravel(), y.ravel(), z.ravel()], axis=1)
        d, _ = self.tree.query(pts, k=2)
        out = (d[:, 1] - d[:, 0]) / 2 - self.width / 2
        return out.reshape(x.shape)

    def bbox(self):
        return self.seeds.min(axis=0) - 20.0, self.seeds.max(axis=0) + 20.0


class Offset(Prim):
    """``child`` grown by ``delta`` mm (negative shrinks)."""

    def __init__(self, *, child: Prim, delta: float) -> None:
        self.child, self.delta = child, float(delta)
        self.expensive = child.expensive

    def sdf(self, x, y, z, h):
        return self.child.sdf(x, y, z, h) - self.delta

    def bbox(self):
        lo, hi = self.child.bbox()
        return lo - max(self.delta, 0.0), hi + max(self.delta, 0.0)


class Negate(Prim):
    """Complement of ``child`` (unbounded)."""

    def __init__(self, *, child: Prim) -> None:
        self.child = child
        self.expensive = child.expensive

    def sdf(self, x, y, z, h):
        return -self.child.sdf(x, y, z, h)


class Union(Prim):
    """Union (min of distances). Each child is evaluated only within its own bounding box (+``FAR``);
    elsewhere the union reports ``FAR`` (far outside)."""

    def __init__(self, *, children: Sequence[Prim]) -> None:
        self.children = list(children)

    def sdf(self, x, y, z, h):
        shape = np.broadcast_shapes(np.shape(x), np.shape(y), np.shape(z))
        out = np.full(shape, FAR, dtype=np.float32)
        grid = _is_grid(x, y, z)
        if not grid:
            bx, by, bz = (np.broadcast_to(c, shape) for c in (x, y, z))
        for child in self.children:
            lo, hi = child.bbox()
            if grid:
                sl = []
                for c, a, b in zip((x.ravel(), y.ravel(), z.ravel()), lo - FAR, hi + FAR):
                    hit = np.nonzero((c >= a) & (c <= b))[0]
                    if hit.size == 0:
                        break
                    sl.append(slice(int(hit[0]), int(hit[-1]) + 1))
                else:
                    d = child.sdf(x[sl[0]], y[:, sl[1]], z[:, :, sl[2]], h)
                    sub = out[sl[0], sl[1], sl[2]]
                    np.minimum(sub, d, out=sub)
                continue
            near = (bx >= lo[0] - FAR) & (bx <= hi[0] + FAR) & (by >= lo[1] - FAR) & (by <= hi[1] + FAR)
            near &= (bz >= lo[2] - FAR) & (bz <= hi[2] + FAR)
            if near.any():
                out[near] = np.minimum(out[near], child.sdf(bx[near], by[near], bz[near], h))
        return out

    def bbox(self):
        boxes = [c.bbox() for c in self.children]
        return np.min([b[0] for b in boxes], axis=0), np.max([b[1] for b in boxes], axis=0)


class Shell(Prim):
    """A shell of ``thickness`` mm centred on the surface of ``child``."""

    def __init__(self, *, child: Prim, thickness: float) -> None:
        self.child, self.thickness = child, float(thickness)

    def sdf(self, x, y, z, h):
        return np.abs(self.child.sdf(x, y, z, h)) - self.thickness / 2

    def bbox(self):
        lo, hi = self.child.bbox()
        return lo - self.thickness, hi + self.thickness


def _is_grid(x, y, z) -> bool:
    """True when (x, y, z) are axis vectors shaped (I, 1, 1), (1, J, 1), (1, 1, K)."""
    return (
        np.ndim(x) == 3
        and np.ndim(y) == 3
        and np.ndim(z) == 3
        and np.shape(x)[1:] == (1, 1)
        and np.shape(y)[0::2] == (1, 1)
        and np.shape(z)[:2] == (1, 1)
    )


class Intersect(Prim):
    """Intersection (max of distances). Expensive children are evaluated only where the cheap ones
    are close to inside (within ``3 h + 6`` mm, enough for the partial-volume ramp and a feather);
    elsewhere the intersection reports the cheap children's distance, which already means "outside"."""

    def __init__(self, *, children: Sequence[Prim]) -> None:
        self.children = list(children)
        self.expensive = all(c.expensive for c in self.children)

    def sdf(self, x, y, z, h):
        shape = np.broadcast_shapes(np.shape(x), np.shape(y), np.shape(z))
        for child in self.children:
            if not _bbox_overlaps(child.bbox(), x, y, z, FAR):
                return np.full(shape, FAR)
        cheap = [c for c in self.children if not c.expensive]
        costly = [c for c in self.children if c.expensive]
        out = None
        for child in cheap:
            d = np.broadcast_to(child.sdf(x, y, z, h), shape)
            out = d if out is None else np.maximum(out, d)
        if not costly:
            return out
        if out is None:
            out = np.full(shape, -INF)
        out = np.array(out, dtype=np.float32)  # writable copy
        near = np.nonzero(out.ravel() < 3.0 * h + 6.0)[0]
        if near.size == 0:
            return out
        bx, by, bz = (np.broadcast_to(c, shape).ravel()[near] for c in (x, y, z))
        flat = out.ravel()
        for child in costly:
            flat[near] = np.maximum(flat[near], child.sdf(bx, by, bz, h))
        return flat.reshape(shape)

    def bbox(self):
        boxes = [c.bbox() for c in self.children]
        return np.max([b[0] for b in boxes], axis=0), np.min([b[1] for b in boxes], axis=0)
