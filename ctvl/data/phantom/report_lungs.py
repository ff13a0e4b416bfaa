"""The lung paragraph of a phantom report, and the phrasing helpers every report section uses.

:func:`lung_sentences` describes the lung parenchyma (emphysema, nodules, opacities, consolidation,
atelectasis, fibrosis, mosaic attenuation, septal thickening, bronchiectasis, peribronchial
thickening) or states that it is normal. :class:`Writer` draws one of several wordings from the
report stream; :func:`where` names a set of lobes. :mod:`.reports` assembles the full report.
"""

from __future__ import annotations

import numpy as np

from ctvl.data.phantom.descriptors import Finding
from ctvl.data.phantom.trees import LOBE_NAMES, LOBES

LUNG_LABELS = (
    "Emphysema",
    "Atelectasis",
    "Lung nodule",
    "Lung opacity",
    "Pulmonary fibrotic sequela",
    "Mosaic attenuation pattern",
    "Peribronchial thickening",
    "Consolidation",
    "Bronchiectasis",
    "Interlobular septal thickening",
)


def join_words(words: list[str]) -> str:
    """Join words as in "a", "a and b", "a, b and c"."""
    words = list(words)
    if len(words) <= 1:
        return "".join(words)
    return ", ".join(words[:-1]) + " and " + words[-1]


def where(lobes: tuple[str, ...]) -> str:
    """Location phrase for a set of lobes ("both lower lobes", "the right upper lobe", ...)."""
    lobes = tuple(sorted(lobes, key=LOBES.index))
    if set(lobes) == set(LOBES):
        return "both lungs"
    if lobes == ("RLL", "LLL"):
        return "both lower lobes"
    if lobes == ("RUL", "LUL"):
        return "both upper lobes"
    if set(lobes) == {"RUL", "RML", "RLL"}:
        return "the right lung"
    if set(lobes) == {"LUL", "LLL"}:
        return "the left lung"
    return "the " + join_words([LOBE_NAMES[lobe] for lobe in lobes])


def cap(text: str) -> str:
    """``text`` with its first letter upper-cased."""
    return text[:1].upper() + text[1:]


class Writer:
    """Picks one of several wordings from the report stream."""

    def __init__(self, *, rng: np.random.Generator) -> None:
        self.rng = rng

    def pick(self, *options: str) -> str:
        return options[int(self.rng.integers(len(options)))]


def side_text(side: str) -> str:
    """The word for side "R", "L" or "B": "right", "left" or "bilateral"."""
    return {"R": "right", "L": "left", "B": "bilateral"}[side]


def lung_sentences(w: Writer, f: dict[str, Finding]) -> list[str]:
    """Sentences on the lung parenchyma, given the positive labels' findings ``f``."""
    out = [
        w.pick(
            "Lung parenchyma was evaluated in the lung window.", "The lungs were examined in the parenchymal window."
        )
    ]
    if not any(label in f for label in LUNG_LABELS):
        out.append(
            w.pick(
                "Both lungs are normally aerated; no nodular or infiltrative lesion was detected.",
                "Aeration of both lungs is normal and there is no nodule, mass or infiltrate.",
                "No pulmonary nodule, mass or infiltrate was detected, and lung aeration is normal.",
            )
        )
        return out
    if (e := f.get("Emphysema")) is not None:
        loc = where(e.lobes)
        out.append(
            w.pick(
                f"{cap(e.kind)} emphysematous changes are seen in {loc}.",
                f"There is {e.severity} {e.kind} emphysema in {loc}.",
                f"{cap(e.severity)} {e.kind} emphysema, predominantly in {loc}.",
            )
        )
    if (n := f.get("Lung nodule")) is not None:
        k, d, big = len(n.params["nodules"]), int(n.size_mm), LOBE_NAMES[n.location[0]]
        if k == 1:
            out.append(
                w.pick(
                    f"A solid nodule measuring {d} mm is seen in the {big}.",
                    f"There is a {d} mm solid pulmonary nodule in the {big}.",
                    f"A {d} mm nodule is present in the {big}.",
                )
            )
        else:
            out.append(
                w.pick(
                    f"Multiple solid nodules are seen in {where(n.lobes)}, the largest measuring {d} mm in the {big}.",
                    f"There are {k} pulmonary nodules in {where(n.lobes)}; the largest is {d} mm, in the {big}.",
                )
            )
    elif w.rng.random() < 0.5:
        out.append(w.pick("No pulmonary nodule was detected.", "No nodule or mass is seen in either lung."))
    if (o := f.get("Lung opacity")) is not None:
        loc = where(o.lobes)
        if o.kind == "diffuse":
            out.append(
                w.pick(
                    "Diffuse ground-glass opacities are seen in both lungs.",
                    "There is diffuse ground-glass opacity in both lungs.",
                )
            )
        elif o.kind == "subpleural":
            out.append(
                w.pick(
                    f"Subpleural ground-glass opacities are seen in {loc}.",
                    f"There are peripheral ground-glass opacities in {loc}.",
                )
            )
        else:
            out.append(
                w.pick(
                    f"Patchy ground-glass opacities are seen in {loc}.",
                    f"There are areas of ground-glass opacity in {loc}.",
                )
            )
    if (c := f.get("Consolidation")) is not None:
        loc = where(c.lobes)
        out.append(
            w.pick(
                f"Consolidation with air bronchograms is seen in {loc}.",
                f"There is an area of consolidation containing air bronchograms in {loc}, "
                f"measuring about {int(c.size_mm)} mm.",
                f"Consolidation is present in {loc}, with air bronchograms inside it.",
            )
        )
    if (a := f.get("Atelectasis")) is not None:
        loc = where(a.lobes)
        if a.kind == "subsegmental":
            out.append(
                w.pick(
                    f"Subsegmental (plate-like) atelectasis is seen in {loc}.",
                    f"Linear atelectasis is present in {loc}.",
                )
            )
        elif a.kind == "dependent":
            out.append(
                w.pick(
                    f"Dependent atelectasis is seen in the posterior basal parts of {loc}.",
                    f"There is posterior dependent atelectasis in {loc}.",
                )
            )
        else:
            out.append(
                w.pick(
                    f"Passive atelectasis is seen in {loc} adjacent to the pleural effusion.",
                    f"Compressive atelectasis is present in {loc} next to the pleural effusion.",
                )
            )
    if (fs := f.get("Pulmonary fibrotic sequela")) is not None:
        if fs.kind == "apical":
            loc = "both lung apices" if fs.side == "B" else f"the {side_text(fs.side)} lung apex"
            out.append(
                w.pick(
                    f"Fibrotic sequelae (pleuroparenchymal bands) are seen at {loc}.",
                    f"Apical fibrotic bands are present at {loc}.",
                )
            )
        else:
            out.append(
                w.pick(
                    f"Linear fibrotic bands are seen in {where(fs.lobes)}.",
                    f"Fibrotic sequelae (parenchymal bands) are present in {where(fs.lobes)}.",
                )
            )
    if (m := f.get("Mosaic attenuation pattern")) is not None:
        loc = where(m.lobes)
        out.append(
            w.pick(
                f"A mosaic attenuation pattern is seen in {loc}.",
                f"Mosaic attenuation is present in {loc}, with patchy areas of differing lung attenuation.",
            )
        )
    if (st := f.get("Interlobular septal thickening")) is not None:
        loc = where(st.lobes)
        out.append(
            w.pick(
                f"Interlobular septal thickening is seen in the subpleural regions of {loc}.",
                f"There is {st.severity} interlobular septal thickening in {loc}.",
            )
        )
    if (b := f.get("Bronchiectasis")) is not None:
        loc = where(b.lobes)
        out.append(
            w.pick(
                f"{cap(b.kind)} bronchiectasis is seen in {loc}; the bronchi are wider than the adjacent arteries.",
                f"There is {b.kind} bronchiectasis in {loc}.",
            )
        )
    if (pb := f.get("Peribronchial thickening")) is not None:
        loc = where(pb.lobes)
        out.append(
            w.pick(
                f"Peribronchial thickening is seen in {loc}.",
                f"Bronchial walls are thickened (peribronchial thickening) in {loc}.",
            )
        )
    return out
