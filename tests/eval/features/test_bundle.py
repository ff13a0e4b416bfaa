"""Feature-network bundle: round trip, float16 storage, atomic replacement, one-line errors."""

import json

import pytest
import torch

from ctvl.classify.nets import CTNet3D, FeatureNetConfig, SliceNet2D
from ctvl.data.transforms import PreprocessSpec
from ctvl.errors import InputError
from ctvl.eval.features import bundle as bundle_mod
from ctvl.eval.features.bundle import load_feature_nets, save_feature_nets


def _nets(widths=(8, 16)):
    torch.manual_seed(0)
    return (
        CTNet3D(config=FeatureNetConfig(widths=widths, strides=None, feature_dim=8)).eval(),
        SliceNet2D(config=FeatureNetConfig(widths=(8,), strides=None, feature_dim=4, norm="group")).eval(),
    )


def _save(path, nets, **kw):
    return save_feature_nets(
        path,
        ctnet3d=nets[0],
        slicenet2d=nets[1],
        thresholds=torch.linspace(0.1, 0.9, 18),
        spec=PreprocessSpec.cpu(),
        training={"epochs": 1},
        heldout={"macro_f1": 0.5},
        **kw,
    )


def test_round_trip(tmp_path):
    nets = _nets()
    out = _save(tmp_path / "b", nets, extra_files={"MODEL_CARD.md": "# card\n", "plot.png": b"\x89PNG"})
    loaded = load_feature_nets(out)
    x = torch.rand(2, 1, 9, 16, 16)
    with torch.no_grad():
        assert torch.allclose(loaded.ctnet3d(x), nets[0](x))
        s = torch.rand(3, 1, 9, 16)
        assert torch.allclose(loaded.slicenet2d.features(s), nets[1].features(s))
    assert loaded.spec == PreprocessSpec.cpu() and loaded.folder == out
    assert torch.allclose(loaded.thresholds, torch.linspace(0.1, 0.9, 18))
    assert loaded.config["training"] == {"epochs": 1} and loaded.config["heldout"] == {"macro_f1": 0.5}
    assert loaded.config["weights_dtype"] == "float32"
    assert (out / "MODEL_CARD.md").read_text() == "# card\n" and (out / "plot.png").read_bytes() == b"\x89PNG"
    assert loaded.predict(x).shape == (2, 18) and loaded.probabilities(x).shape == (2, 18)


def test_large_weights_are_stored_in_float16(tmp_path):
    nets = _nets(widths=(32, 64, 128))
    out = _save(tmp_path / "b", nets)
    assert json.loads((out / "config.json").read_text())["weights_dtype"] == "float16"
    loaded = load_feature_nets(out)
    assert all(p.dtype == torch.float32 for p in loaded.ctnet3d.parameters())
    x = torch.rand(1, 1, 9, 16, 16)
    with torch.no_grad():
        assert torch.allclose(loaded.ctnet3d.features(x), nets[0].features(x), atol=0.05, rtol=0.05)


def test_replacing_is_atomic_and_leaves_no_temporary_folder(tmp_path, monkeypatch):
    nets = _nets()
    _save(tmp_path / "b", nets, extra_files={"MODEL_CARD.md": "old"})
    _save(tmp_path / "b", nets, extra_files={"MODEL_CARD.md": "new"})
    assert (tmp_path / "b" / "MODEL_CARD.md").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(bundle_mod, "write_bundle_files", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        _save(tmp_path / "b", nets, extra_files={"MODEL_CARD.md": "newer"})
    assert (tmp_path / "b" / "MODEL_CARD.md").read_text() == "new"  # the old bundle is intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]
    load_feature_nets(tmp_path / "b")


def test_missing_bundle_is_one_line_naming_the_pipeline(tmp_path, monkeypatch):
    with pytest.raises(InputError) as err:
        load_feature_nets(tmp_path / "nowhere")
    msg = str(err.value)
    assert "\n" not in msg and "nowhere" in msg and "pipelines/train_feature_nets.py" in msg
    monkeypatch.setattr(bundle_mod, "DEFAULT_BUNDLE", tmp_path / "default")
    with pytest.raises(InputError, match="default.*train_feature_nets"):
        load_feature_nets()


def test_other_bundle_formats_are_refused(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"format": "ctvl-tokenizer-bundle-1"}))
    with pytest.raises(InputError, match="not a feature-network bundle"):
        load_feature_nets(tmp_path)
