"""TensorCache: hit, miss, invalidation by source mtime/size and by spec, atomic writes, corrupt entries."""

from __future__ import annotations

import os

import pytest
import torch

from ctvl.data.cache import TensorCache, file_key
from ctvl.errors import InputError


@pytest.fixture()
def source(tmp_path):
    path = tmp_path / "scan.nii.gz"
    path.write_bytes(b"volume bytes")
    return path


def test_miss_then_hit_returns_the_same_tensors(tmp_path, source):
    cache = TensorCache(root=tmp_path / "cache")
    key = file_key(source, "preprocess", "spec-a")
    calls = []

    def make():
        calls.append(1)
        return {"image": torch.arange(24, dtype=torch.float32).reshape(1, 2, 3, 4)}

    first = cache.get_or_create(key, make, metadata={"source": str(source)})
    second = cache.get_or_create(key, make)
    assert len(calls) == 1 and (cache.misses, cache.hits) == (1, 1)
    torch.testing.assert_close(first["image"], second["image"])
    assert second["image"].shape == (1, 2, 3, 4) and second["image"].dtype == torch.float32
    assert cache.metadata(key) == {"source": str(source)}
    assert key in cache and len(cache) == 1


def test_key_changes_with_mtime_size_path_and_parts(tmp_path, source):
    key = file_key(source, "preprocess", "spec-a")
    assert file_key(source, "preprocess", "spec-a") == key  # deterministic
    assert file_key(source, "preprocess", "spec-b") != key  # other spec
    assert file_key(source, "tokens", "spec-a") != key  # other namespace (e.g. a token cache)
    st = source.stat()
    os.utime(source, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    assert file_key(source, "preprocess", "spec-a") != key  # touched
    other = tmp_path / "other.nii.gz"
    other.write_bytes(b"volume bytes")
    assert file_key(other, "preprocess", "spec-a") != key


def test_rewritten_source_is_a_miss(tmp_path, source):
    cache = TensorCache(root=tmp_path / "cache")
    cache.save(file_key(source, "p"), {"x": torch.zeros(3)})
    source.write_bytes(b"a different, longer volume")  # new size (and mtime)
    assert cache.load(file_key(source, "p")) is None and cache.misses == 1


def test_corrupt_entry_is_dropped_and_recomputed(tmp_path, source):
    cache = TensorCache(root=tmp_path / "cache")
    key = file_key(source)
    path = cache.save(key, {"x": torch.ones(1000)})
    path.write_bytes(path.read_bytes()[:50])  # truncated by a crash elsewhere
    assert cache.load(key) is None and not path.exists()
    out = cache.get_or_create(key, lambda: {"x": torch.full((2,), 7.0)})
    torch.testing.assert_close(out["x"], torch.full((2,), 7.0))
    torch.testing.assert_close(cache.load(key)["x"], torch.full((2,), 7.0))


def test_writes_leave_no_temporary_files(tmp_path, source):
    cache = TensorCache(root=tmp_path / "cache")
    path = cache.save(file_key(source), {"x": torch.zeros(4)})
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]
    assert cache.clear() == 1 and len(cache) == 0


def test_missing_source_and_bad_key():
    with pytest.raises(InputError, match="cache key"):
        file_key("/no/such/file.nii.gz")
    with pytest.raises(ValueError):
        TensorCache(root="/tmp").path_for("../escape")
