"""Rule-based report labeler: per-label phrase tables, uncertainty, determinism, speed."""

import time

import numpy as np
import pytest

from ctvl.data.labels import CTRATE_LABELS
from ctvl.eval.labeler import ReportLabeler, label_reports

# label -> (sentences that assert it, sentences that deny or do not mention it)
PHRASES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "Medical material": (
        (
            "A central venous catheter ends in the superior vena cava.",
            "Sternotomy wires are present.",
            "A cardiac pacemaker is seen in the left pectoral region.",
            "A stent is seen in the LAD.",
        ),
        (
            "No catheter or tube is seen.",
            "Degenerative changes in the vertebral end plates.",
            "The catheter seen before was removed.",
        ),
    ),
    "Arterial wall calcification": (
        (
            "Calcified atheroma plaques are seen in the aortic arch.",
            "Wall calcifications in the thoracic aorta.",
            "Atherosclerotic calcifications in the aorta and coronary arteries.",
        ),
        (
            "Calcific atheroma plaques are seen in the coronary arteries.",
            "No calcification in the aorta was observed.",
            "A calcified nodule in the right upper lobe.",
        ),
    ),
    "Cardiomegaly": (
        ("Cardiomegaly.", "The heart size is increased.", "The cardiothoracic ratio increased in favor of the heart."),
        ("Heart contour and size are normal.", "No cardiomegaly was observed."),
    ),
    "Pericardial effusion": (
        ("Minimal pericardial effusion is present.", "Fluid 6 mm thick is observed in the pericardial space."),
        ("Pericardial effusion-thickening was not observed.", "No pleural or pericardial effusion was detected."),
    ),
    "Coronary artery wall calcification": (
        ("Calcified plaques in the coronary arteries.", "Calcification is seen in the LAD."),
        ("Calcific plaques in the aortic arch.", "No coronary artery calcification was detected."),
    ),
    "Hiatal hernia": (
        (
            "Sliding type hiatal hernia at the lower end of the esophagus.",
            "A small hernia is seen at the esophageal hiatus.",
        ),
        ("No hiatal hernia is seen.", "A left inguinal hernia is present."),
    ),
    "Lymphadenopathy": (
        (
            "Mediastinal lymphadenopathy.",
            "Enlarged lymph nodes with a short axis of 14 mm in the subcarinal area.",
            "Millimetric lymph nodes that do not reach pathological size are observed in the mediastinum.",
        ),
        (
            "No enlarged lymph nodes were detected in the mediastinum.",
            "No lymph node in pathological size and appearance was observed in mediastinal lymph node stations.",
            "A subpleural lymph node in the fissure of the left lower lobe.",
        ),
    ),
    "Emphysema": (
        ("Emphysematous changes in both lungs.", "Centrilobular emphysema in the upper lobes."),
        ("No emphysema was detected.", "Aeration of both lungs is normal."),
    ),
    "Atelectasis": (
        ("Subsegmental atelectasis in the right middle lobe.", "Linear atelectatic changes in both lower lobes."),
        ("No atelectasis was observed.", "Fibroatelectatic changes in the lingula.", "Atelectasis? infection?"),
    ),
    "Lung nodule": (
        (
            "A 4 mm nodule in the right upper lobe.",
            "Millimetric nonspecific nodules are observed in both lungs.",
            "A ground glass nodule of 7 mm in the left upper lobe.",
        ),
        (
            "No nodular or infiltrative lesion was detected in the lung parenchyma.",
            "A hypodense nodule in the right lobe of the thyroid gland.",
            "Nodular consolidation in the left lower lobe.",
        ),
    ),
    "Lung opacity": (
        (
            "Ground glass opacities in both lower lobes.",
            "Patchy ground-glass areas in the right lung.",
            "Dependent density increases in the posterior parts of both lungs.",
        ),
        (
            "No ground glass opacity was observed.",
            "A ground glass nodule of 7 mm in the left upper lobe.",
            "Pleuroparenchymal sequelae density increases in both lung apices.",
        ),
    ),
    "Pulmonary fibrotic sequela": (
        (
            "Pleuroparenchymal sequelae changes at both apices.",
            "Fibrotic bands in the left lower lobe.",
            "Fibroatelectatic changes in the lingula.",
        ),
        ("No fibrotic change was observed.", "Renal sinus lipomatosis with chronic sequelae changes in both kidneys."),
    ),
    "Pleural effusion": (
        ("Bilateral pleural effusion, 2 cm on the right.", "An effusion of 15 mm is seen in the right hemithorax."),
        ("Pleural effusion-thickening was not detected.", "Minimal effusion around the left kidney."),
    ),
    "Mosaic attenuation pattern": (
        ("Mosaic attenuation pattern in both lungs.", "Areas of mosaic perfusion in the lower lobes."),
        ("No mosaic attenuation was observed.",),
    ),
    "Peribronchial thickening": (
        (
            "Peribronchial thickening in both lower lobes.",
            "Diffuse mild increase in peribronchial thickness.",
            "Thickening is seen along the peribronchial sheath.",
        ),
        ("No peribronchial thickening was detected.", "The trachea and main bronchi are open."),
    ),
    "Consolidation": (
        ("Consolidation with air bronchograms in the right lower lobe.", "Consolidative areas in the left lung."),
        ("No pneumonic infiltration or consolidation area was detected.", "Consolidation has completely resolved."),
    ),
    "Bronchiectasis": (
        ("Cylindrical bronchiectasis in both lower lobes.", "Traction bronchiectasis in the right upper lobe."),
        ("No bronchiectasis was observed.",),
    ),
    "Interlobular septal thickening": (
        (
            "Interlobular septal thickening in both lungs.",
            "Thickening of the interlobular septa in the lower lobes.",
            "Smooth septal thickenings with ground glass areas.",
        ),
        (
            "No interlobular septal thickening was observed.",
            "A nodular lesion adjacent to the interventricular septum.",
        ),
    ),
}


def test_phrase_table_covers_every_label() -> None:
    assert set(PHRASES) == set(CTRATE_LABELS)


@pytest.mark.parametrize("label", CTRATE_LABELS)
def test_phrase_table(label: str) -> None:
    labeler = ReportLabeler()
    positives, negatives = PHRASES[label]
    for sentence in positives:
        assert labeler.label(sentence)[label] == 1, f"{label} missed in: {sentence}"
    for sentence in negatives:
        assert labeler.label(sentence)[label] == 0, f"{label} wrongly found in: {sentence}"


def test_report_with_several_findings_and_negations() -> None:
    report = (
        "Trachea and both main bronchi are open. Heart contour and size are normal. Pericardial effusion-thickening "
        "was not observed. No enlarged lymph nodes were detected. Emphysematous changes are observed in both lungs. "
        "There is a 5 mm nodule in the right upper lobe. Pleural effusion was not detected. Possible consolidation "
        'in the left lower lobe. " Emphysema, nodule in the right lung.'
    )
    got = ReportLabeler().label(report)
    assert [k for k, v in got.items() if v] == ["Emphysema", "Lung nodule", "Consolidation"]
    assert ReportLabeler(uncertain_as_positive=False).label(report)["Consolidation"] == 0


def test_empty_report_is_all_negative_and_output_order() -> None:
    got = ReportLabeler().label("")
    assert list(got) == list(CTRATE_LABELS) and not any(got.values())
    arr = label_reports(["", "Cardiomegaly."])
    assert arr.shape == (2, 18) and arr.dtype == np.int64
    assert arr[1].tolist() == [int(n == "Cardiomegaly") for n in CTRATE_LABELS]


def test_explain_marks_negated_and_positive_mentions() -> None:
    ev = ReportLabeler().explain("No pleural effusion. Atelectasis in the right lower lobe.")
    assert ev["Pleural effusion"][0].startswith("- ")
    assert ev["Atelectasis"][0].startswith("+ ")


def test_contradictions_between_findings_and_impression() -> None:
    labeler = ReportLabeler()
    findings = (
        "No lymph node of pathological size was seen. No pleural effusion was detected. "
        "A 9 mm right hilar lymph node. Heart size is normal."
    )
    # lymph nodes: affirmed in the findings too, so no clash; pleural effusion: negated only, clash
    impression = "Mediastinal lymphadenopathy. Bilateral pleural effusion. Cardiomegaly? Possible atelectasis."
    assert labeler.contradictions(findings, impression) == ["Pleural effusion"]
    clash = labeler.contradictions(
        "No lymph node of pathological size was seen. No pleural effusion.",
        "Mediastinal lymphadenopathy. Bilateral pleural effusion.",
    )
    assert clash == ["Lymphadenopathy", "Pleural effusion"]  # CT-RATE order
    # the other direction is how radiologists write: a finding the impression calls normal
    assert labeler.contradictions("Right pleural effusion, 8 mm.", "No pleural effusion of significance.") == []
    assert labeler.contradictions("No pleural effusion.", "") == []


def test_deterministic_and_fast() -> None:
    base = [text for pos, neg in PHRASES.values() for text in pos + neg]
    reports = [" ".join(base[i % len(base) : i % len(base) + 12]) + f" Nodule of {i} mm." for i in range(300)]
    start = time.perf_counter()
    first = ReportLabeler().label_many(reports)
    seconds = time.perf_counter() - start
    assert np.array_equal(first, ReportLabeler().label_many(reports))
    assert len(reports) / seconds > 100, f"only {len(reports) / seconds:.0f} reports/s"


def test_fibrotic_atelectasis_is_a_fibrotic_sequela_not_atelectasis() -> None:
    from ctvl.eval.labeler import ReportLabeler

    out = ReportLabeler().label("Stable sequela fibrotic atelectasis changes were observed in both lungs.")
    assert out["Pulmonary fibrotic sequela"] == 1 and out["Atelectasis"] == 0
