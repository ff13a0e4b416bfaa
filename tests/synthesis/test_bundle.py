"""Generator bundles: round trip, the embedded tokenizer is checked, one-line errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from ctvl.errors import InputError
from ctvl.synthesis import load_generator
from ctvl.synthesis.bundle import DEFAULT_BUNDLE


def test_bundle_holds_weights_config_and_its_tokenizer(tiny_bundle: Path, tiny_gen):
    assert {"weights.safetensors", "config.json", "tokenizer"} <= {p.name for p in tiny_bundle.iterdir()}
    config = json.loads((tiny_bundle / "config.json").read_text())
    assert config["task_name"] == "synthesis" and config["task"]["tokenizer"]["id"] == tiny_gen.tokenizer.tokenizer_id
    assert tiny_gen.spec == tiny_gen.tokenizer.spec and not tiny_gen.model.training
    assert load_generator(tiny_bundle).generator_id == tiny_gen.generator_id  # stable digest


def test_a_different_tokenizer_is_refused(tiny_bundle: Path, tmp_path: Path):
    copy = shutil.copytree(tiny_bundle, tmp_path / "copy")
    from safetensors.torch import load_file, save_file

    weights = load_file(copy / "tokenizer" / "weights.safetensors")
    key = next(k for k, v in weights.items() if v.is_floating_point())
    weights[key] = weights[key] + 1.0
    save_file(weights, copy / "tokenizer" / "weights.safetensors", metadata={"format": "pt"})
    with pytest.raises(InputError, match="not the one this generator was trained with"):
        load_generator(copy)


def test_missing_and_wrong_folders_are_one_line_errors(tmp_path: Path, tiny_bundle: Path):
    with pytest.raises(InputError, match="bundle not found"):
        load_generator(tmp_path / "nope")
    tok = tiny_bundle / "tokenizer"
    with pytest.raises(InputError, match="not a ctvl text-to-CT generator"):
        load_generator(tok)


def test_default_bundle_location_is_inside_the_package():
    assert DEFAULT_BUNDLE.parent.name == "bundles" and DEFAULT_BUNDLE.name == "synthesis-phantom-cpu"
    assert torch.__version__  # the default bundle itself is tested in test_shipped.py when installed


def test_a_failed_export_leaves_the_previous_bundle_whole(
    tiny_bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    from ctvl.synthesis import export_synthesis_bundle

    tok = tiny_bundle / "tokenizer"
    out = export_synthesis_bundle(tiny_bundle, tmp_path / "b", card="v1", tokenizer_source=tok)
    real = Path.write_text

    def fail_on_card(self, *args, **kwargs):  # tokenizer, weights and config are written, the card fails
        if self.name == "MODEL_CARD.md":
            raise OSError("disk full")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", fail_on_card)
    with pytest.raises(OSError, match="disk full"):
        export_synthesis_bundle(tiny_bundle, out, card="v2", half=True, tokenizer_source=tok)
    monkeypatch.undo()
    assert (out / "MODEL_CARD.md").read_text() == "v1"
    assert json.loads((out / "config.json").read_text())["training"]["weights_dtype"] == "float32"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]
    load_generator(out)
