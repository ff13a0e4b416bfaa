"""A phantom patient's normal anatomy: sampled numbers and the analytic shapes built from them.

World coordinates are RAS+ millimetres (x towards the patient's right, y anterior, z superior), with
the scanner's isocentre at the origin. :func:`sample_anatomy` draws a patient (body habitus, organ
sizes and positions, airway and vessel trees) from a random generator; :class:`Geometry` turns it
into shapes (:mod:`ctvl.data.phantom.sdf`). Findings that reshape organs (an enlarged heart, a
pericardial effusion, a hiatal hernia) are passed to :class:`Geometry` so the lungs make room.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ctvl.data.phantom import csg, sdf
from ctvl.data.phantom.trees import LOBE_SIDE, Tree, companion, grow_tree

SIDES = {"R": 1.0, "L": -1.0}  # sign of x for each side (RAS: right is +x)


@dataclass
class Anatomy:
    """Numbers that define one patient's normal anatomy (mm, HU, radians)."""

    sex: str
    age: float
    scale: float  # overall size factor
    adiposity: float  # -1 (lean) .. 1 (obese)
    dx: float  # lateral offset of the patient on the table
    body_a: float  # body half-width
    body_b: float  # body half-depth (AP)
    body_yc: float  # body centre y
    y_back: float  # flattened back (lying on the table)
    fat: float  # subcutaneous fat thickness
    muscle: float  # chest wall muscle thickness
    cav_a: float  # thoracic cavity half-width
    cav_b: float  # thoracic cavity half-depth
    cav_yc: float  # thoracic cavity centre y
    z_apex: float  # lung apex height
    z_carina: float
    dome: dict[str, float]  # peak height of each hemidiaphragm
    spine_y: float  # vertebral body centre y
    heart_center: np.ndarray
    heart_radii: np.ndarray
    heart_rot: np.ndarray
    aorta_r: float
    lung_hu: float
    texture: np.ndarray  # (4, 4) random wave vectors/phases for lung texture
    fissure: dict[str, float]  # per side: oblique fissure height at the back and slope; right minor fissure
    rib_z0: float
    rib_step: float
    esophagus_air: bool
    airways: Tree = field(repr=False, default=None)  # type: ignore[assignment]
    arteries: Tree = field(repr=False, default=None)  # type: ignore[assignment]
    veins: Tree = field(repr=False, default=None)  # type: ignore[assignment]

    @property
    def trachea_y(self) -> float:
        return self.spine_y + 45.0 * self.scale

    def hilum(self, side: str) -> np.ndarray:
        """Where the main bronchus of ``side`` enters the lung."""
        s = SIDES[side]
        return np.array(
            [self.dx + s * 46.0 * self.scale, self.trachea_y - 6.0, self.z_carina - (20.0 if side == "R" else 28.0)]
        )


class Geometry:
    """Shapes of one patient, given its :class:`Anatomy` and organ-reshaping findings.

    Args:
        an: the anatomy.
        heart_scale: 1 for a normal heart, >1 for cardiomegaly.
        pericardial: pericardial fluid thickness in mm (0 = none).
        hernia: ``(center (3,), radii (3,))`` of a hiatal hernia sac, or None.
    """

    def __init__(self, an: Anatomy, heart_scale: float = 1.0, pericardial: float = 0.0, hernia=None) -> None:
        self.an, self.heart_scale, self.pericardial, self.hernia = an, heart_scale, pericardial, hernia
        self._cache: dict[str, sdf.Prim] = {}
        a = an
        top, bottom = 400.0, -400.0
        zs = [bottom, a.dome["R"] - 20, a.z_carina, a.z_apex - 30, a.z_apex + 10, top]
        self.cav_ax = sdf.Profile(zs, np.array([0.97, 1.0, 0.96, 0.84, 0.72, 0.72]) * a.cav_a)
        self.cav_ay = sdf.Profile(zs, np.array([1.0, 1.0, 0.96, 0.86, 0.78, 0.78]) * a.cav_b)
        self.cav_cy = sdf.Profile(zs, [a.cav_yc, a.cav_yc, a.cav_yc, a.cav_yc - 4, a.cav_yc - 8, a.cav_yc - 8])
        cx = sdf.Profile([bottom, top], [a.dx, a.dx])
        self.cavity = sdf.EllipticCylinder(cx, self.cav_cy, self.cav_ax, self.cav_ay, bottom, top)
        bz = [bottom, -100, 0, 100, top]
        body_ax = sdf.Profile(bz, np.array([0.95, 0.98, 1.0, 1.02, 1.02]) * a.body_a)
        body_ay = sdf.Profile(bz, np.array([1.0, 1.0, 1.0, 0.97, 0.97]) * a.body_b)
        body_cy = sdf.Profile([bottom, top], [a.body_yc, a.body_yc])
        self.body = csg.Intersect(
            [
                sdf.EllipticCylinder(cx, body_cy, body_ax, body_ay, bottom, top),
                sdf.HalfSpace([0, -1, 0], -a.y_back),
            ]
        )

    # -- diaphragm ------------------------------------------------------------------------------
    def dome_height(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Height of the diaphragm surface at (x, y): the higher of the two hemidiaphragm domes."""
        a = self.an
        out = None
        for side, s in SIDES.items():
            u = (x - a.dx - s * 0.5 * a.cav_a) / (0.95 * a.cav_a)
            v = (y - a.cav_yc - 0.15 * a.cav_b) / (1.1 * a.cav_b)
            h = a.dome[side] - 75.0 * (u**2 + v**2)
            out = h if out is None else np.maximum(out, h)
        return out

    def above_diaphragm(self, margin: float = 0.0) -> sdf.Prim:
        return sdf.HeightField(lambda x, y: self.dome_height(x, y) + margin, below=False)

    def below_diaphragm(self, margin: float = 0.0) -> sdf.Prim:
        return sdf.HeightField(lambda x, y: self.dome_height(x, y) - margin, below=True)

    # -- heart and great vessels ----------------------------------------------------------------
    def _heart_factors(self) -> np.ndarray:
        """Per-axis growth of an enlarged heart: mostly along the long and short axes (to the left and
        back), little in height (it stays on the diaphragm)."""
        k = self.heart_scale
        return np.array([k, k, 1.0 + 0.35 * (k - 1.0)])

    def heart_center(self) -> np.ndarray:
        grow = (self._heart_factors() - 1.0) * self.an.heart_radii
        return self.an.heart_center + np.array([-0.3 * grow[0], -0.2 * grow[1], grow[2]])

    def heart_radii(self, grow: float = 0.0) -> np.ndarray:
        return self.an.heart_radii * self._heart_factors() + grow

    def heart(self, grow: float = 0.0) -> sdf.Prim:
        """The heart (myocardium outline), optionally grown by ``grow`` mm."""
        return sdf.Ellipsoid(self.heart_center(), self.heart_radii(grow), self.an.heart_rot)

    def heart_sac(self) -> sdf.Prim:
        """Pericardial sac: heart + epicardial fat + pericardial fluid (slightly more behind/below)."""
        t = self.pericardial
        c = self.heart_center() + np.array([0.0, -0.25 * t, -0.25 * t])
        return sdf.Ellipsoid(c, self.heart_radii(4.0 + t), self.an.heart_rot)

    def heart_width(self) -> float:
        """Largest left-right extent of the heart (mm), for the cardiothoracic ratio."""
        rot, r = self.an.heart_rot, self.heart_radii()
        return float(2.0 * np.sqrt(((rot[0, :] * r) ** 2).sum()))

    def thorax_width(self) -> float:
        """Largest inner thoracic width (mm) at the level of the diaphragm domes."""
        return float(2.0 * self.cav_ax(self.an.dome["R"]))

    def cardiothoracic_ratio(self) -> float:
        return self.heart_width() / self.thorax_width()

    def vessel_paths(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Centre lines (N, 3) and radii (N,) of the mediastinal great vessels.

        Keys: "aorta" (root to hiatus), "brachiocephalic", "carotid", "subclavian", "pulmonary trunk",
        "right PA", "left PA", "SVC".
        """
        a, s = self.an, self.an.scale
        hc = a.heart_center
        ty, zc, dx = a.trachea_y, a.z_carina, a.dx
        vb = a.spine_y + 17.0 * s  # anterior edge of the vertebral bodies
        aorta = np.array(
            [
                [dx + 4, hc[1] + 4, hc[2] + 30],
                [dx + 18 * s, ty + 34 * s, zc + 8],
                [dx + 8 * s, ty + 30 * s, zc + 30],
                [dx - 12 * s, ty + 19 * s, zc + 38],
                [dx - 29 * s, ty - 2 * s, zc + 28],
                [dx - 27 * s, vb + 4, zc + 6],
                [dx - 26 * s, vb + 1, zc - 60],
                [dx - 18 * s, vb + 3, a.dome["L"] - 40],
                [dx - 8 * s, vb + 6, -400.0],
            ]
        )
        r_ao = a.aorta_r * np.array([1.0, 1.0, 0.95, 0.9, 0.85, 0.8, 0.78, 0.76, 0.74])
        h_r, h_l = a.hilum("R"), a.hilum("L")
        pb = np.array([dx - 10 * s, ty + 24 * s, zc - 12])
        top = 400.0
        return {
            "aorta": (aorta, r_ao),
            "brachiocephalic": (
                np.array([aorta[2] + [2, -2, 0], [dx + 24 * s, ty + 20 * s, top]]),
                np.array([6.5, 6.0]) * s,
            ),
            "carotid": (np.array([aorta[3] + [4, 2, 0], [dx - 12 * s, ty + 20 * s, top]]), np.array([4.0, 3.8]) * s),
            "subclavian": (
                np.array([aorta[3] + [-8, -6, 0], [dx - 32 * s, ty + 2, a.z_apex - 5], [dx - 70 * s, ty + 10, top]]),
                np.array([5.0, 4.8, 4.5]) * s,
            ),
            "pulmonary trunk": (np.array([[dx - 10 * s, hc[1] + 30 * s, hc[2] + 38], pb]), np.array([13.0, 12.0]) * s),
            "left PA": (
                np.array([pb, [dx - 30 * s, ty + 6 * s, zc - 8], h_l + [-6, 10, 6]]),
                np.array([10.0, 9.0, 7.5]) * s,
            ),
            "right PA": (
                np.array([pb, [dx + 10 * s, ty + 14 * s, zc - 16], h_r + [4, 12, 4]]),
                np.array([10.0, 9.0, 7.5]) * s,
            ),
            "SVC": (
                np.array([[dx + 44 * s, ty + 16 * s, top], [dx + 40 * s, ty + 20 * s, hc[2] + 40]]),
                np.array([10.0, 10.0]) * s,
            ),
        }

    def aorta_path(self) -> tuple[np.ndarray, np.ndarray]:
        """Centre line (N, 3) and radii (N,) of the thoracic aorta, root to hiatus."""
        return self.vessel_paths()["aorta"]

    def esophagus_path(self) -> np.ndarray:
        """Centre line (N, 3) of the oesophagus, neck to stomach."""
        a, s = self.an, self.an.scale
        vb = a.spine_y + 17.0 * s
        return np.array(
            [
                [a.dx - 3, vb + 9, 400.0],
                [a.dx - 4, vb + 10, a.z_carina],
                [a.dx - 8, vb + 16, a.dome["L"] + 15],
                [a.dx - 20, vb + 30, a.dome["L"] - 25],
                self.stomach_center(),
            ]
        )

    def stomach_center(self) -> np.ndarray:
        a = self.an
        return np.array([a.dx - 0.45 * a.cav_a, a.cav_yc + 0.15 * a.cav_b, a.dome["L"] - 45.0])

    def coronary_paths(self) -> dict[str, np.ndarray]:
        """Centre lines (N, 3) of the LAD, LCx and RCA on the heart surface (in the epicardial fat)."""
        r = self.heart_radii(2.0)
        rot, c = self.an.heart_rot, self.heart_center()

        def world(local: np.ndarray) -> np.ndarray:
            return c + local @ rot.T

        ring_x = -0.3
        ring = np.sqrt(1.0 - ring_x**2)
        phi_rca = np.deg2rad(np.linspace(120, 250, 8))
        phi_lcx = np.deg2rad(np.linspace(-75, 50, 8))
        xs = np.linspace(-0.25, 0.92, 9)
        lad = np.stack(
            [xs * r[0], np.full_like(xs, -0.2 * r[1]), np.sqrt(np.clip(1 - xs**2 - 0.04, 0.02, 1)) * r[2]], 1
        )
        return {
            "RCA": world(
                np.stack([np.full(8, ring_x * r[0]), ring * r[1] * np.cos(phi_rca), ring * r[2] * np.sin(phi_rca)], 1)
            ),
            "LCx": world(
                np.stack([np.full(8, ring_x * r[0]), ring * r[1] * np.cos(phi_lcx), ring * r[2] * np.sin(phi_lcx)], 1)
            ),
            "LAD": world(lad),
        }

    def mediastinum(self) -> sdf.Prim:
        """Everything between the lungs: a central slab, the spine, heart, great vessels (and a hernia)."""
        if "mediastinum" in self._cache:
            return self._cache["mediastinum"]
        a, s = self.an, self.an.scale
        zs = [-400.0, a.dome["R"], a.z_carina - 40, a.z_carina, a.z_carina + 40, a.z_apex, 400.0]
        half = sdf.Profile(zs, np.array([18, 18, 22, 27, 25, 20, 20]) * s)
        y_front = a.cav_yc + a.cav_b + 10

        class _Slab(sdf.Prim):
            def sdf(self_, x, y, z, h):
                return np.maximum(np.abs(x - a.dx) - half(z), np.maximum(a.spine_y - y, y - y_front))

            def bbox(self_):
                return np.array([a.dx - 40, a.spine_y, -400.0]), np.array([a.dx + 40, y_front, 400.0])

        spine = sdf.Box([a.dx, a.spine_y - 10, 0.0], [26.0 * s, 40.0, 400.0])
        parts: list[sdf.Prim] = [_Slab(), spine, self.heart_sac()]
        for pts, r in self.vessel_paths().values():
            parts.extend(sdf.polyline(pts, r + 2.5))
        if self.hernia is not None:
            parts.append(sdf.Ellipsoid(self.hernia[0], np.asarray(self.hernia[1]) + 3.0))
        self._cache["mediastinum"] = csg.Union(parts)
        return self._cache["mediastinum"]

    # -- lungs ----------------------------------------------------------------------------------
    def _apex(self, side: str) -> sdf.Prim:
        a, s = self.an, SIDES[side]
        height = 210.0
        return sdf.Ellipsoid(
            [a.dx + s * 0.5 * a.cav_a, a.cav_yc - 5.0, a.z_apex - height], [0.64 * a.cav_a, 1.1 * a.cav_b, height]
        )

    def chest_wall_envelope(self, side: str) -> sdf.Prim:
        """The lung's outer surface towards the ribs, apex and diaphragm (no mediastinal side): its
        signed distance is the depth below the costal and diaphragmatic pleura."""
        return csg.Intersect([self.cavity, self._apex(side), self.above_diaphragm()])

    def lung(self, side: str) -> sdf.Prim:
        """One lung: thoracic cavity ∩ apical dome ∩ above the diaphragm, minus the mediastinum."""
        if f"lung_{side}" in self._cache:
            return self._cache[f"lung_{side}"]
        a, s = self.an, SIDES[side]
        half = sdf.HalfSpace([-s, 0, 0], -s * a.dx)  # s * (x - dx) > 0
        lung = csg.Intersect(
            [self.cavity, self._apex(side), half, self.above_diaphragm(), csg.Negate(self.mediastinum())]
        )
        self._cache[f"lung_{side}"] = lung
        return lung

    def fissure(self, lobe: str) -> sdf.Prim:
        """Half-space that cuts ``lobe`` out of its lung (intersect with :meth:`lung`)."""
        a = self.an
        side = LOBE_SIDE[lobe]
        z_back, slope = a.fissure[f"{side}_z"], a.fissure[f"{side}_slope"]
        y_back = a.cav_yc - a.cav_b
        # oblique fissure: z = z_back + slope * (y - y_back); the lower lobe is below it
        lower = sdf.HalfSpace([0, -slope, 1], z_back - slope * y_back)
        upper = csg.Negate(lower)
        if lobe in ("RLL", "LLL"):
            return lower
        if lobe == "LUL":
            return upper
        minor = sdf.HalfSpace([0, 0, 1], a.fissure["R_minor"])  # below the minor fissure
        if lobe == "RML":
            return csg.Intersect([upper, minor])
        return csg.Intersect([upper, csg.Negate(minor)])

    def lobe(self, lobe: str) -> sdf.Prim:
        return csg.Intersect([self.lung(LOBE_SIDE[lobe]), self.fissure(lobe)])

    def sample_lobes(
        self, rng: np.random.Generator, counts: dict[str, int], depth: float = 4.0
    ) -> dict[str, np.ndarray]:
        """``counts[lobe]`` points inside each lobe, at least ``depth`` mm inside its lung.

        One batch of candidates for all lobes (two lung evaluations), so it is cheap and the result
        does not depend on the grid.
        """
        lo, hi = self.cavity.bbox()
        lo = np.array([lo[0], lo[1], self.an.dome["L"] - 90.0])
        hi = np.array([hi[0], hi[1], self.an.z_apex])
        out: dict[str, list[np.ndarray]] = {lobe: [] for lobe in counts}
        for _ in range(6):
            cand = lo + rng.random((4096, 3)) * (hi - lo)
            x, y, z = cand[:, 0], cand[:, 1], cand[:, 2]
            for side in ("R", "L"):
                inside = self.lung(side).sdf(x, y, z, 1.0) < -depth
                for lobe in counts:
                    if LOBE_SIDE[lobe] != side or len(out[lobe]) >= counts[lobe]:
                        continue
                    ok = inside & (self.fissure(lobe).sdf(x, y, z, 1.0) < -1.0)
                    out[lobe].extend(cand[ok][: counts[lobe] - len(out[lobe])])
            if all(len(out[lobe]) >= counts[lobe] for lobe in counts):
                break
        for lobe, pts in out.items():
            if len(pts) < counts[lobe]:
                raise RuntimeError(f"phantom: could not place {counts[lobe]} points in lobe {lobe}")
        return {lobe: np.asarray(pts) for lobe, pts in out.items()}

    def pleural_depth(self, side: str, pts: np.ndarray) -> np.ndarray:
        """Depth (mm, positive inside) of points below the costal / diaphragmatic pleura of ``side``."""
        return -self.chest_wall_envelope(side).sdf(pts[:, 0], pts[:, 1], pts[:, 2], 1.0)


def _sample_trees(an: Anatomy, rng: np.random.Generator) -> None:
    """Grow airways, arteries and veins inside the (normal) lobes of ``an`` (in place)."""
    geo = Geometry(an)
    s = an.scale
    carina = np.array([an.dx, an.trachea_y, an.z_carina])
    h_r, h_l = an.hilum("R"), an.hilum("L")
    bi = h_r + np.array([-2.0, 3.0, -18.0 * s])  # bronchus intermedius
    lll = h_l + np.array([2.0, -6.0, -14.0 * s])
    top = np.array([an.dx, an.trachea_y + 10.0, 400.0])
    counts = {"RUL": 22, "RML": 10, "RLL": 26, "LUL": 26, "LLL": 22}
    pts = geo.sample_lobes(rng, {lobe: n + max(4, n // 2) for lobe, n in counts.items()}, depth=6.0)
    attract = {lobe: pts[lobe][:n] for lobe, n in counts.items()}
    vattract = {lobe: pts[lobe][n:] for lobe, n in counts.items()}
    central = [
        (top, carina, 8.5 * s),
        (carina, h_r, 6.3 * s),
        (carina, h_l, 5.8 * s),
        (h_r, bi, 5.2 * s),
    ]
    roots = {"RUL": h_r, "RML": bi, "RLL": bi, "LUL": h_l, "LLL": lll}
    an.airways = grow_tree(central, roots, attract, r_leaf=0.75, exponent=0.45)
    an.arteries = companion(an.airways, gap=0.6, ratio=1.05)
    la = an.heart_center + np.array([0.0, -0.6 * an.heart_radii[1], 0.35 * an.heart_radii[2]])
    vroots = {
        "RUL": la + [28.0 * s, 0, 14],
        "RML": la + [30.0 * s, 4, -4],
        "RLL": la + [26.0 * s, -4, -14],
        "LUL": la + [-30.0 * s, 0, 14],
        "LLL": la + [-28.0 * s, -4, -12],
    }
    an.veins = grow_tree([], vroots, vattract, r_leaf=0.9, exponent=0.5, frac=0.4)


def sample_anatomy(rng: np.random.Generator, age: float, sex: str) -> Anatomy:
    """Draw a normal anatomy.

    Args:
        rng: the patient's anatomy stream (nothing else may draw from it).
        age: years (aortic calibre grows with age).
        sex: "M" or "F" (women are smaller on average and carry more subcutaneous fat).

    Returns:
        The anatomy, airway and vessel trees included.
    """
    u = lambda lo, hi: float(rng.uniform(lo, hi))  # noqa: E731
    scale = float(np.clip(rng.normal(1.0 if sex == "M" else 0.94, 0.04), 0.86, 1.08))
    adip = u(-1.0, 1.0)
    dx = float(rng.normal(0.0, 5.0))
    body_a = 156.0 * scale * (1 + 0.07 * adip)
    body_b = 118.0 * scale * (1 + 0.10 * adip)
    y_back = float(rng.normal(-122.0, 4.0))
    body_yc = y_back + 0.93 * body_b
    fat = 6.0 + 7.0 * (adip + 1.0) + (4.0 if sex == "F" else 0.0)
    muscle = 10.0 * scale
    cav_a = body_a - fat - muscle - 12.0
    front = body_yc + body_b - fat - 16.0
    back = y_back + 0.4 * fat + 38.0 * scale
    cav_yc, cav_b = (front + back) / 2, (front - back) / 2
    z_apex = float(rng.normal(150.0, 6.0)) * (0.5 + 0.5 * scale)
    z_carina = z_apex - 85.0 * scale
    dome_r = float(rng.normal(-50.0, 8.0))
    domes = {"R": dome_r, "L": dome_r - u(10.0, 20.0)}
    spine_y = back + 14.0 * scale
    heart_radii = np.array([60.0, 47.0, 44.0]) * scale * u(0.94, 1.04)
    heart_rot = sdf.rotation(
        yaw=np.deg2rad(u(125.0, 145.0)), pitch=np.deg2rad(u(20.0, 32.0)), roll=np.deg2rad(u(-8, 8))
    )
    z_floor = dome_r - 21.0
    heart_center = np.array([dx - 15.0 * scale, cav_yc + 0.3 * cav_b, z_floor + 0.9 * heart_radii[2] + 8.0])
    an = Anatomy(
        sex=sex,
        age=float(age),
        scale=scale,
        adiposity=adip,
        dx=dx,
        body_a=body_a,
        body_b=body_b,
        body_yc=body_yc,
        y_back=y_back,
        fat=fat,
        muscle=muscle,
        cav_a=cav_a,
        cav_b=cav_b,
        cav_yc=cav_yc,
        z_apex=z_apex,
        z_carina=z_carina,
        dome=domes,
        spine_y=spine_y,
        heart_center=heart_center,
        heart_radii=heart_radii,
        heart_rot=heart_rot,
        aorta_r=(13.0 + 0.06 * (age - 50.0)) * scale * u(0.92, 1.08),
        lung_hu=u(-875.0, -845.0),
        texture=rng.normal(size=(4, 4)),
        fissure={
            "R_z": z_carina + u(0, 15),
            "R_slope": -u(0.75, 1.0),
            "L_z": z_carina + u(5, 20),
            "L_slope": -u(0.8, 1.05),
            "R_minor": z_carina - u(25, 40),
        },
        rib_z0=z_apex + u(2.0, 10.0),
        rib_step=u(23.0, 27.0) * scale,
        esophagus_air=bool(rng.random() < 0.4),
    )
    _sample_trees(an, rng)
    return an
