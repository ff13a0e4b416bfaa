"""Training prompts: every prompt names all of its scan's findings; mixes are deterministic per seed."""

from __future__ import annotations

import numpy as np

from ctvl.data.labels import CTRATE_LABELS
from ctvl.synthesis.prompts import NORMAL_PHRASES, label_phrase, prompt_variants, split_sentences

FINDINGS = "Heart size is normal. There is a right pleural effusion. No nodule is seen. Emphysema in both upper lobes."
IMPRESSION = "Right pleural effusion. Centrilobular emphysema."
LABELS = [int(n in ("Pleural effusion", "Emphysema")) for n in CTRATE_LABELS]


def fake_labels(sentence: str) -> list[int]:
    s = sentence.lower()
    return [
        int((n == "Pleural effusion" and "effusion" in s) or (n == "Emphysema" and "emphysema" in s))
        for n in CTRATE_LABELS
    ]


def test_split_sentences_drops_full_stops_and_blanks():
    assert split_sentences("A b. C d.  ") == ["A b", "C d"]
    assert split_sentences("") == []


def test_label_phrase_names_positives_or_a_normal_study():
    assert label_phrase(LABELS) == "emphysema, pleural effusion"
    assert label_phrase([0] * 18) == NORMAL_PHRASES[0]


def test_variants_name_every_finding():
    variants = prompt_variants(
        FINDINGS, IMPRESSION, LABELS, rng=np.random.default_rng(0), sentence_labels=fake_labels, n_mixes=5
    )
    assert len(variants) == 3 + 5
    assert variants[:3] == [IMPRESSION, FINDINGS, "emphysema, pleural effusion"]
    for mix in variants[3:]:
        assert "effusion" in mix.lower() and "emphysema" in mix.lower()


def test_variants_are_deterministic_per_seed_and_vary_across_seeds():
    make = lambda s: prompt_variants(
        FINDINGS,
        IMPRESSION,
        LABELS,
        rng=np.random.default_rng(s),  # noqa: E731
        sentence_labels=fake_labels,
    )
    assert make(1) == make(1)
    assert len({tuple(make(s)[3:]) for s in range(6)}) > 1


def test_normal_scan_mixes_state_a_normal_study():
    variants = prompt_variants(
        "Heart size is normal.",
        "No significant abnormality.",
        [0] * 18,
        rng=np.random.default_rng(0),
        sentence_labels=fake_labels,
        n_mixes=4,
    )
    for mix in variants[3:]:
        assert any(p.lower() in mix.lower() for p in NORMAL_PHRASES)


def test_without_a_labeler_mixes_shuffle_the_impression():
    variants = prompt_variants(FINDINGS, IMPRESSION, LABELS, rng=np.random.default_rng(0), n_mixes=2)
    for mix in variants[3:]:
        assert sorted(split_sentences(mix)) == sorted(split_sentences(IMPRESSION))
