"""Paint operations for a patient's normal anatomy (lesions are added by :mod:`.lesions`).

Painting order matters (later operations cover earlier ones): table, body fat, muscle, mediastinal
fat, upper abdomen, lungs, fissures, pulmonary vessels and airways, heart, great vessels, oesophagus,
thyroid, bones. HU values are typical unenhanced chest CT values: fat −100, muscle 45, blood 38,
liver 58, lung about −860 (denser towards the back, as in a supine patient), cortical bone 600–700,
cancellous bone 200–250.
"""

from __future__ import annotations

import numpy as np

from ctvl.data.phantom import csg, sdf
from ctvl.data.phantom.anatomy import SIDES
from ctvl.data.phantom.geometry import Geometry
from ctvl.data.phantom.raster import Region, Scene
from ctvl.data.phantom.trees import LOBES, Tree

HU = {
    "air": -1000.0,
    "fat": -100.0,
    "muscle": 45.0,
    "blood": 38.0,
    "myocardium": 48.0,
    "liver": 58.0,
    "spleen": 48.0,
    "kidney": 32.0,
    "fluid": 12.0,
    "cortical": 650.0,
    "cancellous": 220.0,
    "disc": 85.0,
    "cartilage": 110.0,
    "csf": 12.0,
    "thyroid": 75.0,
    "table": 180.0,
    "wall": 30.0,
}


def lung_field(geo: Geometry):
    """HU of normal lung parenchyma at world points: baseline, supine gravity gradient, texture."""
    an = geo.an
    front, depth = an.cav_yc + an.cav_b, 2.0 * an.cav_b
    waves = an.texture  # rows: (kx, ky, kz, phase)

    def field(x, y, z):
        grad = 45.0 * np.clip((front - y) / depth, 0.0, 1.0)
        tex = 0.0
        for kx, ky, kz, ph in waves.tolist():
            tex = tex + np.sin((kx * x + ky * y + kz * z) * (2 * np.pi / 60.0) + ph)
        return an.lung_hu + grad + 6.0 * tex

    return field


def add_regions(scene: Scene, geo: Geometry) -> None:
    """Named regions: body, lungs, lobes (occupancy cached per slab by the rasteriser)."""
    scene.regions["body"] = Region(geo.body)
    for side in SIDES:
        scene.regions[f"lung_{side}"] = Region(geo.lung(side))
    for lobe in LOBES:
        scene.regions[f"lobe_{lobe}"] = Region(geo.fissure(lobe), within=(f"lung_{lobe[0]}",))


def _bone(scene: Scene, prim: sdf.Prim, inner: sdf.Prim, tag: str = "bone") -> None:
    scene.add(prim, HU["cortical"], tag=tag)
    scene.add(inner, HU["cancellous"], tag=tag)


def _torso(scene: Scene, geo: Geometry) -> None:
    an, s = geo.an, geo.an.scale
    scene.add(
        sdf.Box(center=[0.0, an.y_back - 14.0, 0.0], half=[260.0, 3.5, 400.0], round=1.5), HU["table"], tag="table"
    )
    scene.add("body", HU["fat"], tag="body")
    if an.sex == "F":
        for sx in SIDES.values():
            c = [an.dx + sx * 0.45 * an.body_a, an.body_yc + 0.72 * an.body_b, an.z_carina - 70.0]
            scene.add(sdf.Ellipsoid(center=c, radii=np.array([68.0, 42.0, 62.0]) * s), HU["fat"], tag="body")
            scene.add(sdf.Ellipsoid(center=c, radii=np.array([42.0, 24.0, 40.0]) * s), -20.0, feather=6.0, tag="body")
    scene.add(csg.Offset(child=geo.body, delta=-an.fat), HU["muscle"], tag="muscle")
    above = csg.Intersect(children=[geo.cavity, geo.above_diaphragm()])
    scene.add(above, -85.0, tag="mediastinum")
    scene.add(
        csg.Intersect(children=[csg.Offset(child=geo.cavity, delta=6.0), geo.below_diaphragm()]), 40.0, tag="abdomen"
    )
    abdomen = [geo.cavity, geo.below_diaphragm(5.0)]
    scene.add(csg.Intersect(children=abdomen), -70.0, tag="abdomen")
    for side, sx in SIDES.items():  # upper poles of the kidneys
        c = [an.dx + sx * 58.0 * s, an.spine_y + 6.0, an.dome[side] - 150.0]
        scene.add(
            csg.Intersect(children=[*abdomen, sdf.Ellipsoid(center=c, radii=np.array([30.0, 28.0, 55.0]) * s)]),
            HU["kidney"],
            tag="abdomen",
        )
    liver = sdf.Ellipsoid(
        center=[an.dx + 0.3 * an.cav_a, an.cav_yc - 0.05 * an.cav_b, an.dome["R"] - 85.0],
        radii=[1.05 * an.cav_a, 1.1 * an.cav_b, 105.0],
    )
    scene.add(csg.Intersect(children=[*abdomen, liver]), HU["liver"], tag="liver")
    spleen = sdf.Ellipsoid(
        center=[an.dx - 0.72 * an.cav_a, an.cav_yc - 0.45 * an.cav_b, an.dome["L"] - 50.0],
        radii=np.array([30.0, 55.0, 50.0]) * s,
        rot=sdf.rotation(yaw=np.deg2rad(-30)),
    )
    scene.add(csg.Intersect(children=[*abdomen, spleen]), HU["spleen"], tag="abdomen")
    sc = geo.stomach_center()
    radii = np.array([48.0, 40.0, 45.0]) * s
    scene.add(csg.Intersect(children=[*abdomen, sdf.Ellipsoid(center=sc, radii=radii)]), HU["muscle"], tag="abdomen")
    scene.add(
        csg.Intersect(children=[*abdomen, sdf.Ellipsoid(center=sc, radii=radii - 4.0)]), HU["fluid"], tag="abdomen"
    )
    gas = csg.Intersect(
        children=[
            *abdomen,
            sdf.Ellipsoid(center=sc, radii=radii - 4.0),
            sdf.HalfSpace(normal=[0, 0, -1], offset=-(sc[2] + 0.55 * radii[2])),
        ]
    )
    scene.add(gas, HU["air"], tag="abdomen")


def _lungs(scene: Scene, geo: Geometry) -> None:
    an = geo.an
    field = lung_field(geo)
    for side in SIDES:
        scene.add(f"lung_{side}", field, tag=f"lung_{side}")
    y_back = an.cav_yc - an.cav_b
    for side in SIDES:  # fissures: thin denser planes
        z0, slope = an.fissure[f"{side}_z"], an.fissure[f"{side}_slope"]
        plane = sdf.HalfSpace(normal=[0, -slope, 1], offset=z0 - slope * y_back)
        scene.add(csg.Shell(child=plane, thickness=0.8), -700.0, mode="max", within=(f"lung_{side}",))
    minor = csg.Intersect(children=[sdf.HalfSpace(normal=[0, 0, 1], offset=an.fissure["R_minor"]), geo.fissure("RUL")])
    scene.add(csg.Shell(child=minor, thickness=0.8), -700.0, mode="max", within=("lung_R",))


def airway_ops(
    scene: Scene,
    tree: Tree,
    wall_factor: np.ndarray,
    lumen_factor: np.ndarray,
    wall_tag: np.ndarray,
    lumen_tag: np.ndarray,
) -> None:
    """Bronchial walls, then lumens (so a later wall never covers an earlier lumen).

    Args:
        scene: the scene to add to.
        tree: the bronchial tree (radii = normal lumen radii).
        wall_factor: (N,) multiplier of the normal wall thickness (peribronchial thickening > 1).
        lumen_factor: (N,) multiplier of the lumen radius (bronchiectasis > 1).
        wall_tag, lumen_tag: (N,) mask tag of each segment's wall and lumen.
    """
    r = tree.radius * lumen_factor
    wall = (0.16 * tree.radius + 0.35) * wall_factor
    drawn = (r >= 0.7) | (wall_factor > 1.0)
    for tag in dict.fromkeys(wall_tag):
        sel = drawn & (wall_tag == tag)
        scene.add(sdf.CapsuleSet(a=tree.p0[sel], b=tree.p1[sel], r0=(r + wall)[sel]), HU["wall"], tag=str(tag))
    for tag in dict.fromkeys(lumen_tag):
        sel = (r >= 0.7) & (lumen_tag == tag)
        scene.add(sdf.CapsuleSet(a=tree.p0[sel], b=tree.p1[sel], r0=r[sel]), HU["air"], tag=str(tag))


def _vessels(scene: Scene, geo: Geometry) -> None:
    an = geo.an
    caps = []
    paths = geo.vessel_paths()
    for lobe_idx, lobe in enumerate(LOBES):  # connect each lobar artery to its pulmonary artery
        first = np.nonzero((an.arteries.lobe == lobe_idx) & (an.arteries.gen == 1))[0]
        if first.size:
            pa = paths["right PA" if lobe[0] == "R" else "left PA"][0][-1]
            caps.append(
                sdf.Capsule(a=pa, b=an.arteries.p0[first[0]], r0=6.0 * an.scale, r1=an.arteries.radius[first[0]])
            )
    vessels = sdf.CapsuleSet.of(caps)
    for tree in (an.arteries, an.veins):
        vessels = _merge(vessels, sdf.CapsuleSet(a=tree.p0, b=tree.p1, r0=tree.radius))
    scene.add(vessels, HU["blood"], tag="pulmonary_vessels")


def _merge(a: sdf.CapsuleSet, b: sdf.CapsuleSet) -> sdf.CapsuleSet:
    return sdf.CapsuleSet(
        a=np.concatenate([a.a, b.a]),
        b=np.concatenate([a.b, b.b]),
        r0=np.concatenate([a.r0, b.r0]),
        r1=np.concatenate([a.r1, b.r1]),
        bloom=max(a.bloom, b.bloom),
    )


def _heart(scene: Scene, geo: Geometry) -> None:
    an = geo.an
    inside = csg.Offset(child=geo.cavity, delta=-3.0)
    if geo.pericardial > 0:
        scene.add(csg.Intersect(children=[inside, geo.heart_sac()]), HU["fluid"], tag="Pericardial effusion")
    heart_tag = "Cardiomegaly" if geo.heart_scale > 1.0 else "heart"
    scene.add(csg.Intersect(children=[inside, geo.heart(4.0)]), -90.0, tag="epicardial_fat")
    scene.add(csg.Intersect(children=[inside, geo.heart()]), HU["myocardium"], tag=heart_tag)
    r, rot, c = geo.heart_radii(), an.heart_rot, geo.heart_center()
    chambers = {  # local centre and radii as fractions of the heart's semi-axes
        "LV": ((0.2, 0.25, 0.0), (0.55, 0.42, 0.5)),
        "RV": ((0.05, -0.5, 0.0), (0.5, 0.28, 0.55)),
        "LA": ((-0.6, 0.3, 0.15), (0.32, 0.35, 0.38)),
        "RA": ((-0.55, -0.35, -0.05), (0.32, 0.32, 0.45)),
    }
    for centre, radii in chambers.values():
        scene.add(
            sdf.Ellipsoid(center=c + rot @ (np.array(centre) * r), radii=np.array(radii) * r, rot=rot),
            HU["blood"],
            tag=heart_tag,
        )
    caps = [cap for pts in geo.coronary_paths().values() for cap in sdf.polyline(pts, 1.8)]
    scene.add(sdf.CapsuleSet.of(caps), 40.0, tag="coronary")


def _mediastinum(scene: Scene, geo: Geometry) -> None:
    an, s = geo.an, geo.an.scale
    for name, (pts, r) in geo.vessel_paths().items():
        for cap in sdf.polyline(pts, r):
            scene.add(cap, HU["blood"], tag="aorta" if name == "aorta" else "great_vessels")
    eso = geo.esophagus_path()
    for cap in sdf.polyline(eso[:-1], 7.5 * s):
        scene.add(cap, HU["muscle"], tag="esophagus")
    if an.esophagus_air:
        for cap in sdf.polyline(eso[1:3], 2.5):
            scene.add(cap, HU["air"], tag="esophagus")
    for sx in (1.0, -1.0):  # thyroid lobes beside the trachea
        c = [an.dx + sx * 20.0 * s, an.trachea_y + 8.0, an.z_apex + 32.0]
        scene.add(sdf.Ellipsoid(center=c, radii=np.array([11.0, 9.0, 22.0]) * s), HU["thyroid"], tag="thyroid")
    for offset in ([14.0, 10.0, 16.0], [-3.0, -4.0, -26.0]):  # two small normal nodes (< 8 mm)
        c = np.array([an.dx, an.trachea_y, an.z_carina]) + np.array(offset) * s
        scene.add(sdf.Ellipsoid(center=c, radii=[3.5, 2.5, 4.0]), 30.0, tag="nodes")


def _spine(scene: Scene, geo: Geometry) -> None:
    an, s = geo.an, geo.an.scale
    const = lambda v: sdf.Profile(zs=[-400.0, 400.0], values=[v, v])  # noqa: E731
    body = sdf.EllipticCylinder(
        cx=const(an.dx), cy=const(an.spine_y), ax=const(21.0 * s), ay=const(17.0 * s), z0=-400, z1=400
    )
    slabs = sdf.PeriodicSlabs(z0=an.rib_z0 - 12.0, period=27.0 * s, thickness=22.0 * s)
    scene.add(body, HU["disc"], tag="bone")
    _bone(
        scene,
        csg.Intersect(children=[body, slabs]),
        csg.Intersect(children=[csg.Offset(child=body, delta=-2.0), csg.Offset(child=slabs, delta=-1.5)]),
    )
    canal_y = an.spine_y - 17.0 * s - 10.0 * s
    arch = csg.Intersect(
        children=[sdf.Box(center=[an.dx, canal_y, 0.0], half=[15.0 * s, 12.0 * s, 400.0], round=4.0), slabs]
    )
    spinous = csg.Intersect(
        children=[
            sdf.Box(
                center=[an.dx, (canal_y + an.y_back + 18.0) / 2, 0.0],
                half=[4.0, (canal_y - an.y_back - 18.0) / 2, 400.0],
            ),
            slabs,
        ]
    )
    transverse = csg.Intersect(
        children=[sdf.Box(center=[an.dx, canal_y + 4.0, 0.0], half=[36.0 * s, 5.0, 400.0], round=3.0), slabs]
    )
    for prim in (arch, spinous, transverse):
        scene.add(prim, 450.0, tag="bone")
    scene.add(
        sdf.EllipticCylinder(cx=const(an.dx), cy=const(canal_y), ax=const(8.0 * s), ay=const(7.5 * s), z0=-400, z1=400),
        HU["csf"],
        tag="bone",
    )


def _ribs(scene: Scene, geo: Geometry) -> None:
    an, s = geo.an, geo.an.scale
    outer, inner, cartilage = [], [], []
    for k in range(14):
        z_post = an.rib_z0 - k * an.rib_step
        if z_post < -260.0:
            break
        end = 0.55 if k >= 10 else 0.80
        for sx in SIDES.values():
            psi = np.linspace(0.12, end, 9) * np.pi
            cart = np.linspace(0.80, 0.93, 3) * np.pi
            pts = []
            for p in np.concatenate([psi, cart if k < 10 else []]):
                z = z_post - 55.0 * s * (1 - np.cos((p / np.pi - 0.12) / 0.81 * np.pi)) / 2
                a, b, cy = geo.cav_ax(z) + 7.0, geo.cav_ay(z) + 7.0, geo.cav_cy(z)
                pts.append([an.dx + sx * a * np.sin(p), cy - b * np.cos(p), z])
            pts = np.array(pts)
            outer += sdf.polyline(pts[: len(psi)], 4.5 * s)
            inner += sdf.polyline(pts[: len(psi)], 2.3 * s)
            if k < 10:
                cartilage += sdf.polyline(pts[len(psi) - 1 :], 4.0 * s)
    scene.add(sdf.CapsuleSet.of(outer), HU["cortical"], tag="bone")
    scene.add(sdf.CapsuleSet.of(inner), HU["cancellous"], tag="bone")
    scene.add(sdf.CapsuleSet.of(cartilage), HU["cartilage"], tag="bone")
    # sternum (manubrium and body), clavicles, scapulae
    front = lambda z: float(geo.cav_cy(z) + geo.cav_ay(z))  # noqa: E731
    zm = an.z_apex - 12.0
    man = sdf.Box(center=[an.dx, front(zm) + 6.0, zm], half=[24.0 * s, 7.0, 22.0], round=3.0)
    z_top, z_bot = zm - 24.0, an.dome["R"] - 5.0
    zb = (z_top + z_bot) / 2
    body = sdf.Box(center=[an.dx, front(zb) + 6.0, zb], half=[14.0 * s, 6.5, (z_top - z_bot) / 2], round=3.0)
    for prim in (man, body):
        _bone(scene, prim, csg.Offset(child=prim, delta=-2.0), tag="sternum")
    for sx in SIDES.values():
        a = [an.dx + sx * 22.0 * s, front(zm) + 10.0, zm + 10.0]
        b = [an.dx + sx * 0.8 * an.body_a, front(zm) - 20.0, zm + 34.0]
        _bone(scene, sdf.Capsule(a=a, b=b, r0=7.0 * s), sdf.Capsule(a=a, b=b, r0=4.0 * s))
        p = 0.3 * np.pi
        zc = an.z_carina + 10.0
        a_, b_, cy = geo.cav_ax(zc) + 26.0, geo.cav_ay(zc) + 26.0, geo.cav_cy(zc)
        centre = [an.dx + sx * a_ * np.sin(p), cy - b_ * np.cos(p), zc]
        tangent = np.array([sx * a_ * np.cos(p), b_ * np.sin(p), 0.0])
        rot = sdf.frame_from(np.cross(tangent, [0.0, 0.0, 1.0]))
        scene.add(sdf.Ellipsoid(center=centre, radii=np.array([48.0, 62.0, 4.5]) * s, rot=rot), 420.0, tag="bone")


def anatomy_scene(
    geo: Geometry,
    wall_factor: np.ndarray | None = None,
    lumen_factor: np.ndarray | None = None,
    wall_tag: np.ndarray | None = None,
    lumen_tag: np.ndarray | None = None,
) -> Scene:
    """The normal-anatomy scene of a patient (airways optionally modified by findings).

    Args:
        geo: the patient's geometry.
        wall_factor, lumen_factor, wall_tag, lumen_tag: per-airway-segment arrays (see
            :func:`airway_ops`); defaults are a normal airway tree.
    """
    scene = Scene()
    add_regions(scene, geo)
    n = len(geo.an.airways)
    _torso(scene, geo)
    _lungs(scene, geo)
    _vessels(scene, geo)
    airway_ops(
        scene,
        geo.an.airways,
        np.ones(n) if wall_factor is None else wall_factor,
        np.ones(n) if lumen_factor is None else lumen_factor,
        np.full(n, "airway_wall") if wall_tag is None else wall_tag,
        np.full(n, "airway_lumen") if lumen_tag is None else lumen_tag,
    )
    _heart(scene, geo)
    _mediastinum(scene, geo)
    _spine(scene, geo)
    _ribs(scene, geo)
    return scene
