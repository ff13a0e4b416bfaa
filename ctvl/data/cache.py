"""On-disk tensor cache: preprocessed volumes now, tokenizer outputs later.

An entry is one safetensors file named by a key. Keys come from :func:`file_key`: the source file's
resolved path, modification time (ns) and size, plus whatever else decides the content (a
``PreprocessSpec.hash()`` for preprocessed volumes, a model hash for token caches). Editing or
replacing the source file, or changing the spec/model, therefore gives a new key: a miss, never a
stale hit. Files are written to a temporary name in the same folder and renamed into place, so
readers (other DataLoader workers, other processes) see a whole file or none.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ctvl.atomic import atomic_file
from ctvl.errors import InputError


def file_key(path: str | Path, *parts: str) -> str:
    """Cache key for content derived from the file at ``path``.

    Args:
        path: source file (must exist).
        parts: strings that also decide the content, e.g. ``"preprocess", spec.hash()``.
    Returns:
        40 hex digits.
    """
    p = Path(path).resolve()
    try:
        st = p.stat()
    except OSError as exc:
        raise InputError(f"cannot read file for cache key: {exc.strerror}", path=p) from exc
    text = "\x1f".join([str(p), str(st.st_mtime_ns), str(st.st_size), *map(str, parts)])
    return hashlib.sha256(text.encode()).hexdigest()[:40]


class TensorCache:
    """A folder of safetensors files addressed by key.

    Args:
        root: cache folder (created on first write).

    Attributes:
        hits, misses: counts since construction (a corrupt entry counts as a miss and is removed).
    """

    def __init__(self, *, root: str | Path) -> None:
        self.root = Path(root)
        self.hits = 0
        self.misses = 0

    def path_for(self, key: str) -> Path:
        """Where the entry for ``key`` lives (two-level fan-out keeps folders small)."""
        if not key or any(c not in "0123456789abcdef" for c in key):
            raise ValueError(f"cache keys are lowercase hex digests, got {key!r}")
        return self.root / key[:2] / f"{key}.safetensors"

    def load(self, key: str) -> dict[str, torch.Tensor] | None:
        """The tensors stored under ``key``, or None (miss)."""
        path = self.path_for(key)
        if not path.is_file():
            self.misses += 1
            return None
        try:
            tensors = load_file(path)
        except (SafetensorError, OSError, ValueError):
            path.unlink(missing_ok=True)  # truncated or corrupt: drop it and recompute
            self.misses += 1
            return None
        self.hits += 1
        return tensors

    def save(self, key: str, tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, str] | None = None) -> Path:
        """Write ``tensors`` (and string ``metadata``) under ``key`` atomically; returns the file."""
        path = self.path_for(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        data = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
        with atomic_file(path, fsync=False) as tmp:  # recomputable: a torn file is dropped on read
            save_file(data, str(tmp), metadata={k: str(v) for k, v in (metadata or {}).items()})
        return path

    def get_or_create(
        self, key: str, create: Callable[[], Mapping[str, torch.Tensor]], metadata: Mapping[str, str] | None = None
    ) -> dict[str, torch.Tensor]:
        """Load ``key``; on a miss call ``create()``, store its tensors and return them."""
        found = self.load(key)
        if found is not None:
            return found
        tensors = dict(create())
        self.save(key, tensors, metadata)
        return tensors

    def metadata(self, key: str) -> dict[str, str]:
        """The string metadata stored with ``key`` (empty if absent)."""
        from safetensors import safe_open

        with safe_open(self.path_for(key), framework="pt") as f:
            return dict(f.metadata() or {})

    def __contains__(self, key: str) -> bool:
        return self.path_for(key).is_file()

    def __len__(self) -> int:
        return sum(1 for _ in self.root.glob("??/*.safetensors")) if self.root.is_dir() else 0

    def clear(self) -> int:
        """Delete every entry; returns how many were removed."""
        n = 0
        for p in self.root.glob("??/*.safetensors") if self.root.is_dir() else ():
            p.unlink(missing_ok=True)
            n += 1
        return n
