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

import dataclasses
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ctvl.data.datasets import CTRateDataset, scan_ctrate
from ctvl.errors import ConfigError, InputError, check_keys
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
    "weight": "with mix: the share of samples drawn from root, relative to the mix weights (default 1)",
    "use": "with mix: what root's volumes feed: both (default) | excerpts | singles (stage-1 single slices only)",
    "mix": "more CT-RATE-layout folders drawn from beside root: a list of {root, weight[, use, split, max_volumes]}",
    "patch": "[H, W]: a random in-plane crop of every excerpt and single slice (default: the whole plane)",
    "min_tissue": "with patch: the least share of voxels above -900 HU a patch should hold (default 0.25, 8 tries)",
}
# A volume shallower than the excerpt or crop (e.g. a single real slice) is redrawn up to this many times, so such
# volumes feed the single slices of stage 1 and excerpts come from real runs of slices, not from padding.
REDRAWS = 64


@dataclass(frozen=True)
class StagePlan:
    """What one curriculum stage trains on.

    Attributes:
        stage: 1, 2 or 3.
        length: slices per excerpt or crop; None = the whole volume.
        singles: single slices per sample (stage 1), 0 otherwise.
        encode_mode: ``"causal"`` (stage 1) or ``"windowed"`` (stages 2, 3).
        train_encoder: False in stage 3 (encoder and quantizer frozen, decoder refined).
        patch: (H, W) of a random in-plane crop of every excerpt and single slice; None = the whole plane.
        min_tissue: the least share of voxels above -900 HU a patch should hold (the best of 8 tries is kept).
    """

    stage: int
    length: int | None
    singles: int
    encode_mode: str
    train_encoder: bool
    patch: tuple[int, int] | None = None
    min_tissue: float = 0.25

    @property
    def name(self) -> str:
        return STAGE_NAMES[self.stage]


def check_data_keys(data: Mapping[str, Any]) -> None:
    """Raise :class:`ConfigError` for a key of the ``data:`` section this task does not know."""
    check_keys(data, DATA_KEYS, "data", where="the tokenizer config", describe=DATA_KEYS)


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
    patch = data.get("patch")
    if patch is not None:
        if isinstance(patch, int):
            patch = (patch, patch)
        if not isinstance(patch, (list, tuple)) or len(patch) != 2 or min(int(p) for p in patch) < 1:
            raise ConfigError(f"data.patch must be [H, W] (positive integers), got {patch!r}")
        min_tissue = float(data.get("min_tissue", 0.25))
        if not 0.0 <= min_tissue <= 1.0:
            raise ConfigError(f"data.min_tissue must be in [0, 1], got {min_tissue!r}")
        plan = dataclasses.replace(plan, patch=(int(patch[0]), int(patch[1])), min_tissue=min_tissue)
    elif "min_tissue" in data:
        raise ConfigError("data.min_tissue only applies with data.patch")
    return plan


class VolumeSource:
    """Preprocessed training volumes (1, T, H, W), read through the on-disk cache, kept in memory up to a budget.

    Args:
        dataset: a :class:`ctvl.data.datasets.CTRateDataset` (or anything with ``__len__`` and ``image(i)``).
        limit: use only the first ``limit`` volumes.
        memory_mb: in-memory LRU budget (the phantom set fits entirely; CT-RATE volumes are re-read).
    """

    def __init__(self, *, dataset: Any, limit: int | None = None, memory_mb: float = 2048.0) -> None:
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


USES = ("both", "excerpts", "singles")


class VolumeMix:
    """Training volumes from one or more folders, each drawn with its weight for what it feeds.

    Args:
        sources: the folders' volumes.
        weights: relative share of samples per source (positive).
        uses: per source ``"both"``, ``"excerpts"`` (excerpts and crops) or ``"singles"`` (stage-1 single slices;
            e.g. a folder of real single slices); default all ``"both"``.
    """

    def __init__(self, *, sources: list[VolumeSource], weights: list[float], uses: list[str] | None = None) -> None:
        uses = uses or ["both"] * len(sources)
        if not sources or len(sources) != len(weights) or len(uses) != len(sources) or min(weights) <= 0:
            raise ConfigError("a volume mix needs one positive weight per source")
        if bad := sorted(set(uses) - set(USES)):
            raise ConfigError(f"data use must be one of {', '.join(USES)}, got {bad}")
        if all(u == "singles" for u in uses):
            raise ConfigError("every data folder is `use: singles`: nothing feeds the excerpts and crops")
        self.sources, self.uses = sources, uses
        self.weights = [float(w) for w in weights]

    def __len__(self) -> int:
        return sum(len(s) for s in self.sources)

    def pick(self, gen: torch.Generator, role: str = "excerpts") -> VolumeSource:
        """A source for ``role`` (``"excerpts"`` or ``"singles"``) drawn by weight; no random draw when only one
        source serves the role (so single-folder streams stay as they were)."""
        ok = [i for i, u in enumerate(self.uses) if u in ("both", role)]
        if len(ok) == 1:
            return self.sources[ok[0]]
        w = torch.tensor([self.weights[i] for i in ok], dtype=torch.float64)
        return self.sources[ok[int(torch.multinomial(w / w.sum(), 1, generator=gen))]]


def _open_folder(item: Mapping[str, Any], spec: Any, memory_mb: float, what: str) -> VolumeSource:

    root = Path(str(item["root"]))
    if not root.is_dir():
        raise InputError(
            f"{what} folder not found; make it with `ctvl data phantom` or the pipeline that trains this config",
            path=root,
        )
    index = scan_ctrate(root, split=str(item.get("split", "train")))
    cache = item.get("cache_dir") or root / ".cache" / "preprocess"
    dataset = CTRateDataset(source=index, spec=spec, cache_dir=cache)
    limit = item.get("max_volumes")
    return VolumeSource(dataset=dataset, limit=None if limit is None else int(limit), memory_mb=memory_mb)


def open_volumes(data: Mapping[str, Any], spec: Any) -> VolumeMix:
    """The training volumes named by the ``data:`` section (``root``, any ``mix`` folders), preprocessed by ``spec``.

    Raises:
        ConfigError: no ``data.root``, or a malformed ``mix`` entry.
        InputError: a dataset folder is missing or holds no volumes of the split.
    """
    if not data.get("root"):
        raise ConfigError("the tokenizer config needs data.root (a CT-RATE-layout folder, e.g. the phantom set)")
    mix = data.get("mix") or []
    if not isinstance(mix, list) or not all(isinstance(m, Mapping) and m.get("root") for m in mix):
        raise ConfigError("data.mix must be a list of {root, weight[, use, split, max_volumes]} mappings")
    for m in mix:
        check_keys(m, ("root", "weight", "use", "split", "max_volumes", "cache_dir"), "data.mix")
    memory = float(data.get("memory_cache_mb", 2048)) / (1 + len(mix))
    sources = [_open_folder(data, spec, memory, "training data")]
    sources += [_open_folder(m, spec, memory, "data.mix") for m in mix]
    weights = [float(data.get("weight", 1.0))] + [float(m.get("weight", 1.0)) for m in mix]
    uses = [str(data.get("use", "both"))] + [str(m.get("use", "both")) for m in mix]
    return VolumeMix(sources=sources, weights=weights, uses=uses)


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


def _volume(mix: VolumeMix, length: int | None, gen: torch.Generator, role: str = "excerpts") -> torch.Tensor:
    """A random volume (1, T, H, W) of a source drawn by weight for ``role``; one shallower than ``length`` is
    redrawn (up to :data:`REDRAWS` times)."""
    source = mix.pick(gen, role)
    vol = source.get(int(torch.randint(0, len(source), (), generator=gen)))
    for _ in range(REDRAWS if length is not None else 0):
        if vol.shape[1] >= length:
            break
        vol = source.get(int(torch.randint(0, len(source), (), generator=gen)))
    return vol


def patch_crop(
    x: torch.Tensor, patch: tuple[int, int] | None, gen: torch.Generator, tissue_level: float, min_tissue: float
) -> torch.Tensor:
    """A random in-plane crop (..., H, W) -> (..., ph, pw), padded-out planes left whole.

    Up to 8 positions are tried; the first whose share of voxels above ``tissue_level`` reaches ``min_tissue``
    is kept, else the one with the most tissue (so patches of air outside the body are rare).
    """
    if patch is None:
        return x
    h, w = x.shape[-2:]
    ph, pw = min(patch[0], h), min(patch[1], w)
    best, best_share = None, -1.0
    for _ in range(8):
        i = int(torch.randint(0, h - ph + 1, (), generator=gen))
        j = int(torch.randint(0, w - pw + 1, (), generator=gen))
        crop = x[..., i : i + ph, j : j + pw]
        share = float((crop > tissue_level).float().mean())
        if share > best_share:
            best, best_share = crop, share
        if share >= min_tissue:
            break
    return best


def draw_sample(
    source: VolumeMix, plan: StagePlan, gen: torch.Generator, pad_value: float, tissue_level: float = -0.9
) -> dict[str, torch.Tensor]:
    """One training sample of ``plan``.

    Args:
        source: the training volumes.
        plan: the stage's plan (lengths, singles, in-plane patch).
        gen: this sample's generator.
        pad_value: padding value (model units) of excerpts longer than the volume.
        tissue_level: -900 HU in model units (patches prefer voxels above it).

    Returns:
        ``{"volume": (1, L, H, W)}`` plus, in stage 1 with singles, ``{"slices": (singles, 1, H, W)}``
        (each single slice from its own random volume); with ``plan.patch`` H, W are the patch size.
    """
    vol = excerpt(_volume(source, plan.length, gen), plan.length, gen, pad_value)
    out = {"volume": patch_crop(vol, plan.patch, gen, tissue_level, plan.min_tissue).contiguous()}
    if plan.singles:
        picks = []
        for _ in range(plan.singles):
            vol = _volume(source, None, gen, "singles")
            k = int(torch.randint(0, vol.shape[1], (), generator=gen))
            picks.append(patch_crop(vol[:, k], plan.patch, gen, tissue_level, plan.min_tissue))  # (1, H, W)
        out["slices"] = torch.stack(picks)  # (singles, 1, H, W)
    return out


def collate(samples: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Stack samples: ``volume`` (B, 1, L, H, W) and ``slices`` (B * singles, 1, H, W)."""
    out = {"volume": torch.stack([s["volume"] for s in samples])}
    if "slices" in samples[0]:
        out["slices"] = torch.cat([s["slices"] for s in samples])
    return out
