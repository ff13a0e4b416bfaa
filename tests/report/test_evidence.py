"""ctvl.report.evidence: occlusion blocks tile the latent grid, drops are real occlusions, and the
evidence voxel maps back to the right place of the stored scan."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ctvl.data.labels import CTRATE_LABELS
from ctvl.data.transforms import PreprocessSpec
from ctvl.io.volume import Volume
from ctvl.report.bundle import DEFAULT_BUNDLE
from ctvl.report.evidence import block_centre, find_evidence, model_to_stored, occlusion_blocks, occlusion_drops


def test_blocks_tile_the_latent_grid_once():
    grid = (5, 8, 7)
    hits = torch.zeros(grid, dtype=torch.int64)
    for blk in occlusion_blocks(grid, 2):
        assert blk[0].stop - blk[0].start == 1  # one latent frame per block
        hits[blk] += 1
    assert bool((hits == 1).all())
    assert len(occlusion_blocks(grid, 2)) == 5 * 4 * 4


def test_block_centre_follows_the_causal_frames():
    shape = (65, 64, 64)
    assert block_centre((slice(0, 1), slice(0, 2), slice(0, 2)), 8, 8, shape) == (0.0, 7.5, 7.5)  # frame 0 = slice 0
    assert block_centre((slice(1, 2), slice(2, 4), slice(6, 8)), 8, 8, shape) == (4.5, 23.5, 55.5)  # slices 1..8
    assert block_centre((slice(8, 9), slice(0, 2), slice(0, 2)), 8, 8, shape)[0] == 60.5  # slices 57..64
    assert block_centre((slice(3, 4), slice(0, 1), slice(0, 1)), 1, 16, shape) == (3.0, 7.5, 7.5)  # slice-wise


@pytest.mark.parametrize(
    "affine",
    [
        np.diag([-6.0, -6.0, 11.25, 1.0]),  # LPS, like the phantom
        np.array(
            [[0.0, 0.0, 5.0, 10.0], [-4.0, 0.0, 0.0, 20.0], [0.0, -4.5, 0.0, -30.0], [0, 0, 0, 1.0]]
        ),  # permuted axes
    ],
)
def test_model_voxel_maps_back_to_the_stored_voxel(affine):
    """A bright spot preprocessed onto the model grid comes back to (about) where it was stored."""
    shape = (60, 56, 30)
    data = np.full(shape, -1000.0, np.float32)
    where = (40, 15, 9)
    data[where[0] - 1 : where[0] + 2, where[1] - 1 : where[1] + 2, where[2] - 1 : where[2] + 2] = 1000.0
    spec = PreprocessSpec.cpu()
    x, state = spec.apply_with_state(Volume(data, affine))
    t, h, w = np.unravel_index(int(torch.argmax(x[0])), tuple(x.shape[1:]))
    back = model_to_stored((float(t), float(h), float(w)), state)
    voxel_mm = np.abs(affine[:3, :3]).max(axis=0)  # mm per stored index step
    error_mm = np.abs((np.array(back) - np.array(where)) * voxel_mm)
    assert (error_mm <= np.maximum(np.array(spec.spacing)[[0, 1, 2]].max(), voxel_mm)).all(), (back, where)


@pytest.mark.skipif(not (DEFAULT_BUNDLE / "config.json").is_file(), reason="no shipped report bundle")
def test_drops_are_real_occlusions_and_evidence_lies_in_the_scan():
    from ctvl.data.phantom import render_case
    from ctvl.report.bundle import load_report_model
    from ctvl.tokenizers.causal3d.inference import encode_tensor, preprocess

    loaded = load_report_model()
    volume = render_case(7).volume
    x, state = preprocess(loaded.tokenizer, volume)
    codes = encode_tensor(loaded.tokenizer, x).codes[0].float()
    blocks, base, drops = occlusion_drops(loaded.model, codes, block=2, chunk=7)
    assert drops.shape == (len(blocks), 18) and base.shape == (18,)
    k = len(blocks) // 2
    masked = codes.clone()
    masked[(slice(None), *blocks[k])] = 0.0
    direct = base - loaded.model.label_probabilities([masked], 1)[0]
    torch.testing.assert_close(drops[k], direct, rtol=1e-4, atol=1e-5)  # batching does not change a row
    assert float(drops.abs().max()) > 0  # occluding the scan changes what the model believes

    cfg = loaded.tokenizer.model.config
    labels = list(CTRATE_LABELS[:3])
    found = find_evidence(loaded.model, codes, state, labels, cfg.time_factor, cfg.space_factor, tuple(x.shape[2:]))
    assert set(found.voxels) == set(labels) and "occlusion" in found.method
    for name, ijk in found.voxels.items():
        assert all(0 <= v < n for v, n in zip(ijk, volume.shape))
        assert found.drops[name] == pytest.approx(float(drops[:, CTRATE_LABELS.index(name)].max()), abs=1e-4)
