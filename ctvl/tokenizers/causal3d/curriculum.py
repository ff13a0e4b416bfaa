"""The three-stage curriculum of the causal 3D tokenizer (BTB3D): what each stage sees and what it trains.

=======  =====================================  ===================================  ======================
stage    data (one sample)                      encode path                          trained
=======  =====================================  ===================================  ======================
1        an excerpt of 1 + f_t slices (9) and   one-shot causal (the excerpt is       encoder, quantizer,
         ``singles`` single slices              exactly one stage-2 window)           decoder
2        a crop of ``crop`` slices (default:    overlapping windows of 5 Haar frames  encoder, quantizer,
         the whole volume)                      (1 + f_t slices), stride f_t          decoder
3        a long crop (default: whole volume)    windowed, frozen, no gradient         decoder only
=======  =====================================  ===================================  ======================

The slice-wise 2D baseline uses the stage-1 stream: it sees exactly the same slices per step (every slice
of an excerpt is tokenized on its own).

Samples are drawn from preprocessed volumes (1, T, H, W) by a generator seeded with ``(seed, sample
index)``, so the stream is deterministic and any rank can draw any sample (see
:func:`ctvl.train.sample_indices`). Excerpts start at a random slice (the stage-2 windows of inference start
at multiples of f_t: a subset); volumes shorter than the excerpt are padded at the end with the pad value.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ctvl.errors import ConfigError, InputError
from ctvl.train.rng import derive_seed

STAGE_NAMES = {1: "local reconstruction", 2: "overlapping-window tiling", 3: "long-context decoder refinement"}
DATA_KEYS = {
    "root": "CT-RATE-layout folder of the training volumes (the phantom dataset or CT-RATE)",
    "split": "split to train on (default: train)",
    "cache_dir": "cache of preprocessed volumes (default: <root>/.cache/preprocess)",
    "preprocessing": "cpu | paper | a PreprocessSpec mapping",
    "stage": "curriculum stage 1 | 2 | 3",
    "excerpt": "stage 1: slices per excerpt (default 1 + f_t)",
    "singles": "stage 1: single slices per sample (default 1)",
    "crop": "stages 2, 3: slices per crop (default: the whole volume)",
    "max_volumes": "use only the first N volumes (default: all)",
    "memory_cache_mb": "keep up to this many MB of preprocessed volumes in memory (default 2048)",
}


@dataclass(frozen=True)
class StagePlan:
    """What one curriculum stage trains on.

    Attributes:
        stage: 1, 2 or 3.
        length: slices per excerpt or crop; None = the whole volume.
        singles: single slices per sample (stage 1), 0 otherwise.
        encode_mode: ``"causal"`` (stage 1) or ``"windowed"`` (stages 2, 3).
        train_encoder: False in stage 3 (encoder and quantizer frozen, decoder refined).
    """

    stage: int
    length: int | None
    singles: int
    encode_mode: str
    train_encoder: bool

    @property
    def name(self) -> str:
        return STAGE_NAMES[self.stage]


def check_data_keys(data: Mapping[str, Any]) -> None:
    """Raise :class:`ConfigError` for a key of the ``data:`` section this task does not know."""
    unknown = sorted(set(data) - set(DATA_KEYS))
    if unknown:
        known = "; ".join(f"{k}: {v}" for k, v in DATA_KEYS.items())
        raise ConfigError(f"unknown data key(s) {unknown} in the tokenizer config; known keys: {known}")


def stage_plan(stage: int, data: Mapping[str, Any], time_factor: int) -> StagePlan:
    """The plan of ``stage`` from the config's ``data:`` section.

    Args:
        stage: curriculum stage (1, 2 or 3).
        data: the ``data:`` section (``excerpt``, ``singles``, ``crop``).
        time_factor: slices per latent frame of the model (8 for 8x8x8; 1 for the slice-wise baseline).

    Raises:
        ConfigError: unknown stage or non-positive lengths.
    """
    if stage not in STAGE_NAMES:
        raise ConfigError(f"curriculum stage must be 1, 2 or 3, got {stage!r}")
    if stage == 1:
        length = int(data.get("excerpt", 1 + time_factor))
        singles = int(data.get("singles", 1))
        plan = StagePlan(1, length, singles, "causal", True)
    else:
        crop = data.get("crop")
        plan = StagePlan(stage, None if crop is None else int(crop), 0, "windowed", stage == 2)
    if (plan.length is not None and plan.length < 1) or plan.singles < 0:
        raise ConfigError(f"stage {stage}: excerpt/crop must be >= 1 and singles >= 0")
    return plan


class VolumeSource:
    """Preprocessed training volumes (1, T, H, W), read through the on-disk cache, kept in memory up to a budget.

    Args:
        dataset: a :class:`ctvl.data.datasets.CTRateDataset` (or anything with ``__len__`` and ``image(i)``).
        limit: use only the first ``limit`` volumes.
        memory_mb: in-memory LRU budget (the phantom set fits entirely; CT-RATE volumes are re-read).
    """

    def __init__(self, dataset: Any, limit: int | None = None, memory_mb: float = 2048.0) -> None:
        self.dataset = dataset
        self.n = len(dataset) if limit is None else min(int(limit), len(dataset))
        if self.n < 1:
            raise InputError("the training dataset has no volumes")
        self.budget = float(memory_mb) * 2**20
        self._cache: OrderedDict[int, torch.Tensor] = OrderedDict()
        self._bytes = 0

    def __len__(self) -> int:
        return self.n

    def get(self, i: int) -> torch.Tensor:
        """Volume ``i``: (1, T, H, W) float32."""
        if i in self._cache:
            self._cache.move_to_end(i)
            return self._cache[i]
        x = self.dataset.image(i)
        size = x.numel() * x.element_size()
        if size <= self.budget:
            while self._bytes + size > self.budget and self._cache:
                _, old = self._cache.popitem(last=False)
                self._bytes -= old.numel() * old.element_size()
            self._cache[i] = x
            self._bytes += size
        return x


def open_volumes(data: Mapping[str, Any], spec: Any) -> VolumeSource:
    """The training volumes named by the ``data:`` section, preprocessed with ``spec``.

    Raises:
        InputError: the dataset folder is missing or holds no volumes of the split.
    """
    from ctvl.data.datasets import CTRateDataset, scan_ctrate

    if not data.get("root"):
        raise ConfigError("the tokenizer config needs data.root (a CT-RATE-layout folder, e.g. the phantom set)")
    root = Path(str(data["root"]))
    if not root.is_dir():
        raise InputError("training data folder not found; make it with `ctvl data phantom` or run "
                         "pipelines/train_tokenizer.py", path=root)
    index = scan_ctrate(root, split=str(data.get("split", "train")))
    cache = data.get("cache_dir") or root / ".cache" / "preprocess"
    dataset = CTRateDataset(index, spec, cache_dir=cache)
    limit = data.get("max_volumes")
    return VolumeSource(dataset, None if limit is None else int(limit), float(data.get("memory_cache_mb", 2048)))


def sample_generator(seed: int, index: int) -> torch.Generator:
    """The generator of global sample ``index`` (independent of rank and accumulation)."""
    return torch.Generator().manual_seed(derive_seed(seed, 7919, index))


def excerpt(volume: torch.Tensor, length: int | None, gen: torch.Generator, pad_value: float) -> torch.Tensor:
    """A random run of ``length`` consecutive slices of ``volume`` (1, T, H, W) -> (1, length, H, W).

    ``length=None`` returns the whole volume; a volume shorter than ``length`` is padded at the end.
    """
    t = volume.shape[1]
    if length is None or length == t:
        return volume
    if length > t:
        pad = volume.new_full((volume.shape[0], length - t, *volume.shape[2:]), pad_value)
        return torch.cat([volume, pad], dim=1)
    start = int(torch.randint(0, t - length + 1, (), generator=gen))
    return volume[:, start : start + length]


def draw_sample(
    source: VolumeSource, plan: StagePlan, gen: torch.Generator, pad_value: float
) -> dict[str, torch.Tensor]:
    """One training sample of ``plan``.

    Returns:
        ``{"volume": (1, L, H, W)}`` plus, in stage 1 with singles, ``{"slices": (singles, 1, H, W)}``
        (each single slice from its own random volume).
    """
    v = int(torch.randint(0, len(source), (), generator=gen))
    out = {"volume": excerpt(source.get(v), plan.length, gen, pad_value)}
    if plan.singles:
        picks = []
        for _ in range(plan.singles):
            vol = source.get(int(torch.randint(0, len(source), (), generator=gen)))
            k = int(torch.randint(0, vol.shape[1], (), generator=gen))
            picks.append(vol[:, k])  # (1, H, W)
        out["slices"] = torch.stack(picks)  # (singles, 1, H, W)
    return out


def collate(samples: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Stack samples: ``volume`` (B, 1, L, H, W) and ``slices`` (B * singles, 1, H, W)."""
    out = {"volume": torch.stack([s["volume"] for s in samples])}
    if "slices" in samples[0]:
        out["slices"] = torch.cat([s["slices"] for s in samples])
    return out
