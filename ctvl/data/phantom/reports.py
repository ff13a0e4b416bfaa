"""CT-RATE-style free-text reports for phantom patients.

The findings section walks through the chest in the order radiologists use (airways, heart and
great vessels, pericardium, oesophagus, lymph nodes, lung parenchyma, pleura, upper abdomen,
bones); normal structures are stated with negations, positives with side, location and size. Each
sentence is drawn from several wordings. The text mentions exactly the positive labels, with plain
terminology ("emphysema", "ground-glass opacity", "consolidation", ...), so a report labeler can
recover the labels; negative labels appear only in clearly negated sentences.

All wording is original to ctvl (written after reading the register of real reports, none copied).
"""

from __future__ import annotations

import numpy as np

from ctvl.data.phantom.findings import Finding
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
CORONARY_NAMES = {"LAD": "LAD", "LCx": "LCx", "RCA": "RCA"}


def _join(words: list[str]) -> str:
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
    return "the " + _join([LOBE_NAMES[lobe] for lobe in lobes])


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


class _Writer:
    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng

    def pick(self, *options: str) -> str:
        return options[int(self.rng.integers(len(options)))]


def _side_text(side: str) -> str:
    return {"R": "right", "L": "left", "B": "bilateral"}[side]


def _heart_and_vessels(w: _Writer, f: dict[str, Finding]) -> list[str]:
    out = []
    if (c := f.get("Cardiomegaly")) is not None:
        ctr = c.params["ctr"]
        out.append(
            w.pick(
                f"The heart is enlarged (cardiomegaly), with a cardiothoracic ratio of about {ctr:.2f}.",
                f"Cardiomegaly is present; the cardiothoracic ratio is increased to {ctr:.2f}.",
                f"{_cap(c.severity)} cardiomegaly is noted (cardiothoracic ratio {ctr:.2f}).",
            )
        )
    else:
        out.append(
            w.pick(
                "Heart size is within normal limits.",
                "The heart contour and size are normal.",
                "Cardiac size is normal.",
            )
        )
    out.append(
        w.pick(
            "The mediastinal great vessels are of normal calibre.",
            "The thoracic aorta has a normal diameter.",
            "Calibre of the thoracic aorta and the main pulmonary artery is normal.",
        )
    )
    ac, cc = f.get("Arterial wall calcification"), f.get("Coronary artery wall calcification")
    vessels = _join([CORONARY_NAMES[v] for v in cc.location]) if cc is not None else ""
    if ac is not None and cc is not None and w.rng.random() < 0.35:
        out.append(
            "Calcific atheroma plaques are present in the walls of the thoracic aorta and the coronary arteries "
            f"({vessels}).",
        )
        return out
    if ac is not None:
        seg = _join(list(ac.location))
        out.append(
            w.pick(
                f"Calcific atheroma plaques are seen in the wall of the {seg}.",
                f"There are {ac.severity} calcified atherosclerotic plaques in the {seg}.",
                f"Atherosclerotic calcification of the aortic wall is noted, involving the {seg}.",
            )
        )
    if cc is not None:
        out.append(
            w.pick(
                f"Coronary artery calcification is present in the {vessels}.",
                f"Calcified plaques are seen along the coronary arteries ({vessels}).",
                f"There is {cc.severity} coronary artery wall calcification involving the {vessels}.",
            )
        )
    return out


def _mediastinum(w: _Writer, f: dict[str, Finding]) -> list[str]:
    out = []
    if (pe := f.get("Pericardial effusion")) is not None:
        t = int(pe.size_mm)
        out.append(
            w.pick(
                f"{_cap(pe.severity)} pericardial effusion is present, up to {t} mm thick.",
                f"There is a pericardial effusion measuring {t} mm in its thickest part.",
                f"A {t} mm rim of pericardial effusion surrounds the heart.",
            )
        )
    else:
        out.append(
            w.pick(
                "No pericardial effusion or thickening was detected.",
                "Pericardial thickening or effusion was not detected.",
            )
        )
    if (hh := f.get("Hiatal hernia")) is not None:
        out.append(
            w.pick(
                f"A {hh.kind} hiatal hernia is present, measuring about {int(hh.size_mm)} mm.",
                f"There is a hiatal hernia ({int(hh.size_mm)} mm) above the diaphragm, behind the heart.",
                f"A {int(hh.size_mm)} mm hiatal hernia is seen at the oesophageal hiatus.",
            )
        )
    else:
        out.append(
            w.pick(
                "The thoracic oesophagus is of normal calibre.",
                "Calibre of the thoracic oesophagus is normal, with no wall thickening.",
            )
        )
    if (ln := f.get("Lymphadenopathy")) is not None:
        st = _join(list(ln.location))
        plural = "stations" if len(ln.location) > 1 else "station"
        size = int(ln.size_mm)
        out.append(
            w.pick(
                f"Enlarged lymph nodes are present in the {st} {plural}, the largest with a short axis of {size} mm.",
                f"Lymphadenopathy is seen in the {st} {plural}; the largest lymph node is {size} mm in short axis.",
                f"There is mediastinal lymphadenopathy ({st}), with the largest node {size} mm in short axis.",
            )
        )
    else:
        out.append(
            w.pick(
                "No enlarged lymph nodes were detected in the mediastinum or hila.",
                "No lymph node of pathological size was seen in the prevascular, paratracheal, subcarinal or hilar "
                "regions.",
                "No mediastinal or hilar lymphadenopathy was detected.",
            )
        )
    if (mm := f.get("Medical material")) is not None:
        p = mm.params
        if "port" in p:
            side = _side_text(p["port_side"])
            out.append(
                w.pick(
                    f"A port catheter is seen in the {side} anterior chest wall, its tip at the cavoatrial junction.",
                    f"A central venous port catheter is present on the {side}, with the catheter tip in the superior "
                    "vena cava.",
                )
            )
        if "pacemaker" in p:
            side = _side_text(p["pacemaker_side"])
            out.append(
                w.pick(
                    f"A cardiac pacemaker is present in the {side} pectoral region, with leads in the right atrium "
                    "and right ventricle.",
                    f"A pacemaker generator is seen in the {side} subcutaneous chest wall, its leads extending into "
                    "the right heart.",
                )
            )
    return out


def _lungs(w: _Writer, f: dict[str, Finding]) -> list[str]:
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
                f"{_cap(e.kind)} emphysematous changes are seen in {loc}.",
                f"There is {e.severity} {e.kind} emphysema in {loc}.",
                f"{_cap(e.severity)} {e.kind} emphysema, predominantly in {loc}.",
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
            loc = "both lung apices" if fs.side == "B" else f"the {_side_text(fs.side)} lung apex"
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
                f"{_cap(b.kind)} bronchiectasis is seen in {loc}; the bronchi are wider than the adjacent arteries.",
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


def _pleura_abdomen_bones(w: _Writer, f: dict[str, Finding]) -> list[str]:
    out = []
    if (pe := f.get("Pleural effusion")) is not None:
        d = int(pe.size_mm)
        if pe.side == "B":
            out.append(
                w.pick(
                    f"Bilateral pleural effusions are present, up to {d} mm deep.",
                    f"There are {pe.severity} bilateral pleural effusions (maximum depth {d} mm).",
                )
            )
        else:
            side = _side_text(pe.side)
            out.append(
                w.pick(
                    f"{_cap(side)} pleural effusion is present, measuring {d} mm in depth.",
                    f"There is a {pe.severity} {side} pleural effusion (maximum depth {d} mm).",
                )
            )
    else:
        out.append(
            w.pick(
                "No pleural effusion or thickening was detected.", "Pleural thickening or effusion was not detected."
            )
        )
    out.append(
        w.pick(
            "Upper abdominal organs included in the scan are unremarkable.",
            "The visualised parts of the liver, spleen and adrenal glands are normal.",
            "No focal lesion is seen in the imaged upper abdomen.",
        )
    )
    mm = f.get("Medical material")
    if mm is not None and "wires" in mm.params:
        out.append(w.pick("Median sternotomy wires are present.", "Sternotomy wires are seen in the sternum."))
    out.append(
        w.pick(
            "Bony structures in the scan area are normal.",
            "No lytic or destructive bone lesion is seen; vertebral body heights are preserved.",
        )
    )
    return out


def _impression(w: _Writer, f: dict[str, Finding]) -> str:
    parts = []
    if (mm := f.get("Medical material")) is not None:
        p = mm.params
        if "port" in p:
            parts.append(f"Port catheter in the {_side_text(p['port_side'])} chest wall.")
        if "pacemaker" in p:
            parts.append("Pacemaker in situ.")
        if "wires" in p:
            parts.append("Status after sternotomy (sternotomy wires).")
    ac, cc = f.get("Arterial wall calcification"), f.get("Coronary artery wall calcification")
    if ac is not None and cc is not None:
        parts.append("Calcified atherosclerotic plaques in the aorta and the coronary arteries.")
    elif ac is not None:
        parts.append(w.pick("Calcific atheroma in the aorta.", "Atherosclerotic calcification of the thoracic aorta."))
    elif cc is not None:
        parts.append("Coronary artery calcification.")
    simple = {
        "Cardiomegaly": "Cardiomegaly.",
        "Hiatal hernia": "Hiatal hernia.",
        "Lymphadenopathy": "Mediastinal lymphadenopathy.",
        "Peribronchial thickening": "Peribronchial thickening.",
        "Interlobular septal thickening": "Interlobular septal thickening.",
    }
    for label in (
        "Cardiomegaly",
        "Pericardial effusion",
        "Hiatal hernia",
        "Lymphadenopathy",
        "Emphysema",
        "Lung nodule",
        "Lung opacity",
        "Consolidation",
        "Atelectasis",
        "Pulmonary fibrotic sequela",
        "Pleural effusion",
        "Mosaic attenuation pattern",
        "Bronchiectasis",
        "Peribronchial thickening",
        "Interlobular septal thickening",
    ):
        x = f.get(label)
        if x is None:
            continue
        if label in simple:
            parts.append(simple[label])
        elif label == "Pericardial effusion":
            parts.append(f"{_cap(x.severity)} pericardial effusion.")
        elif label == "Emphysema":
            parts.append(f"{_cap(x.kind)} emphysema.")
        elif label == "Lung nodule":
            parts.append(
                f"Pulmonary nodule of {int(x.size_mm)} mm in the {LOBE_NAMES[x.location[0]]}; follow-up is recommended."
                if len(x.params["nodules"]) == 1
                else f"Multiple pulmonary nodules, the largest {int(x.size_mm)} mm."
            )
        elif label == "Lung opacity":
            parts.append(f"Ground-glass opacities in {where(x.lobes)}.")
        elif label == "Consolidation":
            parts.append(f"Consolidation in {where(x.lobes)}.")
        elif label == "Atelectasis":
            parts.append(f"Atelectasis in {where(x.lobes)}.")
        elif label == "Pulmonary fibrotic sequela":
            parts.append("Fibrotic sequelae in the lungs.")
        elif label == "Pleural effusion":
            parts.append(f"{_cap(_side_text(x.side))} pleural effusion.")
        elif label == "Mosaic attenuation pattern":
            parts.append(f"Mosaic attenuation pattern in {where(x.lobes)}.")
        elif label == "Bronchiectasis":
            parts.append(f"Bronchiectasis in {where(x.lobes)}.")
    if not parts:
        return w.pick(
            "Chest CT within normal limits.",
            "No significant abnormality on this chest CT.",
            "Normal chest CT examination.",
        )
    return " ".join(parts)


def write_report(findings: dict[str, Finding], rng: np.random.Generator) -> tuple[str, str]:
    """Findings and impression text for a patient.

    Args:
        findings: label → :class:`~ctvl.data.phantom.findings.Finding` of the positive labels.
        rng: the patient's report stream (wording choices only).

    Returns:
        ``(findings_text, impression_text)``.
    """
    w = _Writer(rng)
    body = [
        w.pick(
            "The trachea and both main bronchi are patent.",
            "Trachea and main bronchi are of normal calibre, with open lumens.",
            "The lumens of the trachea and main bronchi are open.",
        )
    ]
    body += _heart_and_vessels(w, findings)
    body += _mediastinum(w, findings)
    body += _lungs(w, findings)
    body += _pleura_abdomen_bones(w, findings)
    return " ".join(body), _impression(w, findings)
