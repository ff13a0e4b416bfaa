"""Visual-token cache: computed once per (scan, tokenizer), equal to a fresh encode, never stale."""

from __future__ import annotations

import os

import torch

from ctvl.data.datasets import load_record_volume, scan_ctrate
from ctvl.tokenizers.causal3d.bundle import load_tokenizer
from ctvl.tokenizers.causal3d.token_cache import VisualTokenCache, encode_volume, geometry_summary
from tests.report.factory import shared, tiny_tokenizer_bundle


def test_cache_hits_after_first_encode_and_matches_a_fresh_encode(tmp_path):
    art = shared()
    tok = load_tokenizer(art["tokenizer"])
    records = scan_ctrate(art["data"], split="train").records[:3]
    cache = VisualTokenCache(tokenizer=tok, root=tmp_path / "cache")
    first = cache.codes_many(records)
    assert cache.cache.misses == 3 and cache.cache.hits == 0
    again = VisualTokenCache(tokenizer=tok, root=tmp_path / "cache").codes_many(records)
    fresh = encode_volume(tok, load_record_volume(records[0]))
    assert torch.equal(again[0]["codes"], fresh["codes"]) and torch.equal(first[0]["codes"], fresh["codes"])
    assert fresh["codes"].shape == (6, 3, 4, 4) and fresh["indices"].shape == (3, 4, 4)
    assert again[0]["geometry"].shape == (6,)
    meta = cache.cache.metadata(cache.key(records[0].path))
    assert meta["tokenizer"] == tok.tokenizer_id and meta["source"] == str(records[0].path)


def test_another_tokenizer_or_an_edited_scan_is_a_miss(tmp_path):
    art = shared()
    tok = load_tokenizer(art["tokenizer"])
    other = load_tokenizer(tiny_tokenizer_bundle(tmp_path / "other", seed=1))
    record = scan_ctrate(art["data"], split="train").records[0]
    assert VisualTokenCache(tokenizer=tok, root=tmp_path).key(record.path) != VisualTokenCache(
        tokenizer=other, root=tmp_path
    ).key(record.path)
    copy = tmp_path / record.path.name
    copy.write_bytes(record.path.read_bytes())
    before = VisualTokenCache(tokenizer=tok, root=tmp_path).key(copy)
    os.utime(copy, ns=(1, 1))
    assert VisualTokenCache(tokenizer=tok, root=tmp_path).key(copy) != before


def test_no_cache_folder_encodes_in_memory():
    art = shared()
    tok = load_tokenizer(art["tokenizer"])
    records = scan_ctrate(art["data"], split="valid").records[:2]
    out = VisualTokenCache(tokenizer=tok, root=None).codes_many(records)
    assert len(out) == 2 and out[0]["codes"].shape == (6, 3, 4, 4)


def test_geometry_summary_is_spacing_and_field_of_view():
    art = shared()
    record = scan_ctrate(art["data"], split="train").records[0]
    volume = load_record_volume(record)
    geo = geometry_summary(volume)
    assert list(geo) == ["spacing_x", "spacing_y", "spacing_z", "fov_x", "fov_y", "fov_z"]
    assert abs(geo["fov_z"] - volume.spacing[2] * volume.shape[2]) < 1e-6
