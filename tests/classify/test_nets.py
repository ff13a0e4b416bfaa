"""CTNet3D / SliceNet2D shapes and configs, and the training functions (tiny nets, tiny data)."""

import pytest
import torch

from ctvl.classify.nets import CTNet3D, FeatureNetConfig, SliceNet2D
from ctvl.classify.train import choose_thresholds, pos_weight, train_classifier, train_slice_net
from ctvl.errors import ConfigError, InputError

TINY = FeatureNetConfig(widths=(8, 16), strides=None, feature_dim=12)


@pytest.mark.parametrize(
    "cls, shape",
    [
        (CTNet3D, (2, 1, 33, 64, 64)),
        (CTNet3D, (3, 1, 9, 16, 16)),
        (SliceNet2D, (2, 1, 64, 64)),  # axial
        (SliceNet2D, (4, 1, 33, 64)),  # coronal / sagittal
        (SliceNet2D, (1, 1, 5, 7)),
    ],
)
def test_shapes(cls, shape):
    net = cls(config=TINY).eval()
    x = torch.rand(shape) * 2 - 1
    assert net(x).shape == (shape[0], 18)
    feats = net.features(x)
    assert feats.shape == (shape[0], 12) and (feats >= 0).all()


def test_wrong_input_rank_is_refused():
    with pytest.raises(ValueError, match="expects"):
        CTNet3D(config=TINY)(torch.zeros(1, 1, 8, 8))
    with pytest.raises(ValueError, match="expects"):
        SliceNet2D(config=TINY)(torch.zeros(1, 2, 8, 8))


def test_config_round_trip_and_errors():
    cfg = FeatureNetConfig(widths=(8, 16, 24), strides=(2, 1, 2), norm="group", feature_dim=32)
    assert FeatureNetConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ConfigError, match="norm"):
        FeatureNetConfig(norm="layer")
    with pytest.raises(ConfigError, match="multiple of 8"):
        FeatureNetConfig(widths=(12,), strides=None, norm="group")
    with pytest.raises(ConfigError, match="one entry per width"):
        FeatureNetConfig(widths=(8, 16), strides=(2,))
    with pytest.raises(ConfigError, match="unknown"):
        FeatureNetConfig.from_dict({"depth": 3})
    with pytest.raises(TypeError):
        CTNet3D(TINY)  # keyword-only


def test_group_norm_net_runs():
    net = CTNet3D(config=FeatureNetConfig(widths=(8, 16), strides=None, norm="group", feature_dim=8))
    assert net(torch.zeros(1, 1, 5, 8, 8)).shape == (1, 18)


def _data(n=8):
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(n, 1, 9, 16, 16, generator=g) * 2 - 1).half()
    y = (torch.rand(n, 18, generator=g) < 0.3).float()
    return x, y


def test_train_classifier_is_deterministic_for_a_seed():
    x, y = _data()
    a = train_classifier(x, y, config=TINY, epochs=2, batch_size=4, seed=3)
    b = train_classifier(x, y, config=TINY, epochs=2, batch_size=4, seed=3)
    c = train_classifier(x, y, config=TINY, epochs=2, batch_size=4, seed=4)
    sa, sb, sc = a.net.state_dict(), b.net.state_dict(), c.net.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)
    assert len(a.losses) == 2 and not a.net.training and a.thresholds.shape == (18,)
    assert a.facts["n_train"] == 8


def test_train_classifier_thresholds_from_training_set():
    x, y = _data()
    r = train_classifier(x, y, config=TINY, epochs=1, batch_size=4, thresholds="train")
    assert r.thresholds.shape == (18,) and ((r.thresholds >= 0.05) & (r.thresholds <= 0.95)).all()
    with pytest.raises(ConfigError):
        train_classifier(x, y, config=TINY, epochs=1, thresholds="valid")


def test_train_slice_net_runs_on_all_planes():
    x, y = _data()
    r = train_slice_net(x, y, config=TINY, epochs=1, batch_size=4, seed=0)
    assert len(r.losses) == 1 and r.facts["planes"] == ["axial", "coronal", "sagittal"]
    assert r.net(torch.zeros(2, 1, 9, 16)).shape == (2, 18)


def test_training_input_errors():
    with pytest.raises(InputError, match="N, 1, T, H, W"):
        train_classifier(torch.zeros(4, 9, 16, 16), torch.zeros(4, 18))
    with pytest.raises(InputError, match="labels"):
        train_slice_net(torch.zeros(4, 1, 9, 16, 16), torch.zeros(3, 18))


def test_pos_weight_and_thresholds_by_hand():
    y = torch.tensor([[1.0, 0.0], [0.0, 0.0], [0.0, 0.0], [0.0, 1.0]])
    assert torch.allclose(pos_weight(y), torch.tensor([3.0**0.5, 3.0**0.5]))
    probs = torch.tensor([[0.3, 0.9], [0.1, 0.8], [0.2, 0.7], [0.1, 0.95]])
    thr = choose_thresholds(probs, torch.tensor([[1, 0], [0, 0], [0, 0], [0, 1]]))
    # label 0: only the positive has 0.3 -> any threshold in (0.2, 0.3] gives F1 = 1; nearest 0.5 is 0.3
    # label 1: 0.95 alone above 0.9 -> threshold 0.95 (F1 = 1)
    assert thr.tolist() == pytest.approx([0.3, 0.95])


def test_blur_augmentation_smooths_half_the_batch_and_trains():
    from ctvl.classify.train import _blur_half

    g = torch.Generator().manual_seed(0)
    x = torch.zeros(8, 1, 9, 16, 16)
    x[..., 4, 8, 8] = 1.0  # one bright voxel per volume
    out = torch.stack([_blur_half(x, torch.Generator().manual_seed(s), 2.0) for s in range(4)])
    changed = (out != x).flatten(2).any(-1)  # (4 seeds, 8 volumes)
    assert changed.any() and not changed.all()  # some volumes blurred, never all of them
    blurred = out[changed]
    assert torch.allclose(blurred.sum((1, 2, 3, 4)), torch.ones(len(blurred)), atol=1e-2)  # mass kept (3-sigma kernel)
    assert (blurred.amax((1, 2, 3, 4)) < 1.0).all()  # the peak spread out
    assert torch.equal(_blur_half(x, g, 0.0), x)
    xs, ys = _data()
    r = train_classifier(xs, ys, config=TINY, epochs=1, batch_size=4, blur=1.0, seed=0)
    assert r.facts["blur"] == 1.0 and "blur" in r.facts["augmentation"]
    with pytest.raises(ConfigError, match="blur"):
        train_classifier(xs, ys, config=TINY, epochs=1, blur=-1.0)
