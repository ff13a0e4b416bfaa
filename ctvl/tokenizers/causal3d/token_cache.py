"""Tokenizer latents per scan, cached on disk, shared by the report model and the generator.

scan → the tokenizer bundle's preprocessing → latents. Training (report model, text-to-CT generator)
reads every scan's latents many times, and a frozen tokenizer gives the same latents each time, so
they are computed once and cached with :class:`ctvl.data.cache.TensorCache`. The key covers the scan
file (path, mtime, size), the tokenizer's id (a digest of its weights and export config, which includes
the preprocessing spec) and the encode path: a different tokenizer or spec is a miss, never a stale hit.
An entry holds ``codes`` (D, t, h, w) float32 and ``indices`` (t, h, w) int32, and as metadata the
source path, the tokenizer id and the model-space shape.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from ctvl.data.cache import TensorCache, file_key
from ctvl.data.datasets import CTRateRecord, load_record_volume
from ctvl.io.volume import Volume
from ctvl.tokenizers.causal3d.bundle import LoadedTokenizer
from ctvl.tokenizers.causal3d.inference import encode_scan

CACHE_KIND = "report-visual-tokens-1"


def encode_volume(tok: LoadedTokenizer, volume: Volume) -> dict[str, torch.Tensor]:
    """Latents of one HU volume with the tokenizer's stored preprocessing.

    Returns:
        ``{"codes": (D, t, h, w) float32, "indices": (t, h, w) int32}`` on the CPU.
    """

    encoded = encode_scan(tok, volume)
    return {"codes": encoded.codes.float().contiguous(), "indices": encoded.indices.contiguous()}


def geometry_summary(volume: Volume) -> dict[str, float]:
    """Field of view (mm) and spacing of a scan, as recorded for the training data."""
    spacing = [float(s) for s in volume.spacing]
    return {
        **{f"spacing_{a}": s for a, s in zip("xyz", spacing)},
        **{f"fov_{a}": s * n for a, s, n in zip("xyz", spacing, volume.shape)},
    }


class VisualTokenCache:
    """Latents of CT-RATE-layout records, computed once per (scan, tokenizer) and kept on disk.

    Args:
        tokenizer: the loaded tokenizer bundle (frozen).
        root: cache folder; None keeps nothing on disk.
    """

    def __init__(self, *, tokenizer: LoadedTokenizer, root: str | Path | None) -> None:
        self.tokenizer = tokenizer
        self.cache = TensorCache(root=root) if root is not None else None

    def key(self, path: str | Path) -> str:
        """Cache key of a scan file for this tokenizer."""
        return file_key(path, CACHE_KIND, self.tokenizer.tokenizer_id, self.tokenizer.encode_mode)

    def codes(self, record: CTRateRecord) -> dict[str, torch.Tensor]:
        """Latents of one record (from the cache when present)."""

        def make() -> dict[str, torch.Tensor]:
            volume = load_record_volume(record)
            out = encode_volume(self.tokenizer, volume)
            out["geometry"] = torch.tensor(list(geometry_summary(volume).values()), dtype=torch.float64)
            return out

        if self.cache is None:
            return make()
        meta = {"source": str(record.path), "tokenizer": self.tokenizer.tokenizer_id, "kind": CACHE_KIND}
        return self.cache.get_or_create(self.key(record.path), make, metadata=meta)

    def codes_many(
        self,
        records: Sequence[CTRateRecord],
        progress: Callable[[int, int], None] | None = None,
        rank: int = 0,
        world_size: int = 1,
    ) -> list[dict[str, torch.Tensor]] | None:
        """Fill the cache for ``records`` (this rank takes every ``world_size``-th one) and return them all.

        Under torchrun every rank computes its share and waits for the others; then each rank reads
        every entry from the cache. Without a cache folder every record is encoded here.

        Args:
            records: the scans.
            progress: ``progress(done, total)`` after each scan of this rank's share.
            rank: this process' rank.
            world_size: number of processes.

        Returns:
            One ``{"codes", "indices", "geometry"}`` per record, in order.
        """
        mine = list(range(rank, len(records), world_size)) if self.cache is not None else list(range(len(records)))
        out: dict[int, dict[str, torch.Tensor]] = {}
        for done, i in enumerate(mine, 1):
            out[i] = self.codes(records[i])
            if progress is not None:
                progress(done, len(mine))
        if world_size > 1 and self.cache is not None:
            import torch.distributed as dist

            if dist.is_initialized():
                dist.barrier()
        return [out[i] if i in out else self.codes(records[i]) for i in range(len(records))]


def default_cache_dir() -> Path:
    """``$CTVL_CACHE`` or ``runs/cache`` (relative to the working directory)."""
    return Path(os.environ.get("CTVL_CACHE", "runs/cache"))
