"""Drawing a phantom patient's normal anatomy: habitus, organ sizes and positions, airway and vessel trees.

:func:`sample_anatomy` fills an :class:`~ctvl.data.phantom.anatomy.Anatomy` from one random stream,
then grows the trees inside the lobes that :class:`~ctvl.data.phantom.geometry.Geometry` places.
"""

from __future__ import annotations

import numpy as np

from ctvl.data.phantom import sdf
from ctvl.data.phantom.anatomy import Anatomy
from ctvl.data.phantom.geometry import Geometry
from ctvl.data.phantom.trees import companion, grow_tree

__all__ = ["sample_anatomy"]


def _sample_trees(an: Anatomy, rng: np.random.Generator) -> None:
    """Grow airways, arteries and veins inside the (normal) lobes of ``an`` (in place)."""
    geo = Geometry(an=an)
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
