"""The :class:`Finding` record of one phantom abnormality, and the drawing helpers its samplers share.

A :class:`Finding` says where an abnormality is (side, lobes, other location words), how big and how
severe it is, and carries the world-space parameters :mod:`.lesions` paints from. The helpers grade a
measurement into a severity word, pick lobes with their usual weights, and name the side(s) a set
of lobes lies on; :mod:`.findings` uses them to draw each label's finding.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ctvl.data.phantom.trees import LOBE_NAMES, LOBE_SIDE, LOBES

LOBE_WEIGHT = {"RUL": 0.21, "RML": 0.08, "RLL": 0.25, "LUL": 0.23, "LLL": 0.23}
SIDE_WORD = {"R": "right", "L": "left", "B": "bilateral"}


@dataclass
class Finding:
    """One abnormality of a phantom patient.

    Attributes:
        label: CT-RATE label name.
        kind: subtype, e.g. "port catheter", "centrilobular", "subsegmental".
        side: "R", "L", "B" (both) or "" (midline / not lateralised).
        lobes: lobes involved (codes "RUL", ..., "LLL").
        location: other location words (aortic segments, coronary arteries, node stations).
        size_mm: the size a report quotes (diameter, depth, short axis, ...), 0 if none.
        severity: "minimal", "mild", "moderate" or "severe" (or "").
        params: world-space rendering parameters (points, radii, HU) for :mod:`.lesions`.
    """

    label: str
    kind: str = ""
    side: str = ""
    lobes: tuple[str, ...] = ()
    location: tuple[str, ...] = ()
    size_mm: float = 0.0
    severity: str = ""
    params: dict = field(default_factory=dict, repr=False)

    @property
    def side_word(self) -> str:
        return SIDE_WORD.get(self.side, "")

    @property
    def lobe_names(self) -> list[str]:
        return [LOBE_NAMES[lobe] for lobe in self.lobes]


def grade(value: float, cuts: tuple[float, float, float]) -> str:
    """Severity word of ``value``: "minimal", "mild", "moderate" below ``cuts[0..2]``, else "severe"."""
    for word, cut in zip(("minimal", "mild", "moderate"), cuts):
        if value < cut:
            return word
    return "severe"


def pick_lobes(rng: np.random.Generator, k: int, allowed: tuple[str, ...] = LOBES) -> tuple[str, ...]:
    """``k`` distinct lobes of ``allowed``, drawn with :data:`LOBE_WEIGHT`, in :data:`LOBES` order."""
    w = np.array([LOBE_WEIGHT[lobe] for lobe in allowed])
    idx = rng.choice(len(allowed), size=min(k, len(allowed)), replace=False, p=w / w.sum())
    return tuple(sorted((allowed[i] for i in idx), key=LOBES.index))


def sides_of(lobes: tuple[str, ...]) -> str:
    """The side(s) ``lobes`` lie on: "R", "L" or "B" (both)."""
    sides = {LOBE_SIDE[lobe] for lobe in lobes}
    return "B" if len(sides) == 2 else sides.pop()


def airway_lobes(rng: np.random.Generator) -> tuple[str, ...]:
    """Lobes of an airway disease: both lower lobes, all lobes, or one lobe."""
    kind = rng.choice(["lower", "diffuse", "single"], p=[0.5, 0.3, 0.2])
    if kind == "lower":
        return ("RLL", "LLL")
    if kind == "diffuse":
        return LOBES
    return pick_lobes(rng, 1)
