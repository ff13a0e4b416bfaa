"""Phantom reports state exactly the positive labels, with side, location and size, in varied wording."""

from __future__ import annotations

import re

import numpy as np
import pytest

from ctvl.data.labels import CTRATE_LABELS
from ctvl.data.phantom import build_patient
from ctvl.data.phantom.reports import where
from ctvl.data.phantom.trees import LOBE_NAMES

NEGATION = re.compile(r"\b(no|not|without)\b", re.I)
CALC = r"(calcif|atherom|atheroscl)"
KEYWORDS: dict[str, list[str]] = {  # a label is affirmed by a non-negated sentence matching all patterns of one entry
    "Medical material": [r"port catheter|pacemaker|sternotomy"],
    "Arterial wall calcification": [CALC, r"\baort"],
    "Cardiomegaly": [r"cardiomegaly"],
    "Pericardial effusion": [r"pericardial effusion"],
    "Coronary artery wall calcification": [CALC, r"coronary"],
    "Hiatal hernia": [r"hiatal hernia"],
    "Lymphadenopathy": [r"lymphadenopathy|lymph node"],
    "Emphysema": [r"emphysem"],
    "Atelectasis": [r"atelecta"],
    "Lung nodule": [r"nodul"],
    "Lung opacity": [r"ground-glass"],
    "Pulmonary fibrotic sequela": [r"fibrotic"],
    "Pleural effusion": [r"pleural effusion"],
    "Mosaic attenuation pattern": [r"mosaic"],
    "Peribronchial thickening": [r"peribronchial"],
    "Consolidation": [r"consolidation"],
    "Bronchiectasis": [r"bronchiectasis"],
    "Interlobular septal thickening": [r"septal thickening"],
}


def affirmed(text: str) -> dict[str, int]:
    """Labels affirmed by the report, by the keyword rules above."""
    sentences = [s for s in re.split(r"(?<=[.;])\s+", text) if s]
    out = {}
    for label, patterns in KEYWORDS.items():
        out[label] = int(
            any(not NEGATION.search(s) and all(re.search(p, s, re.I) for p in patterns) for s in sentences)
        )
    return out


@pytest.fixture(scope="module")
def patients():
    out = [build_patient(seed) for seed in range(300, 360)]
    out.append(build_patient(1, force={name: 1 for name in CTRATE_LABELS}))
    out.append(build_patient(2, force={name: 0 for name in CTRATE_LABELS}))
    return out


def test_report_mentions_exactly_the_positive_labels(patients):
    for p in patients:
        text = f"{p.findings} {p.impression}"
        assert affirmed(text) == p.labels, (p.seed, text)


def test_every_label_is_covered_positive_and_negative(patients):
    labels = np.array([[p.labels[name] for name in CTRATE_LABELS] for p in patients])
    assert labels.max(axis=0).min() == 1 and labels.min(axis=0).max() == 0


def test_normal_structures_are_negated(patients):
    normal = next(p for p in patients if sum(p.labels.values()) == 0)
    text = normal.findings
    for phrase in ("pleural", "pericardial", "lymph"):
        sentence = next(s for s in text.split(". ") if phrase in s.lower())
        assert NEGATION.search(sentence), sentence
    assert any(w in normal.impression.lower() for w in ("normal", "no significant"))


def test_positives_carry_side_location_and_size(patients):
    p = patients[-2]  # every label forced on
    text = p.findings
    nodule = p.details["Lung nodule"]
    assert f"{int(nodule.size_mm)} mm" in text and LOBE_NAMES[nodule.location[0]] in text
    effusion = p.details["Pleural effusion"]
    side = {"R": "right", "L": "left", "B": "bilateral"}[effusion.side]
    assert re.search(rf"{side} pleural effusion", text, re.I) and f"{int(effusion.size_mm)} mm" in text
    assert f"{int(p.details['Lymphadenopathy'].size_mm)} mm in short axis" in text
    assert where(p.details["Consolidation"].lobes) in text
    assert f"{p.details['Cardiomegaly'].params['ctr']:.2f}" in text


def test_wording_varies(patients):
    firsts = {p.findings.split(". ")[0] for p in patients}
    hearts = {s for p in patients for s in p.findings.split(". ") if "heart" in s.lower() or "cardiac" in s.lower()}
    assert len(firsts) >= 3 and len(hearts) >= 3
    assert len({p.findings for p in patients}) == len(patients)


def test_where_names_lobe_groups():
    assert where(("RLL", "LLL")) == "both lower lobes"
    assert where(("RUL", "RML", "RLL", "LUL", "LLL")) == "both lungs"
    assert where(("LLL",)) == "the left lower lobe"
    assert where(("RUL", "LLL")) == "the right upper lobe and left lower lobe"


def test_ctvl_labeler_reads_phantom_reports(patients):
    labeler = pytest.importorskip("ctvl.eval.labeler")
    texts = [f"{p.findings} {p.impression}" for p in patients]
    truth = np.array([[p.labels[name] for name in CTRATE_LABELS] for p in patients])
    pred = labeler.label_reports(texts)
    f1 = []
    for j in range(len(CTRATE_LABELS)):
        tp = int(((truth[:, j] == 1) & (pred[:, j] == 1)).sum())
        wrong = int((truth[:, j] != pred[:, j]).sum())
        f1.append(2 * tp / max(1, 2 * tp + wrong))
    assert np.mean(f1) >= 0.99, dict(zip(CTRATE_LABELS, np.round(f1, 3)))
