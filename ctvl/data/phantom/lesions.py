"""Paint a patient's findings into its scene (after the normal anatomy).

Each finding is drawn the way it looks on an unenhanced chest CT (HU before partial-volume
averaging; metal and calcium use their true, unclipped attenuation so thin wires and small plaques
stay bright after averaging, as they do on real scans):

=========================  =====================================================================
medical material           port reservoir / pacemaker can (metal, > 3000 HU, with streaks), leads
                           and catheter; sternotomy wire loops around the sternum
arterial calcification     curved plaques (1,800 HU) on the aortic wall
coronary calcification     calcified spots (1,600 HU) along the LAD / LCx / RCA
cardiomegaly               whole heart scaled up (cardiothoracic ratio 0.55–0.66), via the geometry
pericardial effusion       fluid rim (12 HU) between heart and pericardium, via the geometry
hiatal hernia              retrocardiac sac above the hiatus: wall, fluid (20 HU) and an air cap
lymphadenopathy            soft-tissue ovals (35 HU), short axis > 10 mm, at mediastinal stations
emphysema                  low-attenuation holes (−990 HU) or lobar density loss
atelectasis                plate-like bands or dependent / passive collapse (30 HU)
lung nodule                solid ovals (35 HU), spiculated when ≥ 12 mm
lung opacity               hazy ground-glass patches (−620 … −450 HU) that spare vessels
fibrotic sequela           linear bands (0 HU) and apical pleural thickening
pleural effusion           dependent fluid layer (12 HU) with a meniscus, per side
mosaic attenuation         lobular patches alternately −75 / +55 HU from baseline lung
peribronchial thickening   bronchial walls 3–4× thicker (via the airway tree)
consolidation              dense areas (20–40 HU) with air bronchograms
bronchiectasis             bronchi dilated 1.9–2.7× (larger than the adjacent artery), cysts
septal thickening          polygonal network (Voronoi walls, 1.2–1.9 mm) within 12–22 mm of the pleura
=========================  =====================================================================
"""

from __future__ import annotations

import numpy as np

from ctvl.data.phantom import csg, sdf
from ctvl.data.phantom.anatomy import SIDES
from ctvl.data.phantom.findings import Finding
from ctvl.data.phantom.geometry import Geometry
from ctvl.data.phantom.raster import Region, Scene
from ctvl.data.phantom.trees import LOBE_SIDE, LOBES


class _FluidLevel(sdf.Prim):
    """Dependent layer of a supine patient: ``y < y_back + t(z)``, thickest at the lung base."""

    def __init__(self, geo: Geometry, side: str, depth: float) -> None:
        an = geo.an
        self.y_back = an.cav_yc - an.cav_b
        self.z_base = an.dome[side] - 70.0
        self.z_top = an.dome[side] + 40.0 + 2.0 * depth
        self.depth = depth
        s = SIDES[side]
        self.box = (
            np.array([min(an.dx, an.dx + s * 200.0), self.y_back - 10.0, self.z_base - 30.0]),
            np.array([max(an.dx, an.dx + s * 200.0), self.y_back + depth + 10.0, self.z_top]),
        )

    def sdf(self, x, y, z, h):
        t = self.depth * np.sqrt(np.clip((self.z_top - z) / (self.z_top - self.z_base), 0.0, 1.0))
        return (y - self.y_back) - t

    def bbox(self):
        return self.box


def _point_on(path: np.ndarray, t: float) -> tuple[np.ndarray, np.ndarray]:
    """Point and unit tangent at parameter ``t`` (segment index + fraction) of a polyline."""
    i = int(np.clip(np.floor(t), 0, len(path) - 2))
    f = t - i
    d = path[i + 1] - path[i]
    return path[i] + f * d, d / (np.linalg.norm(d) + 1e-9)


def _along(path: np.ndarray, frac: float) -> np.ndarray:
    """Point at arc-length fraction ``frac`` of a polyline."""
    seg = np.linalg.norm(np.diff(path, axis=0), axis=1)
    target = frac * seg.sum()
    i = int(np.searchsorted(np.cumsum(seg), target))
    i = min(i, len(seg) - 1)
    before = np.cumsum(seg)[i] - seg[i]
    return path[i] + (target - before) / (seg[i] + 1e-9) * (path[i + 1] - path[i])


def _spheres(points, radii, bloom: float = 0.0) -> sdf.CapsuleSet:
    pts = np.asarray(points, dtype=float).reshape(-1, 3)
    return sdf.CapsuleSet(a=pts, b=pts, r0=np.asarray(radii, dtype=float), bloom=bloom)


def _lung_parenchyma(scene: Scene, geo: Geometry, f: dict[str, Finding]) -> None:
    if (m := f.get("Mosaic attenuation pattern")) is not None:
        from scipy.spatial import cKDTree

        tree, offsets = cKDTree(m.params["seeds"]), m.params["offsets"]

        def mosaic(x, y, z):
            _, idx = tree.query(np.stack([x, y, z], axis=1))
            return offsets[idx]

        for lobe in m.lobes:
            scene.add(f"lobe_{lobe}", mosaic, mode="add", tag=m.label)
    if (e := f.get("Emphysema")) is not None:
        for side in SIDES:
            holes = [(p, r) for p, r, lobe in e.params["holes"] if LOBE_SIDE[lobe] == side]
            if e.kind == "panlobular":
                for lobe in e.lobes:
                    if LOBE_SIDE[lobe] == side:
                        scene.add(f"lobe_{lobe}", -90.0, mode="add", tag=e.label)
            if holes:
                pts, radii = zip(*holes)
                scene.add(_spheres(pts, radii), -990.0, mode="min", within=(f"lung_{side}",), tag=e.label)
    if (st := f.get("Interlobular septal thickening")) is not None:
        seeds, seed_lobes = st.params["seeds"], np.asarray(st.params["seed_lobes"])
        for side in SIDES:  # one network per lung (or per lobe when only some lobes are involved)
            lobes = [lobe for lobe in st.lobes if LOBE_SIDE[lobe] == side]
            whole = set(lobes) == {lobe for lobe in LOBES if LOBE_SIDE[lobe] == side}
            groups = [(lobes, f"lung_{side}")] if whole else [([lobe], f"lobe_{lobe}") for lobe in lobes]
            for group, region in groups:
                if not group:
                    continue
                walls = csg.VoronoiWalls(seeds=seeds[np.isin(seed_lobes, group)], width=st.params["width"])
                band = csg.Negate(
                    child=csg.Offset(child=geo.chest_wall_envelope(side), delta=-st.params["band"])
                )  # near the pleura
                scene.add(csg.Intersect(children=[band, walls]), -120.0, mode="max", within=(region,), tag=st.label)
    if (o := f.get("Lung opacity")) is not None:
        for p, r, hu, lobe in o.params["blobs"]:
            scene.add(
                sdf.Ellipsoid(center=p, radii=[r, 0.8 * r, 0.9 * r]),
                hu,
                mode="max",
                feather=8.0,
                within=(f"lobe_{lobe}",),
                tag=o.label,
            )


def _consolidation(scene: Scene, geo: Geometry, c: Finding, lumen_factor: np.ndarray) -> None:
    tree = geo.an.airways
    for k, (lobe, pts, radii, hu) in enumerate(c.params["areas"]):
        name = f"consolidation_{k}"
        scene.regions[name] = Region(
            csg.Union(children=[sdf.Ellipsoid(center=p, radii=r) for p, r in zip(pts, radii)]), within=(f"lobe_{lobe}",)
        )
        scene.add(name, hu, tag=c.label)
        sel = (tree.lobe == LOBES.index(lobe)) & (tree.radius * lumen_factor >= 0.7)
        r = (tree.radius * lumen_factor)[sel]
        scene.add(sdf.CapsuleSet(a=tree.p0[sel], b=tree.p1[sel], r0=r), -930.0, within=(name,), tag="air_bronchogram")


def _collapse(scene: Scene, geo: Geometry, f: dict[str, Finding]) -> None:
    if (a := f.get("Atelectasis")) is not None:
        if a.kind == "subsegmental":
            for (p, l1, l2, t, yaw), lobe in zip(a.params["plates"], a.lobes):
                # a thin plate standing roughly upright: a line on axial slices, a band on coronal ones
                rot = sdf.rotation(yaw=yaw, roll=np.deg2rad(15.0))
                scene.add(
                    sdf.Ellipsoid(center=p, radii=[l1, t, l2], rot=rot), 30.0, within=(f"lobe_{lobe}",), tag=a.label
                )
        else:
            effusion = f.get("Pleural effusion")
            for lobe in a.lobes:
                side = LOBE_SIDE[lobe]
                depth = a.params["band"]
                if a.kind == "passive" and effusion is not None:
                    depth += effusion.params["depth"].get(side, 0.0)
                scene.add(_FluidLevel(geo, side, depth), 30.0, feather=3.0, within=(f"lobe_{lobe}",), tag=a.label)
    if (n := f.get("Lung nodule")) is not None:
        for p, d, lobe, v in n.params["nodules"]:
            r = d / 2 * (1.0 + 0.08 * np.tanh(v))
            rot = sdf.rotation(*v)
            scene.add(sdf.Ellipsoid(center=p, radii=r, rot=rot), 35.0, within=(f"lung_{LOBE_SIDE[lobe]}",), tag=n.label)
            if d >= 12.0:  # spiculated margin
                local = np.random.default_rng(np.abs(np.round(p * 10)).astype(np.int64).tolist())
                dirs = local.normal(size=(6, 3))
                dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
                ends = p + dirs * d * local.uniform(0.8, 1.1, size=(6, 1))
                scene.add(
                    sdf.CapsuleSet(a=np.repeat(p[None], 6, 0), b=ends, r0=1.0, r1=0.4),
                    0.0,
                    mode="max",
                    within=(f"lung_{LOBE_SIDE[lobe]}",),
                    tag=n.label,
                )
    if (fs := f.get("Pulmonary fibrotic sequela")) is not None:
        for side in SIDES:
            bands = [b for b in fs.params["bands"] if (b[0][0] - geo.an.dx) * SIDES[side] > 0]
            if bands:
                a_, b_, r_ = zip(*bands)
                scene.add(sdf.CapsuleSet(a=a_, b=b_, r0=r_), 0.0, mode="max", within=(f"lung_{side}",), tag=fs.label)
        if fs.kind == "apical":
            for lobe in fs.lobes:
                side = LOBE_SIDE[lobe]
                cap = csg.Intersect(
                    children=[
                        csg.Shell(child=geo.lung(side), thickness=8.0),
                        sdf.HalfSpace(normal=[0, 0, -1], offset=-(geo.an.z_apex - 30.0)),
                    ]
                )
                scene.add(cap, 20.0, within=(f"lung_{side}",), tag=fs.label)
    if (pe := f.get("Pleural effusion")) is not None:
        for side, depth in pe.params["depth"].items():
            scene.add(_FluidLevel(geo, side, depth), 12.0, within=(f"lung_{side}",), tag=pe.label)


def _mediastinal(scene: Scene, geo: Geometry, f: dict[str, Finding]) -> None:
    if (hh := f.get("Hiatal hernia")) is not None:
        c, r = hh.params["center"], hh.params["radii"]
        scene.add(sdf.Ellipsoid(center=c, radii=r), 40.0, tag=hh.label)
        scene.add(sdf.Ellipsoid(center=c, radii=r - 3.0), 20.0, tag=hh.label)
        gas = csg.Intersect(
            children=[
                sdf.Ellipsoid(center=c, radii=r - 3.0),
                sdf.HalfSpace(normal=[0, 0, -1], offset=-(c[2] + 0.1 * r[2])),
            ]
        )
        scene.add(gas, -1000.0, tag=hh.label)
    if (ln := f.get("Lymphadenopathy")) is not None:
        for centre, short, long in ln.params["nodes"]:
            scene.add(sdf.Ellipsoid(center=centre, radii=[short / 2, short / 2 * 1.05, long / 2]), 35.0, tag=ln.label)
    if (ac := f.get("Arterial wall calcification")) is not None:
        path, radii = geo.aorta_path()
        a_, b_ = [], []
        for t, phi, arc, _thick in ac.params["plaques"]:
            centre, tangent = _point_on(path, t)
            r = np.interp(t, np.arange(len(radii)), radii) - 0.3
            frame = sdf.frame_from(tangent)
            ang = phi + np.linspace(0.0, arc, 4)
            pts = centre + r * (np.cos(ang)[:, None] * frame[:, 0] + np.sin(ang)[:, None] * frame[:, 1])
            a_ += list(pts[:-1])
            b_ += list(pts[1:])
        thick = np.repeat([p[3] for p in ac.params["plaques"]], 3)
        scene.add(sdf.CapsuleSet(a=a_, b=b_, r0=thick, bloom=0.3), 1800.0, mode="max", tag=ac.label)
    if (cc := f.get("Coronary artery wall calcification")) is not None:
        paths = geo.coronary_paths()
        pts = [_along(paths[v], t) for v, t, _ in cc.params["spots"]]
        scene.add(_spheres(pts, [r for _, _, r in cc.params["spots"]], bloom=0.35), 1600.0, mode="max", tag=cc.label)


class _Streaks(sdf.Prim):
    """Box around a metal object; used with a streak-artefact field."""

    def __init__(self, centre: np.ndarray, half_z: float) -> None:
        self.box = (np.array([-250.0, -250.0, centre[2] - half_z]), np.array([250.0, 250.0, centre[2] + half_z]))

    def sdf(self, x, y, z, h):
        return np.maximum(self.box[0][2] - z, z - self.box[1][2])

    def bbox(self):
        return self.box


def _streak_field(centre: np.ndarray, n: int, phase: float, amp: float = 140.0):
    def field(x, y, z):
        dx, dy = x - centre[0], y - centre[1]
        rho, theta = np.hypot(dx, dy), np.arctan2(dy, dx)
        return amp * np.cos(n * theta + phase) * np.exp(-rho / 80.0) * np.clip((rho - 12.0) / 10.0, 0.0, 1.0)

    return field


def _metal(scene: Scene, geo: Geometry, mm: Finding) -> None:
    an, p = geo.an, mm.params
    paths = geo.vessel_paths()
    svc = paths["SVC"][0]
    junction = svc[-1]
    if "port" in p:
        port = p["port"]
        s = 1.0 if p["port_side"] == "R" else -1.0
        route = np.array([port, [an.dx + s * 45.0, port[1] - 25.0, port[2] + 40.0], _along(svc, 0.3), junction])
        scene.add(sdf.CapsuleSet.of(sdf.polyline(route, 1.3), bloom=0.2), 400.0, mode="max", tag=mm.label)
        scene.add(sdf.Ellipsoid(center=port, radii=[13.0, 6.0, 13.0], bloom=0.3), 9000.0, tag=mm.label)
        scene.add(_Streaks(port, 9.0), _streak_field(port, 9, 0.3), mode="add", within=("body",))
    if "pacemaker" in p:
        gen = p["pacemaker"]
        s = 1.0 if p["pacemaker_side"] == "R" else -1.0
        c, rot = geo.heart_center(), an.heart_rot
        rv_apex = c + rot @ (np.array([0.75, -0.35, -0.1]) * geo.heart_radii())
        ra = c + rot @ (np.array([-0.55, -0.35, -0.05]) * geo.heart_radii())
        route = np.array(
            [gen, [an.dx + s * 35.0, an.trachea_y + 15.0, an.z_apex - 10.0], _along(svc, 0.2), junction, ra, rv_apex]
        )
        scene.add(sdf.CapsuleSet.of(sdf.polyline(route, 1.0), bloom=0.3), 8000.0, mode="max", tag=mm.label)
        scene.add(sdf.Ellipsoid(center=gen, radii=[22.0, 5.0, 18.0], bloom=0.3), 12000.0, tag=mm.label)
        scene.add(_Streaks(gen, 8.0), _streak_field(gen, 11, 1.1), mode="add", within=("body",))
    if "wires" in p:
        z_top, z_bot = an.z_apex - 40.0, an.dome["R"] + 5.0
        for z in np.linspace(z_top, z_bot, p["wires"]):
            y = float(geo.cav_cy(z) + geo.cav_ay(z)) + 6.0
            scene.add(
                sdf.Torus(center=[an.dx, y, z], major=10.0 * an.scale, minor=0.9, bloom=0.3),
                20000.0,
                mode="max",
                tag=mm.label,
            )


def lesion_ops(scene: Scene, geo: Geometry, findings: dict[str, Finding], lumen_factor: np.ndarray) -> None:
    """Append the paint operations of ``findings`` to ``scene``.

    Args:
        scene: the patient's normal-anatomy scene (built with the same ``geo``).
        geo: the geometry (already reshaped by cardiomegaly / pericardial effusion / hernia).
        findings: label → :class:`Finding`.
        lumen_factor: (N,) airway lumen multipliers (bronchiectasis), for air bronchograms.
    """
    _lung_parenchyma(scene, geo, findings)
    if (c := findings.get("Consolidation")) is not None:
        _consolidation(scene, geo, c, lumen_factor)
    if (b := findings.get("Bronchiectasis")) is not None and b.kind == "cystic":
        tree = geo.an.airways
        leaves = np.isin(tree.lobe, [LOBES.index(lobe) for lobe in b.lobes]) & (tree.leaves == 1)
        ends = tree.p1[leaves][::3]
        r = np.full(len(ends), b.params["cysts"])
        scene.add(_spheres(ends, r + 1.2), 30.0, tag=b.label)
        scene.add(_spheres(ends, r), -1000.0, tag=b.label)
    _collapse(scene, geo, findings)
    _mediastinal(scene, geo, findings)
    if (mm := findings.get("Medical material")) is not None:
        _metal(scene, geo, mm)
