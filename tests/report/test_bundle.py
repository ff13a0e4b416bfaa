"""Report bundles: self-contained, and refused when the tokenizer or its preprocessing was swapped."""

from __future__ import annotations

import json
import shutil

import pytest

from ctvl.errors import InputError
from ctvl.report.bundle import TOKENIZER_DIR, export_report_bundle, load_report_model
from ctvl.tokenizers.causal3d.bundle import load_tokenizer
from tests.report.factory import TINY_SPEC, shared, tiny_tokenizer_bundle


def test_bundle_carries_its_tokenizer_and_loads_like_the_run():
    art = shared()
    loaded = load_report_model(art["bundle"])
    assert (art["bundle"] / TOKENIZER_DIR / "weights.safetensors").is_file()
    assert loaded.visual and loaded.spec == TINY_SPEC == loaded.tokenizer.spec
    assert loaded.tokenizer.tokenizer_id == load_tokenizer(art["tokenizer"]).tokenizer_id
    config = json.loads((art["bundle"] / "config.json").read_text())
    assert config["format"] == "ctvl-report-bundle-1" and config["training"]["weights_dtype"] == "float32"
    assert not loaded.model.training


def test_text_only_bundle_has_no_tokenizer():
    loaded = load_report_model(shared()["textonly"])
    assert not loaded.visual and loaded.spec is None
    assert not (shared()["textonly"] / TOKENIZER_DIR).exists()


def test_swapped_tokenizer_is_refused(tmp_path):
    bundle = tmp_path / "b"
    shutil.copytree(shared()["bundle"], bundle)
    shutil.rmtree(bundle / TOKENIZER_DIR)
    tiny_tokenizer_bundle(bundle / TOKENIZER_DIR, seed=7)  # same architecture, other weights
    with pytest.raises(InputError, match="not the one this report model was trained with"):
        load_report_model(bundle)


def test_changed_preprocessing_is_refused(tmp_path):
    bundle = tmp_path / "b"
    shutil.copytree(shared()["bundle"], bundle)
    config = json.loads((bundle / "config.json").read_text())
    config["task"]["preprocessing"]["window"] = [-1200.0, 600.0]  # training spec recorded differently
    (bundle / "config.json").write_text(json.dumps(config))
    with pytest.raises(InputError, match="preprocessing"):
        load_report_model(bundle)


def test_not_a_report_model_and_missing_folder(tmp_path):
    with pytest.raises(InputError, match="not a ctvl report model"):
        load_report_model(shared()["tokenizer"])
    with pytest.raises(InputError, match="not found"):
        load_report_model(tmp_path / "nothing")


def test_half_precision_export(tmp_path):
    art = shared()
    out = export_report_bundle(art["bundle"], tmp_path / "half", half=True)
    loaded = load_report_model(out)
    assert json.loads((out / "config.json").read_text())["training"]["weights_dtype"] == "float16"
    assert next(loaded.model.parameters()).dtype.is_floating_point


def test_tokenizer_can_be_copied_from_an_identical_bundle_only(tmp_path):
    art = shared()
    same = tmp_path / "same"
    shutil.copytree(art["tokenizer"], same)
    out = export_report_bundle(art["bundle"], tmp_path / "b1", tokenizer_source=same)
    assert load_report_model(out).tokenizer.tokenizer_id == load_tokenizer(art["tokenizer"]).tokenizer_id
    other = tiny_tokenizer_bundle(tmp_path / "other", seed=5)
    with pytest.raises(InputError, match="no longer the one"):
        export_report_bundle(art["bundle"], tmp_path / "b2", tokenizer_source=other)


def test_inference_settings_can_change_at_export_but_not_the_architecture(tmp_path):
    from ctvl.errors import ConfigError

    art = shared()
    out = export_report_bundle(
        art["bundle"], tmp_path / "thr", model_overrides={"label_threshold": 0.2, "num_beams": 2}
    )
    loaded = load_report_model(out)
    assert loaded.model.config.label_threshold == 0.2 and loaded.model.config.num_beams == 2
    with pytest.raises(ConfigError, match="only"):
        export_report_bundle(art["bundle"], tmp_path / "bad", model_overrides={"conv_width": 4})
    with pytest.raises(ConfigError, match="label_threshold"):
        export_report_bundle(art["bundle"], tmp_path / "bad2", model_overrides={"label_threshold": 1.5})


def test_a_failed_export_leaves_the_previous_bundle_whole(tmp_path, monkeypatch):
    from pathlib import Path

    out = export_report_bundle(shared()["bundle"], tmp_path / "b", card="v1")
    real = Path.write_text

    def fail_on_card(self, *args, **kwargs):  # tokenizer, weights and config are written, the card fails
        if self.name == "MODEL_CARD.md":
            raise OSError("disk full")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", fail_on_card)
    with pytest.raises(OSError, match="disk full"):
        export_report_bundle(shared()["bundle"], out, card="v2", half=True)
    monkeypatch.undo()
    assert (out / "MODEL_CARD.md").read_text() == "v1"
    assert json.loads((out / "config.json").read_text())["training"]["weights_dtype"] == "float32"
    assert (out / TOKENIZER_DIR / "weights.safetensors").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]
    load_report_model(out)
