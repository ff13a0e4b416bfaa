"""Finding details for the diagnosis prompt: the side and the extent of each finding the prompt states.

The 18 diagnosis tokens say present or absent; what a report writes about a present finding (right or
left, mild or severe, a 7 mm or a 20 mm nodule) then has to come from the visual tokens, which keep
little of it (the 12-bit 8 × 8 × 8 tokens of a 6 mm grid). Given only present/absent, the LM writes the
most common wording for every scan with the same findings: on held-out phantoms about 29 % of its reports
were word-for-word duplicates of another, most of them the same "2 pulmonary nodules in the right upper
and right lower lobe, 8 mm" sentence. A detail code per label carries two small facts read from the
voxels (:class:`DetailHead` on the voxel classifier's last feature map) into the prompt:

* side: none, right, left, both (:data:`SIDES`, the phantom's ``Finding.side``);
* extent: none, minimal, mild, moderate, severe (:data:`EXTENTS`): the finding's own severity word
  where it has one, else its quoted size graded with :data:`SIZE_CUTS` (nodules, hiatal hernia).

A diagnosis state is then an integer per label: 0 absent, ``1 + len(SIDES) * extent + side`` present
(1 = present with no detail, so the plain 0/1 states of a bundle without details stay valid).
Written by hand: the codes are ctvl's own prompt vocabulary.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ctvl.atomic import write_text
from ctvl.data.labels import CTRATE_LABELS
from ctvl.data.phantom import patient_findings
from ctvl.data.phantom.descriptors import Finding, grade
from ctvl.errors import InputError

SIDES = ("", "R", "L", "B")
EXTENTS = ("", "minimal", "mild", "moderate", "severe")
CODES = 1 + len(SIDES) * len(EXTENTS)  # 0 absent, 1..20 present with (extent, side)
SIZE_CUTS = {"Lung nodule": (7.0, 10.0, 15.0), "Hiatal hernia": (40.0, 50.0, 60.0)}  # mm, for labels without a severity


def detail_code(side: int, extent: int) -> int:
    """State of a present label with side index ``side`` and extent index ``extent``: 1..20."""
    return 1 + len(SIDES) * int(extent) + int(side)


def split_code(codes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(…) states → (side index, extent index), each (…) long; absent labels give (0, 0)."""
    c = (codes.long() - 1).clamp(min=0)
    return c % len(SIDES), c // len(SIDES)


def finding_code(finding: Finding) -> int:
    """The detail code of one phantom finding (present)."""
    side = SIDES.index(finding.side) if finding.side in SIDES else 0
    extent = EXTENTS.index(finding.severity) if finding.severity in EXTENTS else 0
    if extent == 0 and finding.label in SIZE_CUTS and finding.size_mm > 0:
        extent = EXTENTS.index(grade(finding.size_mm, SIZE_CUTS[finding.label]))
    return detail_code(side, extent)


def phantom_states(seed: int, labels: np.ndarray | None = None) -> np.ndarray:
    """(18,) int64 detail states of phantom patient ``seed`` (0 where a label is absent).

    ``labels`` (18,) 0/1, when given, must agree with the patient's own (a check that the seed is right)."""
    found = patient_findings(seed)
    states = np.zeros(len(CTRATE_LABELS), dtype=np.int64)
    for i, name in enumerate(CTRATE_LABELS):
        if name in found:
            states[i] = finding_code(found[name])
    if labels is not None and not np.array_equal(states > 0, np.asarray(labels) > 0.5):
        raise InputError(
            f"phantom seed {seed} does not draw the labels of its scan: not a ctvl phantom of this version"
        )
    return states


def record_states(records: Iterable, cache: str | Path | None = None, progress: Callable | None = None) -> np.ndarray:
    """(N, 18) detail states of phantom records (``metadata["PhantomSeed"]``), cached by seed in ``cache``
    (a JSON file) when given.

    Raises:
        InputError: a record without a phantom seed (details are known only for ctvl phantoms).
    """
    records = list(records)
    path = Path(cache) if cache is not None else None
    known: dict[str, list[int]] = {}
    if path is not None and path.is_file():
        known = json.loads(path.read_text(encoding="utf-8"))
    out = np.zeros((len(records), len(CTRATE_LABELS)), dtype=np.int64)
    added = False
    for k, r in enumerate(records):
        seed = str(r.metadata.get("PhantomSeed", "")).strip()
        if not seed.isdigit():
            raise InputError(
                "finding details need ctvl phantoms (a PhantomSeed in the metadata CSV); set model.detail_prompt "
                "to false for other data",
                path=r.path,
            )
        if seed not in known:
            known[seed] = phantom_states(int(seed), r.labels).tolist()
            added = True
        out[k] = known[seed]
        if progress is not None:
            progress()
    if path is not None and added:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text(path, json.dumps(known))
    return out


class DetailHead(nn.Module):
    """Side and extent of each label from a classifier's last feature map.

    Args:
        channels: channels of the feature map (the CTNet3D's last width).
        cells: its spatial size (t, h, w); side needs position, so the map is not pooled away.
        hidden: channels after the 1 × 1 × 1 reduction.

    Shapes:
        ``forward``: (B, channels, t, h, w) → side logits (B, 18, 4) and extent logits (B, 18, 5).
    """

    def __init__(self, *, channels: int, cells: tuple[int, int, int], hidden: int = 16) -> None:
        super().__init__()
        self.channels, self.cells, self.hidden = int(channels), tuple(int(c) for c in cells), int(hidden)
        self.reduce = nn.Sequential(nn.Conv3d(self.channels, self.hidden, 1), nn.ReLU(inplace=True))
        n = len(CTRATE_LABELS)
        self.out = nn.Linear(self.hidden * int(np.prod(self.cells)), n * (len(SIDES) + len(EXTENTS)))

    def forward(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if tuple(h.shape[2:]) != self.cells:
            raise InputError(f"the detail head reads a {self.cells} feature map, got {tuple(h.shape[2:])}")
        z = self.out(self.reduce(h).flatten(1)).view(h.shape[0], len(CTRATE_LABELS), -1)
        return z[..., : len(SIDES)], z[..., len(SIDES) :]

    def codes(self, h: torch.Tensor) -> torch.Tensor:
        """(B, channels, t, h, w) → (B, 18) the detail code each label would carry if present (1..20)."""
        side, extent = self(h)
        return detail_code(0, 0) + len(SIDES) * extent.argmax(-1) + side.argmax(-1)

    def facts(self) -> dict:
        return {"channels": self.channels, "cells": list(self.cells), "hidden": self.hidden}


def detail_loss(head: DetailHead, h: torch.Tensor, states: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of side and extent over the present labels only: h (B, C, t, h, w), states (B, 18)."""
    side_logits, extent_logits = head(h)
    present = states > 0
    if not present.any():
        return side_logits.sum() * 0.0
    side, extent = split_code(states)
    ce = nn.functional.cross_entropy
    return ce(side_logits[present], side[present]) + ce(extent_logits[present], extent[present])


def detail_accuracy(predicted: torch.Tensor, states: torch.Tensor) -> dict[str, float]:
    """Side and extent accuracy of predicted codes (B, 18) against true states (B, 18), over present labels."""
    present = states > 0
    ps, pe = split_code(predicted)
    ts, te = split_code(states)
    n = max(1, int(present.sum()))
    return {
        "side": round(float(((ps == ts) & present).sum()) / n, 4),
        "extent": round(float(((pe == te) & present).sum()) / n, 4),
        "both": round(float(((ps == ts) & (pe == te) & present).sum()) / n, 4),
        "present_labels": int(present.sum()),
    }
