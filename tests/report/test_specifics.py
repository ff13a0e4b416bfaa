"""Locations in a report: impressions that put a finding where the findings do not."""

from __future__ import annotations

from ctvl.eval.labeler import ReportLabeler
from ctvl.report.specifics import misplaced, placed_for, same_kind, specific_phrases

LABEL = ReportLabeler().label
FINDINGS = (
    "There are 2 pulmonary nodules in the right lung; the largest is 8 mm, in the right lower lobe. "
    "Linear atelectasis is present in the left upper lobe. Left pleural effusion is present, measuring 20 mm in depth."
)


def test_specific_phrases_find_lobes_lungs_and_sided_effusions() -> None:
    text = "Nodule in the Right upper lobe. Opacity in the left lung. Bilateral pleural effusions."
    assert [p for _, p in specific_phrases(text)] == ["right upper lobe", "left lung", "bilateral pleural effusion"]
    assert [text[i : i + 5] for i, _ in specific_phrases(text)] == ["Right", "left ", "Bilat"]


def test_an_impression_that_agrees_is_not_misplaced() -> None:
    impression = (
        "Pulmonary nodule of 8 mm in the right lower lobe. Atelectasis in the left upper lobe. Left pleural effusion."
    )
    assert misplaced(FINDINGS, impression, LABEL) == []


def test_a_moved_finding_is_misplaced_even_when_another_finding_is_there() -> None:
    impression = "Pulmonary nodule of 8 mm in the left upper lobe. Atelectasis in the left upper lobe."
    moved = misplaced(FINDINGS, impression, LABEL)
    assert [(m.phrase, m.labels) for m in moved] == [("left upper lobe", ("Lung nodule",))]
    assert impression[moved[0].start :].startswith("left upper lobe")  # the atelectasis is where the findings say


def test_the_side_of_an_effusion_is_checked() -> None:
    moved = misplaced(FINDINGS, "Right pleural effusion.", LABEL)
    assert [m.phrase for m in moved] == ["right pleural effusion"] and moved[0].start == 0


def test_sentences_without_a_label_the_findings_state_are_left_to_the_label_checks() -> None:
    assert (
        misplaced(FINDINGS, "Consolidation in the left lower lobe. Port catheter in the right chest wall.", LABEL) == []
    )


def test_placed_for_lists_the_findings_locations_of_a_label_in_order() -> None:
    assert placed_for(FINDINGS, ["Lung nodule"], LABEL) == ["right lung", "8 mm", "right lower lobe"]
    assert placed_for(FINDINGS, ["Pleural effusion"], LABEL) == ["left pleural effusion", "20 mm"]
    assert same_kind("right lung", "left upper lobe") and not same_kind("right lung", "left pleural effusion")


def test_a_size_the_findings_do_not_give_is_misplaced() -> None:
    findings = "A solid nodule measuring 8 mm is seen in the right lower lobe."
    moved = misplaced(findings, "Pulmonary nodule of 5 mm in the right lower lobe.", LABEL)
    assert [m.phrase for m in moved] == ["5 mm"]
    assert misplaced(findings, "Pulmonary nodule of 8 mm in the right lower lobe.", LABEL) == []
    assert placed_for(findings, ["Lung nodule"], LABEL) == ["8 mm", "right lower lobe"]
    assert same_kind("8 mm", "5 mm") and not same_kind("8 mm", "right lower lobe")
