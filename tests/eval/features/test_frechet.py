"""Fréchet distances (MONAI FIDMetric) and the 2.5D slice extraction."""

import pytest
import torch

from ctvl.classify.extract import PLANES, plane_slices, slice_features, volume_features
from ctvl.classify.nets import CTNet3D, FeatureNetConfig, SliceNet2D
from ctvl.data.transforms import PreprocessSpec
from ctvl.errors import InputError
from ctvl.eval.features.bundle import FeatureNets
from ctvl.eval.features.frechet import fd_3d, fid_2p5d, frechet_distance


def test_identical_sets_are_at_zero():
    a = torch.randn(200, 6, generator=torch.Generator().manual_seed(0))
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)


def test_shifted_gaussians_match_the_analytic_value():
    g = torch.Generator().manual_seed(1)
    a = torch.randn(20000, 4, generator=g, dtype=torch.float64)
    b = torch.randn(20000, 4, generator=g, dtype=torch.float64) + torch.tensor(
        [1.0, 2.0, 0.0, 0.0], dtype=torch.float64
    )
    assert frechet_distance(a, b) == pytest.approx(5.0, abs=0.1)  # |mu|^2, equal covariances
    c = 2 * torch.randn(20000, 4, generator=g, dtype=torch.float64)  # N(0, 4I): F (1 + 4 - 2·2) = 4
    assert frechet_distance(a, c) == pytest.approx(4.0, abs=0.15)


def test_frechet_input_errors():
    with pytest.raises(InputError, match="N, F"):
        frechet_distance(torch.zeros(5, 3), torch.zeros(5, 4))
    with pytest.raises(InputError, match="at least 2"):
        frechet_distance(torch.zeros(1, 3), torch.zeros(5, 3))


@pytest.mark.parametrize(
    "plane, shape", [("axial", (2 * 5, 1, 6, 7)), ("coronal", (2 * 6, 1, 5, 7)), ("sagittal", (2 * 7, 1, 5, 6))]
)
def test_plane_slices_shapes_and_content(plane, shape):
    x = torch.arange(2 * 5 * 6 * 7, dtype=torch.float32).reshape(2, 1, 5, 6, 7)
    s = plane_slices(x, plane)
    assert s.shape == shape
    if plane == "axial":
        assert torch.equal(s[5 + 3, 0], x[1, 0, 3])
    elif plane == "coronal":
        assert torch.equal(s[6 + 2, 0], x[1, 0, :, 2, :])
    else:
        assert torch.equal(s[4, 0], x[0, 0, :, :, 4])
    with pytest.raises(ValueError):
        plane_slices(x, "oblique")


def _nets():
    torch.manual_seed(0)
    cfg = FeatureNetConfig(widths=(8, 16), strides=None, feature_dim=8)
    return FeatureNets(
        CTNet3D(config=cfg).eval(), SliceNet2D(config=cfg).eval(), torch.full((18,), 0.5), PreprocessSpec.cpu()
    )


def test_batched_features_equal_one_pass():
    nets = _nets()
    x = torch.rand(5, 1, 9, 16, 16) * 2 - 1
    with torch.no_grad():
        whole = nets.slicenet2d.features(plane_slices(x, "coronal"))
        assert torch.allclose(slice_features(nets.slicenet2d, x, "coronal", batch=20), whole, atol=1e-5)
        assert torch.allclose(
            volume_features(nets.ctnet3d, x.half(), batch=2), nets.ctnet3d.features(x.half().float()), atol=1e-5
        )


def test_fid_2p5d_and_fd_3d():
    nets = _nets()
    g = torch.Generator().manual_seed(2)
    x = torch.rand(6, 1, 9, 16, 16, generator=g) * 2 - 1
    y = torch.rand(6, 1, 9, 16, 16, generator=g) * 0.2 - 1
    same = fid_2p5d(nets, x, x)
    assert set(same) == {*PLANES, "mean"} and all(v == pytest.approx(0.0, abs=1e-5) for v in same.values())
    diff = fid_2p5d(nets, x, y)
    assert diff["mean"] == pytest.approx(sum(diff[p] for p in PLANES) / 3) and diff["mean"] > 0
    assert fd_3d(nets, x, x) == pytest.approx(0.0, abs=1e-5)
    assert fd_3d(nets, x, y) > 0
    with pytest.raises(InputError, match="shapes differ"):
        fd_3d(nets, x, torch.zeros(6, 1, 9, 16, 8))
