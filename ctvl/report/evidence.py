"""Where a report model's evidence for a finding lies: occlusion of latent positions.

The report model reads a scan only through its latent grid ``(D, t, h, w)``. For every block of one
latent frame x ``block`` x ``block`` latent columns, the block's latents are set to zero and the
model's 18 CT-RATE label probabilities (:meth:`~ctvl.report.model.ReportModel.label_probabilities`)
are evaluated again: with the diagnosis prompt, as in the shipped model, those of the visual label
head (pooled conv features of the latent grid, the probabilities the prompt carries to the LM);
without it, those of the auxiliary head read at ``</image>``.
LFQ latents are +-1 per channel, so zero carries no sign: the block says nothing. The block whose
occlusion lowers a label's probability the most is where the model's evidence for that label is
strongest (occlusion sensitivity, Zeiler & Fergus 2014, applied to latent positions rather than pixels).
Its centre is mapped from the model grid back to a voxel of the stored scan through the affines the
preprocessing recorded, so the viewer can jump to that slice.

Written by hand: no library occludes a token grid and maps the result through a CT preprocessing chain.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ctvl.data.labels import CTRATE_LABELS
from ctvl.data.transforms import PreprocessState

METHOD = (
    "occlusion of latent positions (one latent frame x {b} x {b} latent columns set to zero), "
    "scored by the drop of the model's label-head probability"
)


@dataclass
class Evidence:
    """Evidence locations of one scan.

    Attributes:
        voxels: label -> stored voxel (i, j, k) at the centre of the most important block.
        drops: label -> probability drop when that block is occluded (may be <= 0: no block matters).
        method: how the locations were found (shown to the user).
    """

    voxels: dict[str, tuple[int, int, int]]
    drops: dict[str, float]
    method: str


def occlusion_blocks(grid: tuple[int, int, int], block: int) -> list[tuple[slice, slice, slice]]:
    """Blocks (frame, rows, columns) tiling a latent grid ``(t, h, w)``: one frame x ``block`` x ``block``."""
    t, h, w = grid
    return [
        (slice(f, f + 1), slice(r, min(r + block, h)), slice(c, min(c + block, w)))
        for f in range(t)
        for r in range(0, h, block)
        for c in range(0, w, block)
    ]


@torch.no_grad()
def occlusion_drops(
    model: torch.nn.Module, codes: torch.Tensor, block: int = 2, chunk: int = 48
) -> tuple[list[tuple[slice, slice, slice]], torch.Tensor, torch.Tensor]:
    """Label-probability drop for every occluded block.

    Args:
        model: a :class:`~ctvl.report.model.ReportModel` with a label head (visual or auxiliary).
        codes: (D, t, h, w) latents of one scan.
        block: latent columns per block side.
        chunk: occluded copies per forward pass.
    Returns:
        (blocks, base (18,) probabilities, drops (N_blocks, 18) = base - occluded).
    Raises:
        ValueError: the model has no label head.
    """
    base = model.label_probabilities([codes], 1)
    if base is None:
        raise ValueError("the report model has no label head (visual or auxiliary) to score occlusions with")
    blocks = occlusion_blocks(tuple(codes.shape[1:]), block)  # type: ignore[arg-type]
    drops = []
    for start in range(0, len(blocks), chunk):
        batch = []
        for blk in blocks[start : start + chunk]:
            masked = codes.clone()
            masked[(slice(None), *blk)] = 0.0
            batch.append(masked)
        drops.append(base - model.label_probabilities(batch, len(batch)))
    return blocks, base[0], torch.cat(drops)


def block_centre(
    blk: tuple[slice, slice, slice], time_factor: int, space_factor: int, model_shape: tuple[int, int, int]
) -> tuple[float, float, float]:
    """Model-grid voxel (t, h, w) at the centre of a latent block.

    Causal time axis: latent frame 0 is slice 0 alone, frame f >= 1 covers slices
    (f - 1) * ft + 1 ... f * ft. In-plane, latent column c covers pixels c * fs ... (c + 1) * fs - 1.
    """
    f = blk[0].start
    if time_factor == 1:
        t = float(f)
    else:
        t = 0.0 if f == 0 else (f - 1) * time_factor + 1 + (time_factor - 1) / 2
    h = (blk[1].start * space_factor + blk[1].stop * space_factor - 1) / 2
    w = (blk[2].start * space_factor + blk[2].stop * space_factor - 1) / 2
    limits = [n - 1 for n in model_shape]
    return min(t, limits[0]), min(h, limits[1]), min(w, limits[2])


def model_to_stored(tvoxel: tuple[float, float, float], state: PreprocessState) -> tuple[int, int, int]:
    """A model-grid voxel (t, h, w) -> the nearest stored voxel (i, j, k) of the original scan (clipped)."""
    t, h, w = tvoxel
    world = state.model_affine @ np.array([w, h, t, 1.0])  # the model affine indexes (x, y, z) = (w, h, t)
    ijk = np.linalg.inv(state.original_affine) @ world
    return tuple(int(np.clip(round(float(v)), 0, n - 1)) for v, n in zip(ijk[:3], state.original_shape))  # type: ignore[return-value]


def find_evidence(
    model: torch.nn.Module,
    codes: torch.Tensor,
    state: PreprocessState,
    labels: list[str],
    time_factor: int,
    space_factor: int,
    model_shape: tuple[int, int, int],
    block: int = 2,
) -> Evidence:
    """Evidence voxels for ``labels`` (CT-RATE names) of one scan.

    Args:
        model: the report model (with a label head).
        codes: (D, t, h, w) latents of the scan.
        state: the preprocessing state of the scan (affines, original shape).
        labels: the findings to locate (usually the positive ones).
        time_factor, space_factor: the tokenizer's compression along slices and in-plane.
        model_shape: (T, H, W) of the model input.
        block: latent columns per block side.
    """
    blocks, _, drops = occlusion_drops(model, codes, block)
    voxels, scores = {}, {}
    for name in labels:
        k = CTRATE_LABELS.index(name)
        best = int(torch.argmax(drops[:, k]))
        centre = block_centre(blocks[best], time_factor, space_factor, model_shape)
        voxels[name] = model_to_stored(centre, state)
        scores[name] = round(float(drops[best, k]), 4)
    return Evidence(voxels, scores, METHOD.format(b=block))
