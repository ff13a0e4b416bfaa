"""Model-space volumes of a list of records, cached on disk for every pipeline that needs them.

The feature networks, the memorization check and the synthesis metrics all read phantoms in the
tokenizer's model space: (N, 1, T, H, W) = (N, 1, 33, 64, 64) in [-1, 1], made with the tokenizer bundle's
:class:`~ctvl.data.transforms.PreprocessSpec`. Preprocessing 2,000 phantoms takes about a minute and a half on
one core; :func:`model_space_volumes` stores the stacked float16 tensor (540 MB for 2,000) once in a
:class:`~ctvl.data.cache.TensorCache` keyed by every source file (path, mtime, size) and the spec hash, so any
change to a file or to the spec is a miss, never a stale hit.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from ctvl.data.cache import TensorCache, file_key
from ctvl.data.datasets import CTRateRecord, load_record_volume
from ctvl.data.transforms import PreprocessSpec
from ctvl.errors import InputError


def records_key(records: Sequence[CTRateRecord], spec: PreprocessSpec) -> str:
    """Cache key (40 hex digits) of ``records`` preprocessed with ``spec``."""
    h = hashlib.sha256()
    h.update(f"feature-voxels\x1f{spec.hash()}\x1f{len(records)}".encode())
    for r in records:
        h.update(file_key(r.path, "volume").encode())
    return h.hexdigest()[:40]


def model_space_volumes(
    records: Sequence[CTRateRecord],
    spec: PreprocessSpec,
    cache_dir: str | Path | None = None,
    progress: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Preprocess ``records`` into model space (cached) with their labels.

    Args:
        records: records with labels (``scan_ctrate(..., require=("labels",))``).
        spec: preprocessing spec, e.g. ``load_tokenizer().spec``; every volume must come out the same shape.
        cache_dir: :class:`TensorCache` folder (e.g. ``runs/cache/feature-voxels``); None = no cache.
        progress: show a rich progress bar on stderr while preprocessing.

    Returns:
        (volumes (N, 1, T, H, W) float16 in ``spec.out_range``, labels (N, 18) float32 0/1).

    Raises:
        InputError: no records, a record without labels, or volumes of different shapes.
    """
    if not records:
        raise InputError("no records to preprocess")
    unlabeled = [r.volume_name for r in records if not r.has_labels]
    if unlabeled:
        raise InputError(f"{len(unlabeled)} records have no labels (first: {unlabeled[0]})")
    labels = torch.from_numpy(np.stack([r.labels for r in records]).astype(np.float32))
    cache = TensorCache(root=cache_dir) if cache_dir is not None else None
    key = records_key(records, spec) if cache is not None else ""
    if cache is not None:
        found = cache.load(key)
        if found is not None and found["volumes"].shape[0] == len(records):
            return found["volumes"], labels
    volumes = _preprocess(records, spec, progress)
    if cache is not None:
        cache.save(
            key,
            {"volumes": volumes},
            metadata={"spec": spec.to_json(), "n": str(len(records)), "first": records[0].volume_name},
        )
    return volumes, labels


def _preprocess(records: Sequence[CTRateRecord], spec: PreprocessSpec, progress: bool) -> torch.Tensor:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    out: torch.Tensor | None = None
    with Progress(
        TextColumn("preprocessing"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        disable=not progress,
        transient=True,
    ) as bar:
        task = bar.add_task("", total=len(records))
        for i, r in enumerate(records):
            x = spec.apply(load_record_volume(r))  # (1, T, H, W) float32
            if out is None:
                out = torch.empty((len(records), *x.shape), dtype=torch.float16)
            elif tuple(x.shape) != tuple(out.shape[1:]):
                raise InputError(
                    f"preprocessed shape {tuple(x.shape)} differs from {tuple(out.shape[1:])}; "
                    "use a spec with a fixed depth",
                    path=r.path,
                )
            out[i] = x.to(torch.float16)
            bar.advance(task)
    if out is None:
        raise RuntimeError("no scans to stack")
    return out
