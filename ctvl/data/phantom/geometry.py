"""Analytic shapes of a phantom patient: body, thoracic cavity, diaphragm, heart, great vessels, lungs, lobes.

:class:`Geometry` turns the numbers of an :class:`~ctvl.data.phantom.anatomy.Anatomy` into signed
distance shapes (:mod:`ctvl.data.phantom.sdf`) in RAS+ millimetres, and places points inside lobes.
Findings that reshape organs (an enlarged heart, a pericardial effusion, a hiatal hernia) are passed
in so the lungs make room.
"""

from __future__ import annotations

import numpy as np

from ctvl.data.phantom import csg, sdf
from ctvl.data.phantom.anatomy import SIDES, Anatomy
from ctvl.data.phantom.trees import LOBE_SIDE


class Geometry:
    """Shapes of one patient, given its :class:`Anatomy` and organ-reshaping findings.

    Args:
        an: the anatomy.
        heart_scale: 1 for a normal heart, >1 for cardiomegaly.
        pericardial: pericardial fluid thickness in mm (0 = none).
        hernia: ``(center (3,), radii (3,))`` of a hiatal hernia sac, or None.
    """

    def __init__(self, *, an: Anatomy, heart_scale: float = 1.0, pericardial: float = 0.0, hernia=None) -> None:
        self.an, self.heart_scale, self.pericardial, self.hernia = an, heart_scale, pericardial, hernia
        self._cache: dict[str, sdf.Prim] = {}
        a = an
        top, bottom = 400.0, -400.0
        zs = [bottom, a.dome["R"] - 20, a.z_carina, a.z_apex - 30, a.z_apex + 10, top]
        self.cav_ax = sdf.Profile(zs=zs, values=np.array([0.97, 1.0, 0.96, 0.84, 0.72, 0.72]) * a.cav_a)
        self.cav_ay = sdf.Profile(zs=zs, values=np.array([1.0, 1.0, 0.96, 0.86, 0.78, 0.78]) * a.cav_b)
        self.cav_cy = sdf.Profile(
            zs=zs, values=[a.cav_yc, a.cav_yc, a.cav_yc, a.cav_yc - 4, a.cav_yc - 8, a.cav_yc - 8]
        )
        cx = sdf.Profile(zs=[bottom, top], values=[a.dx, a.dx])
        self.cavity = sdf.EllipticCylinder(cx=cx, cy=self.cav_cy, ax=self.cav_ax, ay=self.cav_ay, z0=bottom, z1=top)
        bz = [bottom, -100, 0, 100, top]
        body_ax = sdf.Profile(zs=bz, values=np.array([0.95, 0.98, 1.0, 1.02, 1.02]) * a.body_a)
        body_ay = sdf.Profile(zs=bz, values=np.array([1.0, 1.0, 1.0, 0.97, 0.97]) * a.body_b)
        body_cy = sdf.Profile(zs=[bottom, top], values=[a.body_yc, a.body_yc])
        self.body = csg.Intersect(
            children=[
                sdf.EllipticCylinder(cx=cx, cy=body_cy, ax=body_ax, ay=body_ay, z0=bottom, z1=top),
                sdf.HalfSpace(normal=[0, -1, 0], offset=-a.y_back),
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
        return sdf.HeightField(f=lambda x, y: self.dome_height(x, y) + margin, below=False)

    def below_diaphragm(self, margin: float = 0.0) -> sdf.Prim:
        return sdf.HeightField(f=lambda x, y: self.dome_height(x, y) - margin, below=True)

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
        return sdf.Ellipsoid(center=self.heart_center(), radii=self.heart_radii(grow), rot=self.an.heart_rot)

    def heart_sac(self) -> sdf.Prim:
        """Pericardial sac: heart + epicardial fat + pericardial fluid (slightly more behind/below)."""
        t = self.pericardial
        c = self.heart_center() + np.array([0.0, -0.25 * t, -0.25 * t])
        return sdf.Ellipsoid(center=c, radii=self.heart_radii(4.0 + t), rot=self.an.heart_rot)

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
        half = sdf.Profile(zs=zs, values=np.array([18, 18, 22, 27, 25, 20, 20]) * s)
        y_front = a.cav_yc + a.cav_b + 10

        class _Slab(sdf.Prim):
            def sdf(self_, x, y, z, h):
                return np.maximum(np.abs(x - a.dx) - half(z), np.maximum(a.spine_y - y, y - y_front))

            def bbox(self_):
                return np.array([a.dx - 40, a.spine_y, -400.0]), np.array([a.dx + 40, y_front, 400.0])

        spine = sdf.Box(center=[a.dx, a.spine_y - 10, 0.0], half=[26.0 * s, 40.0, 400.0])
        parts: list[sdf.Prim] = [_Slab(), spine, self.heart_sac()]
        for pts, r in self.vessel_paths().values():
            parts.extend(sdf.polyline(pts, r + 2.5))
        if self.hernia is not None:
            parts.append(sdf.Ellipsoid(center=self.hernia[0], radii=np.asarray(self.hernia[1]) + 3.0))
        self._cache["mediastinum"] = csg.Union(children=parts)
        return self._cache["mediastinum"]

    # -- lungs ----------------------------------------------------------------------------------
    def _apex(self, side: str) -> sdf.Prim:
        a, s = self.an, SIDES[side]
        height = 210.0
        return sdf.Ellipsoid(
            center=[a.dx + s * 0.5 * a.cav_a, a.cav_yc - 5.0, a.z_apex - height],
            radii=[0.64 * a.cav_a, 1.1 * a.cav_b, height],
        )

    def chest_wall_envelope(self, side: str) -> sdf.Prim:
        """The lung's outer surface towards the ribs, apex and diaphragm (no mediastinal side): its
        signed distance is the depth below the costal and diaphragmatic pleura."""
        return csg.Intersect(children=[self.cavity, self._apex(side), self.above_diaphragm()])

    def lung(self, side: str) -> sdf.Prim:
        """One lung: thoracic cavity ∩ apical dome ∩ above the diaphragm, minus the mediastinum."""
        if f"lung_{side}" in self._cache:
            return self._cache[f"lung_{side}"]
        a, s = self.an, SIDES[side]
        half = sdf.HalfSpace(normal=[-s, 0, 0], offset=-s * a.dx)  # s * (x - dx) > 0
        lung = csg.Intersect(
            children=[self.cavity, self._apex(side), half, self.above_diaphragm(), csg.Negate(child=self.mediastinum())]
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
        lower = sdf.HalfSpace(normal=[0, -slope, 1], offset=z_back - slope * y_back)
        upper = csg.Negate(child=lower)
        if lobe in ("RLL", "LLL"):
            return lower
        if lobe == "LUL":
            return upper
        minor = sdf.HalfSpace(normal=[0, 0, 1], offset=a.fissure["R_minor"])  # below the minor fissure
        if lobe == "RML":
            return csg.Intersect(children=[upper, minor])
        return csg.Intersect(children=[upper, csg.Negate(child=minor)])

    def lobe(self, lobe: str) -> sdf.Prim:
        return csg.Intersect(children=[self.lung(LOBE_SIDE[lobe]), self.fissure(lobe)])

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
