"""Training task of the text-to-CT generator for the shared loop (``ctvl train synthesis --config ...``).

``model:`` keys are the fields of :class:`~ctvl.synthesis.model.SynthesisConfig`. ``data:`` keys:

``root``        CT-RATE-layout dataset folder (volumes + reports CSV + labels CSV)
``split``       split to train on (default ``train``)
``tokenizer``   tokenizer bundle / run folder whose latents are generated (default: the shipped one)
``cache_dir``   latent and text-embedding cache folder (default ``$CTVL_CACHE`` or ``runs/cache``)
``limit``       use only the first N scans (null = all)
``n_mixes``     sentence mixes per scan among its training prompts (default 3)

Preparation (once per run, cached): every training scan is encoded with the frozen tokenizer
(:class:`~ctvl.tokenizers.causal3d.token_cache.VisualTokenCache`), the per-channel mean/std of the codes is
stored in the model's buffers, every scan gets its fixed prompts (:func:`~ctvl.synthesis.prompts.prompt_variants`)
and every prompt its MiniLM context (one cache file for the whole set). A micro-batch is a pure function of
its sample indices (:func:`ctvl.train.sample_indices`): scan (one permutation per epoch), prompt, whether
the prompt is dropped for the null text, noise and time all come from generators seeded by the sample
index, and whether the step trains on a latent prefix from one seeded by the optimiser step. So DDP equals
one process and a resumed run continues exactly.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ctvl.data.cache import TensorCache
from ctvl.data.datasets import scan_ctrate
from ctvl.errors import ConfigError, check_keys
from ctvl.synthesis.flow import flow_loss, make_scheduler, sample_times
from ctvl.synthesis.model import LatentFlowGenerator, SynthesisConfig
from ctvl.synthesis.prompts import SentenceLabels, prompt_variants
from ctvl.synthesis.text import ENCODER_ID, TextEncoder
from ctvl.tokenizers.causal3d.bundle import load_tokenizer, token_channels, tokenizer_identity
from ctvl.tokenizers.causal3d.token_cache import VisualTokenCache, default_cache_dir
from ctvl.train import TrainConfig, TrainTask, sample_indices
from ctvl.train.distributed import env_ranks, unwrap
from ctvl.train.rng import derive_seed, seed_everything

DATA_KEYS = ("root", "split", "tokenizer", "cache_dir", "limit", "n_mixes")
EXPORT_FORMAT = "ctvl-synthesis-model-1"
_PROMPT_STREAM, _SAMPLE_STREAM, _PREFIX_STREAM, _EPOCH_STREAM = 11, 12, 13, 14


def _default_cache() -> str:

    return str(default_cache_dir())


def text_contexts(prompts: list[str], max_tokens: int, cache_dir: str | None) -> list[torch.Tensor]:
    """MiniLM contexts of ``prompts`` ((1 + L_i, 384) float16 each), cached as one file per prompt set."""

    digest = hashlib.sha256(json.dumps([ENCODER_ID, max_tokens, prompts]).encode()).hexdigest()[:40]
    cache = TensorCache(root=Path(cache_dir) / "synthesis-text") if cache_dir else None
    found = cache.load(digest) if cache is not None else None
    if found is None:
        encoder = TextEncoder(max_tokens=max_tokens)
        contexts = encoder.encode(prompts)
        lengths = torch.tensor([c.shape[0] for c in contexts], dtype=torch.int64)
        found = {"flat": torch.cat(contexts).half(), "lengths": lengths}
        if cache is not None:
            cache.save(digest, found, metadata={"encoder": ENCODER_ID, "prompts": str(len(prompts))})
    return list(torch.split(found["flat"], found["lengths"].tolist()))


class SynthesisTask(TrainTask):
    """Latent rectified-flow training of the text-to-CT generator.

    Args:
        sentence_labels: labels a sentence affirms (e.g. from the report labeler), used to mix prompt
            sentences so that every training prompt names all of its scan's findings; None: impression only.
    """

    name = "synthesis"
    find_unused_parameters = True  # the null text gets no gradient in a micro-batch that drops no prompt

    def __init__(self, *, sentence_labels: SentenceLabels | None = None) -> None:
        self.sentence_labels = sentence_labels
        self.model_config: SynthesisConfig | None = None
        self.tokenizer: Any = None
        self.codes: torch.Tensor | None = None  # (N, C, t, h, w) normalised
        self.contexts: list[list[torch.Tensor]] = []  # per scan, per prompt: (1 + L, 384) float16
        self.stats: tuple[torch.Tensor, torch.Tensor] | None = None
        self.training_data: dict[str, Any] = {}

    def _data(self, cfg: TrainConfig) -> dict[str, Any]:
        check_keys(cfg.data, DATA_KEYS, "synthesis data")
        if not cfg.data.get("root"):
            raise ConfigError("data.root is required: a CT-RATE-layout dataset folder (e.g. `ctvl data phantom`)")
        return {
            "split": "train",
            "tokenizer": None,
            "cache_dir": _default_cache(),
            "limit": None,
            "n_mixes": 3,
            **cfg.data,
        }

    def prepare(self, cfg: TrainConfig) -> None:
        """Encode every scan (cached), compute latent statistics, build prompts and their text contexts."""

        data = self._data(cfg)
        mc = SynthesisConfig.from_dict(dict(cfg.model))
        index = scan_ctrate(data["root"], split=data["split"], require=("reports", "labels"))
        records = index.records[: int(data["limit"])] if data["limit"] else index.records
        if not records:
            raise ConfigError("no training scans selected (data.limit = 0?)", path=data["root"])
        self.tokenizer = load_tokenizer(data["tokenizer"])
        mc.latent_channels = int(self.tokenizer.model.config.token_channels)
        rank, world, _ = env_ranks()
        cache = VisualTokenCache(tokenizer=self.tokenizer, root=data["cache_dir"])
        entries = cache.codes_many(records, rank=rank, world_size=world)
        codes = torch.stack([e["codes"].float() for e in entries])  # (N, C, t, h, w)
        mean = codes.mean(dim=(0, 2, 3, 4))
        std = codes.std(dim=(0, 2, 3, 4)).clamp_min(1e-3)
        self.stats = (mean, std)
        self.codes = (codes - mean[:, None, None, None]) / std[:, None, None, None]
        prompts: list[list[str]] = []
        for i, r in enumerate(records):
            rng = np.random.default_rng(derive_seed(cfg.seed, _PROMPT_STREAM, i))
            prompts.append(
                prompt_variants(
                    r.findings,
                    r.impression,
                    r.labels.astype(int),
                    rng=rng,
                    sentence_labels=self.sentence_labels,
                    n_mixes=int(data["n_mixes"]),
                )
            )
        flat = [p for ps in prompts for p in ps]
        contexts = text_contexts(flat, mc.max_text_tokens, data["cache_dir"])
        per = len(prompts[0])
        self.contexts = [contexts[i * per : (i + 1) * per] for i in range(len(records))]
        self.model_config = mc
        self.training_data = {
            "root": str(data["root"]),
            "split": data["split"],
            "scans": len(records),
            "prompts_per_scan": per,
            "latent_shape": list(codes.shape[1:]),
            "sentence_mixes": self.sentence_labels is not None,
            "example_prompts": prompts[0],
        }

    # ------------------------------------------------------------------------------------ TrainTask
    def build_model(self, cfg: TrainConfig) -> nn.Module:
        self.prepare(cfg)
        seed_everything(cfg.seed)  # same initial weights whether the caches were warm or cold
        if self.model_config is None or self.stats is None:
            raise RuntimeError("the task is not set up: the trainer calls setup() before build_model()")
        model = LatentFlowGenerator(config=self.model_config)
        model.set_latent_stats(*self.stats)
        return model

    def dry_model(self, cfg: TrainConfig) -> nn.Module:
        """The configured generator without data (latent channels from the tokenizer bundle when it loads)."""

        mc = SynthesisConfig.from_dict(dict(cfg.model))
        mc.latent_channels, note = token_channels(self._data(cfg)["tokenizer"], mc.latent_channels)
        self.dry_notes = [note] if note else []
        return LatentFlowGenerator(config=mc)

    def batches(
        self, cfg: TrainConfig, rank: int, world_size: int, seed: int, start: int = 0
    ) -> Iterator[dict[str, Any]]:
        if self.codes is None or self.model_config is None:
            raise RuntimeError("the task is not set up: the trainer calls setup() before batches()")
        mc = self.model_config
        n, frames = len(self.codes), int(self.codes.shape[2])
        perms: dict[int, torch.Tensor] = {}
        micro = start
        while True:
            indices = sample_indices(cfg, rank, world_size, micro)
            step = indices[0] // cfg.batch_size
            keep = frames
            g_step = torch.Generator().manual_seed(derive_seed(seed, _PREFIX_STREAM, step))
            if frames > 1 and torch.rand((), generator=g_step) < mc.prefix_prob:
                keep = int(torch.randint(1, frames, (), generator=g_step))
            x0, noise, texts, gens = [], [], [], []
            for i in indices:
                epoch, pos = divmod(i, n)
                if epoch not in perms:
                    g_epoch = torch.Generator().manual_seed(derive_seed(seed, _EPOCH_STREAM, epoch))
                    perms = {epoch: torch.randperm(n, generator=g_epoch)}
                k = int(perms[epoch][pos])
                g = torch.Generator().manual_seed(derive_seed(seed, _SAMPLE_STREAM, i))
                variant = int(torch.randint(len(self.contexts[k]), (), generator=g))
                dropped = bool(torch.rand((), generator=g) < mc.p_uncond)
                x = self.codes[k, :, :keep]
                x0.append(x)
                noise.append(torch.randn(x.shape, generator=g))
                texts.append(None if dropped else self.contexts[k][variant].float())
                gens.append(g)
            yield {"x0": torch.stack(x0), "noise": torch.stack(noise), "times": sample_times(mc, gens), "texts": texts}
            micro += 1

    def loss(self, model: nn.Module, batch: dict[str, Any], step: int) -> tuple[torch.Tensor, dict]:
        if self.model_config is None:
            raise RuntimeError("the task is not set up: the trainer calls setup() before loss()")
        context = unwrap(model).context(batch["texts"])
        scheduler = make_scheduler(self.model_config)
        loss = flow_loss(model, scheduler, batch["x0"], batch["noise"], batch["times"], context)
        dropped = sum(t is None for t in batch["texts"]) / max(1, len(batch["texts"]))
        return loss, {"mse": loss.detach(), "null_share": float(dropped), "frames": float(batch["x0"].shape[2])}

    def export_config(self) -> dict[str, Any]:

        if self.model_config is None:
            raise RuntimeError("the task is not set up: the trainer calls setup() before export_config()")
        tok = self.tokenizer
        return {
            "format": EXPORT_FORMAT,
            "model": self.model_config.to_dict(),
            "text_encoder": {"id": ENCODER_ID, "max_tokens": self.model_config.max_text_tokens},
            "tokenizer": tokenizer_identity(tok),
            "preprocessing": tok.spec.to_dict(),
            "training_data": self.training_data,
        }
