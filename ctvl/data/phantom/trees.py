"""Branching trees (bronchi, pulmonary arteries and veins) that fill each lobe.

The tree is grown by recursive bisection of attractor points sampled inside a lobe: from the current
node, a segment goes part of the way towards the centroid of the points it must supply, the points
are split in two along their principal axis, and each half is supplied by a child branch. Radii
follow a Murray-like law ``r = r_leaf * n_leaves ** exponent``. The result is deterministic given the
attractors, fills the lobe, and tapers towards the pleura like a real bronchovascular tree.

Written by hand: a small space-colonisation variant; no library grows anatomical trees in numpy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

LOBES: tuple[str, ...] = ("RUL", "RML", "RLL", "LUL", "LLL")
LOBE_NAMES: dict[str, str] = {
    "RUL": "right upper lobe",
    "RML": "right middle lobe",
    "RLL": "right lower lobe",
    "LUL": "left upper lobe",
    "LLL": "left lower lobe",
}
LOBE_SIDE: dict[str, str] = {"RUL": "R", "RML": "R", "RLL": "R", "LUL": "L", "LLL": "L"}


@dataclass
class Tree:
    """Segments of a tree (N of them).

    Attributes:
        p0, p1: (N, 3) segment end points in mm (parent end first).
        radius: (N,) radius in mm.
        lobe: (N,) lobe index into :data:`LOBES`, or -1 for central (trachea, main bronchi).
        gen: (N,) generation (0 = central, 1 = lobar, ...).
        leaves: (N,) number of attractor points the segment supplies.
        parent: (N,) index of the parent segment, or -1.
    """

    p0: np.ndarray
    p1: np.ndarray
    radius: np.ndarray
    lobe: np.ndarray
    gen: np.ndarray
    leaves: np.ndarray
    parent: np.ndarray

    def __len__(self) -> int:
        return int(self.radius.shape[0])

    def select(self, mask: np.ndarray) -> Tree:
        """The segments where ``mask`` (N,) is true."""
        idx = np.nonzero(mask)[0]
        remap = np.full(len(self) + 1, -1)
        remap[idx] = np.arange(idx.size)
        parent = remap[self.parent[idx]]  # parent -1 maps to remap[-1] == -1
        return Tree(
            self.p0[idx], self.p1[idx], self.radius[idx], self.lobe[idx], self.gen[idx], self.leaves[idx], parent
        )


class _Builder:
    def __init__(self, r_leaf: float, exponent: float, frac: float) -> None:
        self.r_leaf, self.exponent, self.frac = r_leaf, exponent, frac
        self.rows: list[tuple] = []

    def radius(self, n: int) -> float:
        return self.r_leaf * n**self.exponent

    def add(self, a, b, r, lobe, gen, n, parent=-1) -> int:
        self.rows.append(
            (np.asarray(a, float), np.asarray(b, float), float(r), int(lobe), int(gen), int(n), int(parent))
        )
        return len(self.rows) - 1

    def grow(self, root: np.ndarray, pts: np.ndarray, lobe: int, gen: int, parent: int) -> None:
        n = len(pts)
        if n == 1:
            self.add(root, pts[0], self.radius(1), lobe, gen, 1, parent)
            return
        centroid = pts.mean(axis=0)
        node = root + self.frac * (centroid - root)
        me = self.add(root, node, self.radius(n), lobe, gen, n, parent)
        centred = pts - centroid
        _, vecs = np.linalg.eigh(centred.T @ centred)
        order = np.argsort(centred @ vecs[:, -1], kind="stable")
        half = n // 2
        self.grow(node, pts[order[:half]], lobe, gen + 1, me)
        self.grow(node, pts[order[half:]], lobe, gen + 1, me)

    def tree(self) -> Tree:
        if not self.rows:
            z = np.zeros((0, 3))
            e = np.zeros(0, int)
            return Tree(z, z, np.zeros(0), e, e, e, e)
        a, b, r, lobe, gen, n, parent = zip(*self.rows)
        arr = np.array
        return Tree(np.stack(a), np.stack(b), arr(r), arr(lobe), arr(gen), arr(n), arr(parent))


def grow_tree(
    central: list[tuple[np.ndarray, np.ndarray, float]],
    roots: dict[str, np.ndarray],
    attractors: dict[str, np.ndarray],
    r_leaf: float,
    exponent: float,
    frac: float = 0.45,
) -> Tree:
    """Grow one tree.

    Args:
        central: explicit central segments ``(a, b, radius)`` (trachea, main bronchi, trunks).
        roots: lobe name → (3,) point where that lobe's branch starts.
        attractors: lobe name → (n, 3) points inside the lobe the tree must reach.
        r_leaf: radius of a terminal branch, mm.
        exponent: radius law exponent.
        frac: how far towards the supplied points' centroid each segment goes.

    Returns:
        The tree (central segments first).
    """
    builder = _Builder(r_leaf, exponent, frac)
    for a, b, r in central:
        builder.add(a, b, r, -1, 0, 0)
    for lobe_name in LOBES:
        if lobe_name in roots and len(attractors.get(lobe_name, ())):
            root = np.asarray(roots[lobe_name], float)
            builder.grow(root, np.asarray(attractors[lobe_name], float), LOBES.index(lobe_name), 1, -1)
    return builder.tree()


def companion(tree: Tree, gap: float, ratio: float) -> Tree:
    """The artery that runs beside each bronchus: same path, shifted sideways, radius ``ratio`` × r.

    Central segments (gen 0) are dropped: central arteries are drawn from the pulmonary trunk.

    Args:
        tree: the bronchial tree (radii are lumen radii).
        gap: mm between the bronchial lumen and the artery (the wall and a little tissue).
        ratio: artery radius / bronchus radius (about 1 in health).
    """
    keep = tree.gen > 0
    t = tree.select(keep)
    d = t.p1 - t.p0
    d /= np.linalg.norm(d, axis=1, keepdims=True) + 1e-9
    up = np.where(np.abs(d[:, 2:3]) > 0.9, np.array([[0.0, 1.0, 0.0]]), np.array([[0.0, 0.0, 1.0]]))
    side = np.cross(d, up)
    side /= np.linalg.norm(side, axis=1, keepdims=True) + 1e-9
    r = t.radius * ratio
    shift = side * (t.radius + gap + r)[:, None]
    # start each artery where its parent artery ends, so the shifted branches stay connected
    start = np.where((t.parent >= 0)[:, None], shift[np.maximum(t.parent, 0)], shift)
    return Tree(t.p0 + start, t.p1 + shift, r, t.lobe, t.gen, t.leaves, t.parent)
