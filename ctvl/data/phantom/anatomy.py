"""A phantom patient's normal anatomy: sampled numbers and the analytic shapes built from them.

World coordinates are RAS+ millimetres (x towards the patient's right, y anterior, z superior), with
the scanner's isocentre at the origin. :class:`Anatomy` holds the numbers of one patient;
:func:`ctvl.data.phantom.sampling.sample_anatomy` draws them (airway and vessel trees included) and
:class:`ctvl.data.phantom.geometry.Geometry` turns them into shapes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ctvl.data.phantom.trees import Tree

__all__ = ["SIDES", "Anatomy"]

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
