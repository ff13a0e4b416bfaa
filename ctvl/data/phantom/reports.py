"""CT-RATE-style free-text reports for phantom patients.

The findings section walks through the chest in the order radiologists use (airways, heart and
great vessels, pericardium, oesophagus, lymph nodes, lung parenchyma, pleura, upper abdomen,
bones); normal structures are stated with negations, positives with side, location and size. Each
sentence is drawn from several wordings. The text mentions exactly the positive labels, with plain
terminology ("emphysema", "ground-glass opacity", "consolidation", ...), so a report labeler can
recover the labels; negative labels appear only in clearly negated sentences.

All wording is original to ctvl (written after reading the register of real reports, none copied).
The lung paragraph and the phrasing helpers (:func:`where`, the wording picker) live in
:mod:`.report_lungs`.
"""

from __future__ import annotations

import numpy as np

from ctvl.data.phantom.findings import Finding
from ctvl.data.phantom.report_lungs import LUNG_LABELS, Writer, cap, join_words, lung_sentences, side_text, where
from ctvl.data.phantom.trees import LOBE_NAMES

__all__ = ["CORONARY_NAMES", "LUNG_LABELS", "where", "write_report"]

CORONARY_NAMES = {"LAD": "LAD", "LCx": "LCx", "RCA": "RCA"}


def _heart_and_vessels(w: Writer, f: dict[str, Finding]) -> list[str]:
    out = []
    if (c := f.get("Cardiomegaly")) is not None:
        ctr = c.params["ctr"]
        out.append(
            w.pick(
                f"The heart is enlarged (cardiomegaly), with a cardiothoracic ratio of about {ctr:.2f}.",
                f"Cardiomegaly is present; the cardiothoracic ratio is increased to {ctr:.2f}.",
                f"{cap(c.severity)} cardiomegaly is noted (cardiothoracic ratio {ctr:.2f}).",
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
    vessels = join_words([CORONARY_NAMES[v] for v in cc.location]) if cc is not None else ""
    if ac is not None and cc is not None and w.rng.random() < 0.35:
        out.append(
            "Calcific atheroma plaques are present in the walls of the thoracic aorta and the coronary arteries "
            f"({vessels}).",
        )
        return out
    if ac is not None:
        seg = join_words(list(ac.location))
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


def _mediastinum(w: Writer, f: dict[str, Finding]) -> list[str]:
    out = []
    if (pe := f.get("Pericardial effusion")) is not None:
        t = int(pe.size_mm)
        out.append(
            w.pick(
                f"{cap(pe.severity)} pericardial effusion is present, up to {t} mm thick.",
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
        st = join_words(list(ln.location))
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
            side = side_text(p["port_side"])
            out.append(
                w.pick(
                    f"A port catheter is seen in the {side} anterior chest wall, its tip at the cavoatrial junction.",
                    f"A central venous port catheter is present on the {side}, with the catheter tip in the superior "
                    "vena cava.",
                )
            )
        if "pacemaker" in p:
            side = side_text(p["pacemaker_side"])
            out.append(
                w.pick(
                    f"A cardiac pacemaker is present in the {side} pectoral region, with leads in the right atrium "
                    "and right ventricle.",
                    f"A pacemaker generator is seen in the {side} subcutaneous chest wall, its leads extending into "
                    "the right heart.",
                )
            )
    return out


def _pleura_abdomen_bones(w: Writer, f: dict[str, Finding]) -> list[str]:
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
            side = side_text(pe.side)
            out.append(
                w.pick(
                    f"{cap(side)} pleural effusion is present, measuring {d} mm in depth.",
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


def _impression(w: Writer, f: dict[str, Finding]) -> str:
    parts = []
    if (mm := f.get("Medical material")) is not None:
        p = mm.params
        if "port" in p:
            parts.append(f"Port catheter in the {side_text(p['port_side'])} chest wall.")
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
            parts.append(f"{cap(x.severity)} pericardial effusion.")
        elif label == "Emphysema":
            parts.append(f"{cap(x.kind)} emphysema.")
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
            parts.append(f"{cap(side_text(x.side))} pleural effusion.")
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
    w = Writer(rng=rng)
    body = [
        w.pick(
            "The trachea and both main bronchi are patent.",
            "Trachea and main bronchi are of normal calibre, with open lumens.",
            "The lumens of the trachea and main bronchi are open.",
        )
    ]
    body += _heart_and_vessels(w, findings)
    body += _mediastinum(w, findings)
    body += lung_sentences(w, findings)
    body += _pleura_abdomen_bones(w, findings)
    return " ".join(body), _impression(w, findings)
