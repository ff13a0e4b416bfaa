"""Structured descriptors of a patient's abnormalities: side, location, size, severity, subtype.

For every positive label a :class:`Finding` is drawn from that label's own random stream (so forcing
one label on or off never changes the others), using the patient's normal geometry for positions.
:mod:`.lesions` paints findings into the scene; :mod:`.reports` writes them into the report. The
:class:`Finding` record and the shared drawing helpers live in :mod:`.descriptors`.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ctvl.data.phantom.descriptors import LOBE_WEIGHT, SIDE_WORD, Finding, airway_lobes, grade, pick_lobes, sides_of
from ctvl.data.phantom.geometry import Geometry
from ctvl.data.phantom.trees import LOBE_SIDE, LOBES

__all__ = ["LOBE_WEIGHT", "SAMPLERS", "SIDE_WORD", "STATIONS", "Finding", "sample_findings"]

STATIONS = ("right paratracheal", "subcarinal", "prevascular", "aortopulmonary window", "right hilar", "left hilar")


def _body_front(geo: Geometry, x: float) -> float:
    an = geo.an
    u = np.clip((x - an.dx) / an.body_a, -0.95, 0.95)
    return float(an.body_yc + an.body_b * np.sqrt(1 - u**2))


def _medical_material(rng, geo: Geometry, found) -> Finding:
    an = geo.an
    n = 2 if rng.random() < 0.15 else 1
    kinds = tuple(
        sorted(
            rng.choice(["port catheter", "pacemaker", "sternotomy wires"], size=n, replace=False, p=[0.45, 0.25, 0.3])
        )
    )
    params: dict = {}
    side = ""
    for kind in kinds:
        if kind == "port catheter":
            s = 1.0 if rng.random() < 0.75 else -1.0
            x = an.dx + s * 0.42 * an.body_a
            z = an.z_carina + rng.uniform(25, 45)
            params["port"] = np.array([x, _body_front(geo, x) - 0.5 * an.fat - 8.0, z])
            params["port_side"] = "R" if s > 0 else "L"
        elif kind == "pacemaker":
            s = -1.0 if rng.random() < 0.85 else 1.0
            x = an.dx + s * 0.5 * an.body_a
            z = an.z_apex - rng.uniform(25, 40)
            params["pacemaker"] = np.array([x, _body_front(geo, x) - 0.5 * an.fat - 8.0, z])
            params["pacemaker_side"] = "R" if s > 0 else "L"
        else:
            params["wires"] = int(rng.integers(5, 8))
    if "port_side" in params or "pacemaker_side" in params:
        side = params.get("pacemaker_side", params.get("port_side", ""))
    return Finding("Medical material", kind=" and ".join(kinds), side=side, params=params)


def _arterial_calcification(rng, geo: Geometry, found) -> Finding:
    severity = rng.choice(["mild", "moderate", "severe"], p=[0.45, 0.35, 0.2])
    segments = [
        seg
        for seg, p in (("ascending aorta", 0.35), ("aortic arch", 0.8), ("descending aorta", 0.75))
        if rng.random() < p
    ]
    segments = segments or ["aortic arch"]
    n = {"mild": (3, 6), "moderate": (6, 11), "severe": (11, 19)}[severity]
    spans = {"ascending aorta": (0.0, 1.0), "aortic arch": (1.0, 4.0), "descending aorta": (4.0, 7.5)}
    plaques = []
    for _ in range(int(rng.integers(*n))):
        seg = segments[int(rng.integers(len(segments)))]
        t = rng.uniform(*spans[seg])
        plaques.append((t, rng.uniform(0, 2 * np.pi), rng.uniform(0.5, 1.3), rng.uniform(1.0, 1.8)))
    return Finding(
        "Arterial wall calcification",
        kind="calcified atheroma",
        location=tuple(segments),
        severity=str(severity),
        params={"plaques": plaques},
    )


def _cardiomegaly(rng, geo: Geometry, found) -> Finding:
    ctr = rng.uniform(0.55, 0.66)
    base = geo.cardiothoracic_ratio()
    lo, hi = 1.0, 2.5
    for _ in range(40):  # heart scale that gives the target cardiothoracic ratio
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if Geometry(an=geo.an, heart_scale=mid).cardiothoracic_ratio() < ctr else (lo, mid)
    scale = max(1.12, (lo + hi) / 2)
    ctr = max(ctr, base * 1.12)
    severity = "mild" if ctr < 0.58 else ("moderate" if ctr < 0.62 else "severe")
    return Finding("Cardiomegaly", size_mm=0.0, severity=severity, params={"scale": scale, "ctr": ctr})


def _pericardial_effusion(rng, geo: Geometry, found) -> Finding:
    t = rng.uniform(5.0, 20.0)
    return Finding(
        "Pericardial effusion", size_mm=round(t), severity=grade(t, (7.0, 10.0, 15.0)), params={"thickness": t}
    )


def _coronary_calcification(rng, geo: Geometry, found) -> Finding:
    vessels = [v for v, p in (("LAD", 0.85), ("LCx", 0.45), ("RCA", 0.55)) if rng.random() < p] or ["LAD"]
    severity = rng.choice(["mild", "moderate", "severe"], p=[0.45, 0.35, 0.2])
    per = {"mild": (1, 3), "moderate": (2, 4), "severe": (3, 6)}[severity]
    spots = [
        (v, rng.uniform(0.0, 0.75), rng.uniform(1.6, 3.0)) for v in vessels for _ in range(int(rng.integers(*per)))
    ]
    return Finding(
        "Coronary artery wall calcification", location=tuple(vessels), severity=str(severity), params={"spots": spots}
    )


def _hiatal_hernia(rng, geo: Geometry, found) -> Finding:
    an = geo.an
    size = rng.uniform(30.0, 70.0)
    vb = an.spine_y + 17.0 * an.scale
    center = np.array([an.dx - 8.0, vb + 24.0 + 0.3 * size, an.dome["L"] + 0.3 * size])
    radii = np.array([0.5, 0.42, 0.45]) * size
    kind = "sliding" if size < 50 else "large"
    return Finding("Hiatal hernia", kind=kind, size_mm=round(size), params={"center": center, "radii": radii})


def _lymphadenopathy(rng, geo: Geometry, found) -> Finding:
    an, s = geo.an, geo.an.scale
    k = int(rng.choice([1, 2, 3, 4], p=[0.4, 0.3, 0.2, 0.1]))
    w = np.array([0.25, 0.25, 0.12, 0.13, 0.13, 0.12])
    stations = tuple(STATIONS[i] for i in sorted(rng.choice(len(STATIONS), size=k, replace=False, p=w)))
    ty, zc, dx = an.trachea_y, an.z_carina, an.dx
    nodes = []
    for st in stations:
        short = rng.uniform(10.5, 24.0)
        short = min(short, 20.0) if st == "aortopulmonary window" else short
        centre = {
            "right paratracheal": [dx + 10.0 + 0.5 * short, ty + 4.0, zc + 20.0],
            "subcarinal": [dx - 2.0, ty - 4.0, zc - 14.0 - 0.5 * short],
            "prevascular": [dx + 4.0, ty + 34.0 * s + an.aorta_r + 0.5 * short + 3.0, zc + 18.0],
            "aortopulmonary window": [dx - 20.0 * s, ty + 12.0, zc + 12.0],
            "right hilar": list(an.hilum("R") + [10.0 + 0.3 * short, 10.0, -12.0]),
            "left hilar": list(an.hilum("L") + [-10.0 - 0.3 * short, 10.0, -10.0]),
        }[st]
        nodes.append((np.array(centre), short, short * rng.uniform(1.2, 1.6)))
    largest = max(n[1] for n in nodes)
    return Finding(
        "Lymphadenopathy",
        location=stations,
        size_mm=round(largest),
        severity=grade(largest, (0, 15, 20)),
        params={"nodes": nodes},
    )


def _emphysema(rng, geo: Geometry, found) -> Finding:
    kind = str(rng.choice(["centrilobular", "paraseptal", "panlobular"], p=[0.6, 0.2, 0.2]))
    severity = str(rng.choice(["mild", "moderate", "severe"], p=[0.5, 0.33, 0.17]))
    side = "B" if rng.random() < 0.85 else str(rng.choice(["R", "L"]))
    lobes_by_kind = {
        "centrilobular": ("RUL", "LUL"),
        "paraseptal": ("RUL", "LUL", "RLL", "LLL"),
        "panlobular": ("RLL", "LLL"),
    }
    lobes = tuple(lobe for lobe in lobes_by_kind[kind] if side == "B" or LOBE_SIDE[lobe] == side)
    count = {"mild": 18, "moderate": 40, "severe": 80}[severity]
    per = max(3, count // len(lobes))
    pts = geo.sample_lobes(rng, {lobe: 4 * per for lobe in lobes}, depth=4.0)
    holes = []
    for lobe in lobes:
        cand = pts[lobe]
        if kind == "paraseptal":  # keep the candidates closest to the pleura
            cand = cand[np.argsort(geo.pleural_depth(LOBE_SIDE[lobe], cand), kind="stable")]
        for p in cand[:per]:
            r = rng.uniform(5.0, 10.0) if kind != "paraseptal" else rng.uniform(7.0, 15.0)
            holes.append((p, r, lobe))
    return Finding("Emphysema", kind=kind, side=side, lobes=lobes, severity=severity, params={"holes": holes})


def _atelectasis(rng, geo: Geometry, found) -> Finding:
    eff = found.get("Pleural effusion")
    if eff is not None and rng.random() < 0.7:
        side = eff.side if eff.side != "B" else str(rng.choice(["R", "L", "B"]))
        lobes = tuple(lobe for lobe in ("RLL", "LLL") if side == "B" or LOBE_SIDE[lobe] == side)
        return Finding("Atelectasis", kind="passive", side=side, lobes=lobes, params={"band": rng.uniform(10.0, 18.0)})
    kind = str(rng.choice(["subsegmental", "dependent"], p=[0.7, 0.3]))
    if kind == "dependent":
        side = str(rng.choice(["R", "L", "B"], p=[0.3, 0.2, 0.5]))
        lobes = tuple(lobe for lobe in ("RLL", "LLL") if side == "B" or LOBE_SIDE[lobe] == side)
        return Finding("Atelectasis", kind=kind, side=side, lobes=lobes, params={"band": rng.uniform(8.0, 16.0)})
    lobes = pick_lobes(rng, int(rng.choice([1, 2], p=[0.65, 0.35])), ("RML", "RLL", "LUL", "LLL"))
    pts = geo.sample_lobes(rng, {lobe: 1 for lobe in lobes}, depth=12.0)
    plates = [
        (pts[lobe][0], rng.uniform(22.0, 38.0), rng.uniform(16.0, 26.0), rng.uniform(2.5, 4.0), rng.uniform(0, np.pi))
        for lobe in lobes
    ]
    return Finding("Atelectasis", kind=kind, side=sides_of(lobes), lobes=lobes, params={"plates": plates})


def _nodule(rng, geo: Geometry, found) -> Finding:
    n = int(rng.choice([1, 2, 3, 4, 5], p=[0.55, 0.2, 0.12, 0.08, 0.05]))
    lobes = [
        str(lobe)
        for lobe in rng.choice(LOBES, size=n, p=np.array(list(LOBE_WEIGHT.values())) / sum(LOBE_WEIGHT.values()))
    ]
    sizes = [float(np.clip(np.exp(rng.normal(np.log(9.0), 0.4)), 5.0, 24.0))] + [
        rng.uniform(4.5, 9.0) for _ in range(n - 1)
    ]
    nodules = []
    for lobe, d in zip(lobes, sizes):
        p = geo.sample_lobes(rng, {lobe: 1}, depth=d / 2 + 4.0)[lobe][0]
        nodules.append((p, d, lobe, rng.normal(size=3)))
    big = int(np.argmax(sizes))
    uniq = tuple(sorted(set(lobes), key=LOBES.index))
    return Finding(
        "Lung nodule",
        kind="solid",
        side=sides_of(uniq),
        lobes=uniq,
        size_mm=round(sizes[big]),
        location=(lobes[big],),
        params={"nodules": nodules},
    )


def _opacity(rng, geo: Geometry, found) -> Finding:
    kind = str(rng.choice(["patchy", "subpleural", "diffuse"], p=[0.5, 0.3, 0.2]))
    lobes = LOBES if kind == "diffuse" else pick_lobes(rng, int(rng.integers(1, 4)))
    per = 3 if kind == "diffuse" else int(rng.integers(1, 4))
    pts = geo.sample_lobes(rng, {lobe: per for lobe in lobes}, depth=3.0 if kind == "subpleural" else 10.0)
    blobs = [(p, rng.uniform(12.0, 30.0), rng.uniform(-620.0, -450.0), lobe) for lobe in lobes for p in pts[lobe]]
    severity = "mild" if len(blobs) < 4 else ("moderate" if len(blobs) < 9 else "severe")
    return Finding(
        "Lung opacity", kind=kind, side=sides_of(lobes), lobes=lobes, severity=severity, params={"blobs": blobs}
    )


def _fibrotic(rng, geo: Geometry, found) -> Finding:
    kind = str(rng.choice(["apical", "linear"], p=[0.6, 0.4]))
    side = str(rng.choice(["R", "L", "B"], p=[0.25, 0.25, 0.5]))
    if kind == "apical":
        lobes = tuple(lobe for lobe in ("RUL", "LUL") if side == "B" or LOBE_SIDE[lobe] == side)
    else:
        allowed = tuple(lobe for lobe in LOBES if side == "B" or LOBE_SIDE[lobe] == side)
        lobes = pick_lobes(rng, 2 if side == "B" else 1, allowed)
        side = sides_of(lobes)
    bands = []
    for lobe in lobes:
        pts = geo.sample_lobes(rng, {lobe: 8}, depth=6.0)[lobe]
        if kind == "apical":
            pts = pts[np.argsort(-pts[:, 2])]  # highest points: near the apex
        for p in pts[: int(rng.integers(2, 5))]:
            d = rng.normal(size=3)
            d[2] *= 0.4
            d /= np.linalg.norm(d)
            length = rng.uniform(15.0, 35.0)
            bands.append((p - d * length / 2, p + d * length / 2, rng.uniform(1.3, 2.2)))
    return Finding("Pulmonary fibrotic sequela", kind=kind, side=side, lobes=lobes, params={"bands": bands})


def _pleural_effusion(rng, geo: Geometry, found) -> Finding:
    side = str(rng.choice(["R", "L", "B"], p=[0.35, 0.25, 0.4]))
    depth = {s: rng.uniform(10.0, 55.0) for s in ("R", "L") if side in (s, "B")}
    biggest = max(depth.values())
    return Finding(
        "Pleural effusion",
        side=side,
        size_mm=round(biggest),
        severity=grade(biggest, (15.0, 25.0, 40.0)),
        params={"depth": depth},
    )


def _mosaic(rng, geo: Geometry, found) -> Finding:
    kind = str(rng.choice(["lower", "diffuse"], p=[0.5, 0.5]))
    lobes = ("RLL", "LLL") if kind == "lower" else LOBES
    pts = geo.sample_lobes(rng, {lobe: 14 for lobe in lobes}, depth=0.0)
    seeds = np.concatenate([pts[lobe] for lobe in lobes])
    offsets = np.where(rng.random(len(seeds)) < 0.5, -75.0, 55.0)
    return Finding(
        "Mosaic attenuation pattern", kind=kind, side="B", lobes=lobes, params={"seeds": seeds, "offsets": offsets}
    )


def _peribronchial(rng, geo: Geometry, found) -> Finding:
    lobes = airway_lobes(rng)
    return Finding(
        "Peribronchial thickening", side=sides_of(lobes), lobes=lobes, params={"wall": rng.uniform(2.8, 4.0)}
    )


def _consolidation(rng, geo: Geometry, found) -> Finding:
    lobes = pick_lobes(rng, int(rng.choice([1, 2], p=[0.75, 0.25])))
    areas = []
    for lobe in lobes:  # one irregular area: a central blob and satellites, clipped by the lobe
        centre = geo.sample_lobes(rng, {lobe: 1}, depth=15.0)[lobe][0]
        p = np.vstack([centre, centre + rng.normal(0.0, 16.0, size=(4, 3))])
        radii = [rng.uniform(18.0, 38.0, size=3) for _ in range(5)]
        areas.append((lobe, p, radii, rng.uniform(20.0, 40.0)))
    size = max(_extent(rng, geo, lobe, p, radii) for lobe, p, radii, _ in areas)
    return Finding(
        "Consolidation",
        kind="air bronchogram",
        side=sides_of(lobes),
        lobes=lobes,
        size_mm=round(size),
        params={"areas": areas},
    )


def _extent(rng, geo: Geometry, lobe: str, centres, radii) -> float:
    """Largest extent (mm) of a union of ellipsoids clipped to a lobe, by sampling points."""
    centres, radii = np.asarray(centres), np.asarray(radii)
    lo, hi = (centres - radii).min(axis=0), (centres + radii).max(axis=0)
    pts = lo + rng.random((3000, 3)) * (hi - lo)
    inside = np.zeros(len(pts), dtype=bool)
    for c, r in zip(centres, radii):
        inside |= (((pts - c) / r) ** 2).sum(axis=1) < 1.0
    pts = pts[inside]
    pts = pts[geo.lobe(lobe).sdf(pts[:, 0], pts[:, 1], pts[:, 2], 1.0) < 0]
    if len(pts) < 2:
        return float(2 * radii.min())
    return float(np.ptp(pts, axis=0).max())


def _bronchiectasis(rng, geo: Geometry, found) -> Finding:
    lobes = airway_lobes(rng)
    kind = str(rng.choice(["cylindrical", "cystic"], p=[0.75, 0.25]))
    return Finding(
        "Bronchiectasis",
        kind=kind,
        side=sides_of(lobes),
        lobes=lobes,
        params={"dilation": rng.uniform(1.9, 2.7), "cysts": rng.uniform(4.0, 7.0)},
    )


def _septal(rng, geo: Geometry, found) -> Finding:
    kind = str(rng.choice(["lower", "diffuse"], p=[0.6, 0.4]))
    lobes = ("RLL", "LLL") if kind == "lower" else LOBES
    spacing = rng.uniform(14.0, 20.0)
    counts = {lobe: int(np.clip(260 * (16.0 / spacing) ** 3 * LOBE_WEIGHT[lobe] / 0.25, 30, 400)) for lobe in lobes}
    pts = geo.sample_lobes(rng, counts, depth=0.0)
    width = rng.uniform(1.2, 1.9)
    return Finding(
        "Interlobular septal thickening",
        kind=kind,
        side="B",
        lobes=lobes,
        severity="mild" if width < 1.6 else "moderate",
        params={
            "seeds": np.concatenate([pts[lobe] for lobe in lobes]),
            "width": width,
            "band": rng.uniform(12, 22),
            "seed_lobes": [lobe for lobe in lobes for _ in range(len(pts[lobe]))],
        },
    )


SAMPLERS: dict[str, Callable[[np.random.Generator, Geometry, dict], Finding]] = {
    "Medical material": _medical_material,
    "Arterial wall calcification": _arterial_calcification,
    "Cardiomegaly": _cardiomegaly,
    "Pericardial effusion": _pericardial_effusion,
    "Coronary artery wall calcification": _coronary_calcification,
    "Hiatal hernia": _hiatal_hernia,
    "Lymphadenopathy": _lymphadenopathy,
    "Emphysema": _emphysema,
    "Atelectasis": _atelectasis,
    "Lung nodule": _nodule,
    "Lung opacity": _opacity,
    "Pulmonary fibrotic sequela": _fibrotic,
    "Pleural effusion": _pleural_effusion,
    "Mosaic attenuation pattern": _mosaic,
    "Peribronchial thickening": _peribronchial,
    "Consolidation": _consolidation,
    "Bronchiectasis": _bronchiectasis,
    "Interlobular septal thickening": _septal,
}


def sample_findings(
    labels: dict[str, int], geo: Geometry, stream: Callable[[str], np.random.Generator], order: tuple[str, ...]
) -> dict[str, Finding]:
    """Descriptors of the positive labels.

    Args:
        labels: the 18 labels (0/1).
        geo: the patient's normal geometry (positions are drawn in the normal lungs).
        stream: label name → that label's own random generator.
        order: sampling order (causes first: a passive atelectasis needs the effusion's side).

    Returns:
        label name → :class:`Finding`, for positive labels only.
    """
    found: dict[str, Finding] = {}
    for label in order:
        if labels[label]:
            found[label] = SAMPLERS[label](stream(label), geo, found)
    return found
