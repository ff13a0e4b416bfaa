"""Tests for ctvl.tokenizers.causal3d.bundle.token_channels: a dry run reads D from config.json alone."""

from __future__ import annotations

import shutil
from pathlib import Path

from ctvl.tokenizers.causal3d.bundle import DEFAULT_BUNDLE, load_tokenizer, token_channels
from tests.report.factory import tiny_tokenizer_bundle


def test_token_channels_needs_no_weights(tmp_path: Path) -> None:
    bundle = tiny_tokenizer_bundle(tmp_path / "tok")
    assert token_channels(bundle, 99) == (6, None)
    (bundle / "weights.safetensors").unlink()  # the weights are never read
    assert token_channels(bundle, 99) == (6, None)


def test_token_channels_of_the_shipped_bundle_matches_the_model(tmp_path: Path) -> None:
    got, note = token_channels(None, 99)
    assert note is None and got == load_tokenizer(DEFAULT_BUNDLE).model.config.token_channels


def test_token_channels_falls_back_with_a_note(tmp_path: Path) -> None:
    got, note = token_channels(tmp_path / "missing", 18)
    assert got == 18 and note is not None and "18 token channels from the config" in note
    shutil.copytree(tiny_tokenizer_bundle(tmp_path / "tok"), tmp_path / "bad")
    (tmp_path / "bad" / "config.json").write_text("{}")
    got, note = token_channels(tmp_path / "bad", 18)
    assert got == 18 and "not a ctvl tokenizer" in note
