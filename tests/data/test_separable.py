"""The MONAI-free forward path gives the MONAI chain's tensor (axis-aligned scans) and steps aside for oblique ones."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from ctvl.data.separable import apply_axis_aligned, axis_map
from ctvl.data.transforms import PreprocessSpec
from ctvl.io.volume import Volume, VolumeMeta

SPECS = [
    PreprocessSpec.cpu(),
    PreprocessSpec(spacing=(1.5, 1.5, 1.5), size=(40, 40), depth=None, antialias=True),
    PreprocessSpec(spacing=(2.0, 1.0, 3.0), size=(30, 50), depth=17, antialias=False),
    PreprocessSpec(spacing=(0.5, 0.7, 1.0), size=(24, 24), depth=None, antialias=True),  # upsampling
]
GRIDS = [
    ((60, 50, 40), (0.8, 0.9, 1.25), ("R", "A", "S"), "C"),
    ((45, 61, 33), (1.0, 1.0, 2.5), ("L", "P", "S"), "F"),  # NIfTI reads arrive Fortran-ordered
    ((37, 29, 1), (0.7, 0.7, 1.5), ("R", "P", "I"), "C"),  # one slice
    ((50, 40, 30), (1.1, 0.6, 2.0), ("A", "S", "R"), "F"),  # sagittal storage: axes permuted
]


def _volume(shape, spacing, codes, order, seed=0) -> Volume:
    rng = np.random.default_rng(seed)
    affine = np.eye(4)
    for k, (axis, sign) in enumerate(nib.orientations.axcodes2ornt(codes)):
        affine[:3, k] = 0.0
        affine[int(axis), k] = sign * spacing[k]
    affine[:3, 3] = rng.normal(size=3) * 10
    data = np.asarray(rng.normal(size=shape) * 500, dtype=np.float32, order=order)
    return Volume(data=data, affine=affine, meta=VolumeMeta(modality="CT"))


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: "x".join(map(str, s.spacing)))
@pytest.mark.parametrize("grid", GRIDS, ids=lambda g: "".join(g[2]) + g[3])
def test_equals_the_monai_chain(spec, grid):
    volume = _volume(*grid)
    ref = spec.apply_with_state(volume)[0]
    got = apply_axis_aligned(spec, volume)
    assert got is not None and got.shape == ref.shape
    assert float((got - ref).abs().max()) < 1e-4  # values span [-1, 1]
    assert float(ref.std()) > 0.01  # not a constant field


def test_oblique_scans_fall_back_to_the_monai_chain():
    volume = _volume((30, 30, 20), (1.0, 1.0, 2.0), ("R", "A", "S"), "C")
    c, s = np.cos(0.3), np.sin(0.3)
    volume.affine[:3, :3] = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]]) @ volume.affine[:3, :3]
    assert axis_map(volume.affine, "LPS") is None
    spec = PreprocessSpec.cpu()
    assert apply_axis_aligned(spec, volume) is None
    assert spec.apply(volume).shape == spec.apply_with_state(volume)[0].shape  # apply() still works
