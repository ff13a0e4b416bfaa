"""Inference: bundles carry their preprocessing, token files round-trip, reconstructions land on the source grid."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from ctvl.data.phantom import render_case
from ctvl.data.transforms import PreprocessSpec
from ctvl.errors import InputError
from ctvl.eval.recon import field_of_view, recon_metrics
from ctvl.tokenizers.causal3d import Causal3DConfig, Causal3DTokenizer
from ctvl.tokenizers.causal3d.bundle import (
    BUNDLE_FORMAT,
    DEFAULT_BUNDLE,
    PHANTOM_BUNDLE,
    REALCT_BUNDLE,
    SHIPPED,
    export_bundle,
    load_tokenizer,
    tokenizer_export,
)
from ctvl.tokenizers.causal3d.inference import (
    decode_scan,
    encode_scan,
    load_tokens,
    reconstruct,
    reconstruct_tokens,
    save_tokens,
)
from ctvl.train import save_bundle

SPEC = PreprocessSpec.from_dict(
    {**PreprocessSpec.cpu().to_dict(), "size": [32, 32], "depth": 17, "spacing": [11.25, 11.25, 22.5]}
)


def make_bundle(folder: Path, seed: int = 0, spec: PreprocessSpec = SPEC) -> Path:
    """A random-weight tiny tokenizer saved as a bundle (architecture + spec in config.json)."""
    torch.manual_seed(seed)
    config = Causal3DConfig.cpu(filters=4, channel_mult=(1, 2, 2), token_channels=4)
    model = Causal3DTokenizer(config=config)
    export = tokenizer_export("causal3d", config, spec, stage=3)
    return save_bundle(model, {"format": BUNDLE_FORMAT, "task_name": "tokenizer", "task": export}, folder)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_bundle(tmp_path_factory.mktemp("bundle"))


@pytest.fixture(scope="module")
def scan():
    return render_case(5, shape=(40, 36, 21)).volume  # not the model grid: 9.6 x 10.7 x 18 mm voxels


def test_bundle_loads_with_its_own_spec(bundle: Path) -> None:
    tok = load_tokenizer(bundle)
    assert tok.spec == SPEC and tok.kind == "causal3d" and tok.stage == 3 and tok.encode_mode == "windowed"
    assert not tok.model.training and len(tok.tokenizer_id) == 16
    assert load_tokenizer(bundle).tokenizer_id == tok.tokenizer_id  # stable


def test_encode_is_windowed_and_tokens_round_trip(bundle: Path, scan, tmp_path: Path) -> None:
    tok = load_tokenizer(bundle)
    enc = encode_scan(tok, scan)
    assert enc.model_shape == (17, 32, 32) and enc.indices.shape == (3, 4, 4) and enc.indices.dtype == torch.int32
    x = SPEC.apply(scan)[None]  # (1, 1, 17, 32, 32)
    ref = tok.model.encode(x, mode="windowed")
    assert torch.equal(enc.indices.long(), ref.indices[0]) and torch.equal(enc.codes, ref.codes[0])
    path = save_tokens(enc, tmp_path / "t.safetensors")
    back = load_tokens(path)
    assert torch.equal(back.indices, enc.indices) and torch.equal(back.codes, enc.codes)
    assert back.spec == SPEC and back.model_shape == enc.model_shape and back.tokenizer == enc.tokenizer
    assert back.source["shape"] == [40, 36, 21] and np.allclose(back.source["affine"], scan.affine)


def test_reconstruction_lands_on_the_source_grid(bundle: Path, scan, tmp_path: Path) -> None:
    tok = load_tokenizer(bundle)
    result = reconstruct(tok, scan)
    assert result.volume.shape == scan.shape and np.array_equal(result.volume.affine, scan.affine)
    assert result.volume.data.dtype == np.float32
    assert -1000.0 - 1e-3 <= result.volume.data.min() and result.volume.data.max() <= 1000.0 + 1e-3
    # streaming decode of the stored tokens equals the one-shot decode of the same codes
    with torch.no_grad():
        oneshot = tok.model.decode_codes(result.tokens.codes[None])[0, :, :17]
    torch.testing.assert_close(result.model_recon, oneshot, rtol=1e-5, atol=1e-5)
    # the token file alone is enough to put the reconstruction back on the grid
    from_tokens = reconstruct_tokens(tok, load_tokens(save_tokens(result.tokens, tmp_path / "t.safetensors")))
    assert from_tokens.shape == scan.shape and np.array_equal(from_tokens.affine, scan.affine)
    np.testing.assert_allclose(from_tokens.data, result.volume.data, atol=1e-2)
    assert recon_metrics(result.model_input, result.model_recon)["psnr"] > 0


def test_tokens_of_another_tokenizer_are_refused(bundle: Path, scan, tmp_path: Path) -> None:
    enc = encode_scan(load_tokenizer(bundle), scan)
    other = load_tokenizer(make_bundle(tmp_path / "other", seed=1))
    with pytest.raises(InputError, match="--model"):
        decode_scan(other, enc)


def test_half_precision_bundle(bundle: Path, scan, tmp_path: Path) -> None:
    half = export_bundle(bundle, tmp_path / "half", card="# card\n", training={"note": "test"})
    assert (half / "weights.safetensors").stat().st_size < 0.6 * (bundle / "weights.safetensors").stat().st_size
    assert (half / "MODEL_CARD.md").read_text() == "# card\n"
    config = json.loads((half / "config.json").read_text())
    assert config["training"]["weights_dtype"] == "float16" and config["task"]["preprocessing"] == SPEC.to_dict()
    full, small = load_tokenizer(bundle), load_tokenizer(half)
    assert next(small.model.parameters()).dtype == torch.float32
    a, b = reconstruct(full, scan).model_recon, reconstruct(small, scan).model_recon
    assert recon_metrics(a, b)["psnr"] > 35  # float16 weights change the reconstruction very little


def test_bad_bundles_and_token_files(bundle: Path, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not found"):
        load_tokenizer(tmp_path / "missing")
    broken = make_bundle(tmp_path / "nospec")
    config = json.loads((broken / "config.json").read_text())
    del config["task"]["preprocessing"]
    (broken / "config.json").write_text(json.dumps(config))
    with pytest.raises(InputError, match="preprocessing spec"):
        load_tokenizer(broken)
    other = tmp_path / "other"
    save_bundle({"w": torch.zeros(2)}, {"task_name": "report", "task": {}}, other)
    with pytest.raises(InputError, match="not a ctvl tokenizer"):
        load_tokenizer(other)
    misfit = make_bundle(tmp_path / "misfit")
    config = json.loads((misfit / "config.json").read_text())
    config["task"]["config"]["filters"] = 8
    (misfit / "config.json").write_text(json.dumps(config))
    with pytest.raises(InputError, match="do not fit"):
        load_tokenizer(misfit)
    save_file({"x": torch.zeros(3)}, str(tmp_path / "plain.safetensors"))
    with pytest.raises(InputError, match="not a ctvl token file"):
        load_tokens(tmp_path / "plain.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"junk")
    with pytest.raises(InputError):
        load_tokens(tmp_path / "junk.safetensors")
    with pytest.raises(InputError, match="not found"):
        load_tokens(tmp_path / "none.safetensors")


@pytest.mark.skipif(
    not (PHANTOM_BUNDLE / "weights.safetensors").exists(),
    reason="the phantom bundle is not built yet (python pipelines/train_tokenizer.py)",
)
def test_phantom_bundle_reconstructs_a_held_out_phantom() -> None:
    assert (PHANTOM_BUNDLE / "weights.safetensors").stat().st_size < 6 * 2**20  # small enough to ship
    assert (PHANTOM_BUNDLE / "MODEL_CARD.md").is_file()
    tok = load_tokenizer("phantom")  # the shipped bundle by its short name
    assert tok.spec == PreprocessSpec.cpu() and tok.stage == 3 and tok.model.config.compression == "8x8x8"
    volume = render_case(987_654).volume  # a patient no training split contains
    result = reconstruct(tok, volume)
    assert result.volume.shape == volume.shape and np.array_equal(result.volume.affine, volume.affine)
    assert recon_metrics(result.model_input, result.model_recon)["psnr"] > 25


@pytest.mark.skipif(
    not (DEFAULT_BUNDLE / "weights.safetensors").exists(),
    reason="the real-CT bundle is not built yet (python pipelines/train_realct_tokenizer.py)",
)
def test_default_bundle_is_the_realct_one_at_1p5mm() -> None:
    assert DEFAULT_BUNDLE == REALCT_BUNDLE and SHIPPED["realct"] == DEFAULT_BUNDLE
    assert (DEFAULT_BUNDLE / "weights.safetensors").stat().st_size < 6 * 2**20
    card = (DEFAULT_BUNDLE / "MODEL_CARD.md").read_text()
    assert "LIDC-IDRI" in card and "CC BY" in card and "Why 1.5 mm" in card  # data, licences, the choice
    tok = load_tokenizer()
    assert tok.spec.spacing == (1.5, 1.5, 1.5) and tok.spec.depth is None and tok.stage == 3
    # a 1.5 mm phantom from a seed no split used, 384 mm across, 30 slices (any depth): same grid and affine back
    volume = render_case(424_242, shape=(256, 256, 30), spacing=(1.5, 1.5, 1.5)).volume
    result = reconstruct(tok, volume)
    assert result.volume.shape == volume.shape and np.array_equal(result.volume.affine, volume.affine)
    box = (slice(None), *field_of_view(tok.spec, volume))
    assert recon_metrics(result.model_input[box], result.model_recon[box])["psnr"] > 20


def test_export_bundle_never_appears_partially(bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = export_bundle(bundle, tmp_path / "out", card="v1")
    real = Path.write_text

    def fail_on_card(self: Path, *args, **kwargs):  # weights and config are written, the card fails
        if self.name == "MODEL_CARD.md":
            raise OSError("disk full")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", fail_on_card)
    with pytest.raises(OSError, match="disk full"):
        export_bundle(bundle, out, card="v2", half=False)
    monkeypatch.undo()
    assert (out / "MODEL_CARD.md").read_text() == "v1"  # the previous bundle, whole
    assert json.loads((out / "config.json").read_text())["training"]["weights_dtype"] == "float16"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no temporary left beside it
    load_tokenizer(out)
    monkeypatch.setattr(Path, "write_text", fail_on_card)
    with pytest.raises(OSError, match="disk full"):
        export_bundle(bundle, tmp_path / "fresh", card="v2")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # a new bundle is not there at all
