"""Render one phantom patient: labels, anatomy, findings, volume and report from a seed.

Every random choice comes from a named stream derived from the seed (labels, anatomy, each label's
descriptor, report wording, noise), so the same seed gives the same patient at any resolution, and
forcing one label on or off leaves the rest of the patient unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ctvl.data.labels import CTRATE_LABELS
from ctvl.data.phantom.anatomy import Anatomy
from ctvl.data.phantom.findings import Finding, sample_findings
from ctvl.data.phantom.geometry import Geometry
from ctvl.data.phantom.lesions import lesion_ops
from ctvl.data.phantom.prevalence import ORDER, sample_labels
from ctvl.data.phantom.raster import Scene, default_spacing, grid_affine, rasterise
from ctvl.data.phantom.reports import write_report
from ctvl.data.phantom.sampling import sample_anatomy
from ctvl.data.phantom.scene import anatomy_scene
from ctvl.data.phantom.trees import LOBES
from ctvl.errors import ConfigError
from ctvl.io.volume import Volume, VolumeMeta

GENERATOR_VERSION = "1"
HU_RANGE = (-1024.0, 3071.0)  # a 12-bit CT scale: metal saturates at the top
_STREAMS = {"labels": 0, "anatomy": 1, "report": 2, "noise": 3}


def stream(seed: int, name: str) -> np.random.Generator:
    """The random generator of one named stream of patient ``seed`` (a label name for descriptors)."""
    key = _STREAMS[name] if name in _STREAMS else 100 + CTRATE_LABELS.index(name)
    return np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=(key,)))


@dataclass
class Patient:
    """A phantom patient before rasterisation (resolution-free)."""

    seed: int
    age: float
    sex: str
    labels: dict[str, int]
    anatomy: Anatomy
    geometry: Geometry
    details: dict[str, Finding]
    scene: Scene
    findings: str
    impression: str


@dataclass
class PhantomCase:
    """A rendered phantom scan with its ground truth.

    Attributes:
        seed: the patient seed.
        volume: the CT volume, (I, J, K) float32 HU with a RAS+ affine (axis codes "LPS").
        labels: the 18 CT-RATE labels, 0/1, in CT-RATE order.
        findings: report findings text.
        impression: report impression text.
        details: structured descriptors of the positive labels (side, lobes, size, severity, ...).
        age, sex: patient age (years) and sex ("M"/"F").
        masks: tag → (I, J, K) float32 occupancy in [0, 1] (finding labels, organs); empty unless
            rendered ``with_masks``.
    """

    seed: int
    volume: Volume
    labels: dict[str, int]
    findings: str
    impression: str
    details: dict[str, Finding]
    age: float
    sex: str
    masks: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    @property
    def report(self) -> str:
        """Findings and impression in one text."""
        return f"{self.findings} {self.impression}"


def _check_force(force: dict[str, int | bool] | None) -> dict[str, int]:
    out: dict[str, int] = {}
    for name, value in (force or {}).items():
        if name not in CTRATE_LABELS:
            raise ConfigError(
                f"unknown label {name!r} in force; expected one of the 18 CT-RATE labels: {', '.join(CTRATE_LABELS)}"
            )
        out[name] = int(bool(value))
    return out


def _airway_arrays(an: Anatomy, details: dict[str, Finding]):
    tree = an.airways
    n = len(tree)
    wall, lumen = np.ones(n), np.ones(n)
    wall_tag, lumen_tag = np.full(n, "airway_wall", dtype=object), np.full(n, "airway_lumen", dtype=object)
    if (b := details.get("Bronchiectasis")) is not None:
        sel = np.isin(tree.lobe, [LOBES.index(lobe) for lobe in b.lobes]) & (tree.gen >= 2)
        lumen[sel] = b.params["dilation"]
        wall[sel] = 1.5
        wall_tag[sel] = lumen_tag[sel] = b.label
    if (p := details.get("Peribronchial thickening")) is not None:
        sel = np.isin(tree.lobe, [LOBES.index(lobe) for lobe in p.lobes]) & (tree.gen >= 1)
        wall[sel] = np.maximum(wall[sel], p.params["wall"])
        wall_tag[sel] = p.label
    return wall, lumen, wall_tag, lumen_tag


def _draw(seed: int, forced: dict[str, int]) -> tuple[dict[str, int], float, str, Anatomy, dict[str, Finding]]:
    """Labels, age, sex, anatomy and finding descriptors of patient ``seed`` (no scene, no report)."""
    row, latents = sample_labels(stream(seed, "labels"), 1)
    labels = {name: int(v) for name, v in zip(CTRATE_LABELS, row[0])}
    labels.update(forced)
    age, sex = float(latents["age_years"][0]), str(latents["sex"][0])
    an = sample_anatomy(stream(seed, "anatomy"), age, sex)
    details = sample_findings(labels, Geometry(an=an), lambda name: stream(seed, name), ORDER)
    return labels, age, sex, an, details


def patient_findings(seed: int) -> dict[str, Finding]:
    """The finding descriptors (side, lobes, size, severity, ...) of patient ``seed``, as :func:`build_patient`
    draws them, without building the scene or the report (a few ms instead of tens)."""
    return _draw(int(seed), {})[4]


def build_patient(seed: int, force: dict[str, int | bool] | None = None) -> Patient:
    """Draw patient ``seed`` (labels, anatomy, findings, report) without rasterising it.

    Args:
        seed: the patient seed (any non-negative integer).
        force: label name → 0/1 to override the sampled labels (everything else stays the same).
    """
    labels, age, sex, an, details = _draw(seed, _check_force(force))
    hernia = details.get("Hiatal hernia")
    geo = Geometry(
        an=an,
        heart_scale=details["Cardiomegaly"].params["scale"] if "Cardiomegaly" in details else 1.0,
        pericardial=details["Pericardial effusion"].params["thickness"] if "Pericardial effusion" in details else 0.0,
        hernia=(hernia.params["center"], hernia.params["radii"]) if hernia is not None else None,
    )
    wall, lumen, wall_tag, lumen_tag = _airway_arrays(an, details)
    scene = anatomy_scene(geo, wall, lumen, wall_tag, lumen_tag)
    lesion_ops(scene, geo, details, lumen)
    findings, impression = write_report(details, stream(seed, "report"))
    return Patient(int(seed), age, sex, labels, an, geo, details, scene, findings, impression)


def render_case(
    seed: int,
    shape: tuple[int, int, int] = (64, 64, 33),
    spacing: tuple[float, float, float] | None = None,
    force: dict[str, int | bool] | None = None,
    with_masks: bool = False,
    noise: bool = True,
    center: tuple[float, float, float] | None = None,
) -> PhantomCase:
    """Render phantom patient ``seed`` on a grid.

    Args:
        seed: the patient seed.
        shape: (I, J, K) voxels; K is the axial slice axis.
        spacing: (sx, sy, sz) mm; default :func:`~ctvl.data.phantom.raster.default_spacing`
            (384 mm in-plane, 360 mm in z: 6 × 6 × 11.25 mm for 64 × 64 × 33, 0.75 × 0.75 × 1.5 mm
            for 512 × 512 × 241).
        force: label name → 0/1 to force findings on or off.
        with_masks: also return occupancy masks per finding label and organ tag.
        noise: add quantum-like Gaussian noise (about 12 HU at 0.75 × 0.75 × 1.5 mm, less for
            larger voxels).
        center: world position (mm, RAS) of the grid centre; default the scanner isocentre (0, 0, 0).
            With a small shape and fine spacing this renders a zoomed region of interest.

    Returns:
        The :class:`PhantomCase`.
    """
    shape = tuple(int(s) for s in shape)
    if len(shape) != 3 or min(shape) < 1:
        raise ConfigError(f"phantom shape must be three positive integers, got {shape}")
    spacing = default_spacing(shape) if spacing is None else tuple(float(s) for s in spacing)
    if len(spacing) != 3 or min(spacing) <= 0:
        raise ConfigError(f"phantom spacing must be three positive numbers (mm), got {spacing}")
    patient = build_patient(seed, force)
    center = (0.0, 0.0, 0.0) if center is None else tuple(float(c) for c in center)
    data, masks = rasterise(patient.scene, shape, spacing, with_masks=with_masks, center=center)
    if noise:
        sigma = float(np.clip(12.0 * np.sqrt(0.84375 / np.prod(spacing)), 2.0, 25.0))
        rng = stream(seed, "noise")
        for k in range(shape[2]):  # slice by slice: bounded memory at 512 x 512 x 241
            data[:, :, k] += sigma * rng.standard_normal(shape[:2], dtype=np.float32)
    np.clip(data, *HU_RANGE, out=data)
    meta = VolumeMeta(
        modality="CT",
        manufacturer="ctvl phantom",
        rescale_slope=1.0,
        rescale_intercept=0.0,
        extra={
            "phantom_seed": int(seed),
            "generator_version": GENERATOR_VERSION,
            "age": patient.age,
            "sex": patient.sex,
        },
    )
    volume = Volume(data, grid_affine(shape, spacing, center), meta)
    return PhantomCase(
        patient.seed,
        volume,
        patient.labels,
        patient.findings,
        patient.impression,
        patient.details,
        patient.age,
        patient.sex,
        masks,
    )
