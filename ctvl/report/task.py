"""Training task of the report model for the shared loop (``ctvl train report --config ...``).

``model:`` keys are the fields of :class:`~ctvl.report.model.ReportModelConfig`. ``data:`` keys:

``root``        CT-RATE-layout dataset folder (volumes + reports CSV; a labels CSV for the auxiliary loss)
``split``       split to train on (default ``train``)
``tokenizer``   tokenizer bundle / run folder (default: the bundle shipped with ctvl); unused with ``visual: none``
``cache_dir``   visual-token cache folder (default ``$CTVL_CACHE`` or ``runs/cache``); null = no cache
``limit``       use only the first N scans (null = all)

The task encodes every training scan once with the frozen tokenizer (cached per scan and tokenizer),
trains the BPE on the training reports (or, with ``init_from``, keeps the BPE those weights were trained
with: token ids must mean the same words), and streams deterministic shuffled micro-batches
(:func:`ctvl.train.sample_indices`, one permutation per epoch), so DDP equals single-process training.
Every checkpoint's ``config.json`` stores, under ``"task"``, the model config, the BPE, the tokenizer's
identity and the **preprocessing spec** it applies, and the geometry range of the training scans (used to
warn about scans unlike the training data at inference). With ``model.detail_prompt`` the diagnosis
prompt carries each phantom's side and extent codes (:mod:`ctvl.report.details`, cached beside the
visual tokens), and ``init_from`` weights without the detail table load with it at zero.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ctvl.data.datasets import scan_ctrate
from ctvl.errors import ConfigError, check_keys
from ctvl.report.details import record_states
from ctvl.report.lm import decoder_layers
from ctvl.report.model import ReportModel, ReportModelConfig
from ctvl.report.text_tokenizer import ReportTextTokenizer
from ctvl.report.visual import ReductionConfig, count_tokens, select_tokens
from ctvl.tokenizers.causal3d.bundle import load_tokenizer, token_channels, tokenizer_identity
from ctvl.tokenizers.causal3d.token_cache import VisualTokenCache, default_cache_dir
from ctvl.train import TrainConfig, TrainTask, sample_indices
from ctvl.train.checkpoint import load_checkpoint
from ctvl.train.distributed import env_ranks
from ctvl.train.dry_run import compute_bytes, lm_activation_bytes
from ctvl.train.rng import derive_seed, seed_everything

DATA_KEYS = ("root", "split", "tokenizer", "cache_dir", "limit")
EXPORT_FORMAT = "ctvl-report-model-1"


def geometry_range(geometries: list[torch.Tensor]) -> dict[str, list[float]]:
    """Min/max over training scans of each geometry value.

    Order: that of :func:`ctvl.tokenizers.causal3d.token_cache.geometry_summary`.
    """
    names = ["spacing_x", "spacing_y", "spacing_z", "fov_x", "fov_y", "fov_z"]
    table = torch.stack([g.double() for g in geometries]).numpy()  # (N, 6)
    return {n: [float(table[:, k].min()), float(table[:, k].max())] for k, n in enumerate(names)}


class ReportTask(TrainTask):
    """Report model training (3D tokenizer, slice-wise tokenizer or text-only, by config)."""

    name = "report"

    def __init__(self) -> None:
        self.cfg: TrainConfig | None = None
        self.model_config: ReportModelConfig | None = None
        self.text: ReportTextTokenizer | None = None
        self.tokenizer: Any = None
        self.codes: list[torch.Tensor] | None = None
        self.selections: list[Any] | None = None
        self.targets: list[torch.Tensor] = []
        self.labels: torch.Tensor | None = None
        self.states: torch.Tensor | None = None
        self.training_data: dict[str, Any] = {}

    # ------------------------------------------------------------------------------------ data
    def _data(self, cfg: TrainConfig) -> dict[str, Any]:
        check_keys(cfg.data, DATA_KEYS, "data", where="the report config")
        if not cfg.data.get("root"):
            raise ConfigError("data.root is required: a CT-RATE-layout dataset folder (e.g. `ctvl data phantom`)")
        return {"split": "train", "tokenizer": None, "cache_dir": str(_default_cache()), "limit": None, **cfg.data}

    def prepare(self, cfg: TrainConfig) -> None:
        """Index the data, encode every scan (cached), train the BPE, tokenize the reports."""

        self.cfg = cfg
        data = self._data(cfg)
        mc = ReportModelConfig.from_dict(dict(cfg.model))
        index = scan_ctrate(data["root"], split=data["split"], require=("reports",))
        records = index.records[: int(data["limit"])] if data["limit"] else index.records
        if not records:
            raise ConfigError("no training scans selected (data.limit = 0?)", path=data["root"])
        inherited = _inherited_text(cfg.init_from) if cfg.init_from and not mc.lm_path else None
        if mc.lm_path:
            self.text = ReportTextTokenizer.from_pretrained_lm(mc.lm_path)
        elif inherited is not None:
            self.text = inherited
        else:
            corpus = [t for r in records for t in (r.findings, r.impression)]
            self.text = ReportTextTokenizer.train(corpus, vocab_size=mc.vocab_size)
        self.targets = [torch.tensor(self.text.target(r.findings, r.impression)) for r in records]
        has_labels = all(r.has_labels for r in records)
        if mc.aux_label_weight > 0 and not has_labels:
            raise ConfigError(
                "model.aux_label_weight > 0 needs a labels CSV with a row for every training scan", path=data["root"]
            )
        self.labels = torch.from_numpy(np.stack([r.labels for r in records])).float() if has_labels else None
        if mc.detail_prompt:
            cache_dir = data["cache_dir"]
            cache = (
                Path(cache_dir) / "details" / f"{Path(data['root']).name}-{data['split']}.json" if cache_dir else None
            )
            self.states = torch.from_numpy(record_states(records, cache))
        geometries: list[torch.Tensor] = []
        if mc.visual == "tokenizer":
            self.tokenizer = load_tokenizer(data["tokenizer"])
            mc.visual_dim = int(self.tokenizer.model.config.token_channels)
            rank, world, _ = env_ranks()
            cache = VisualTokenCache(tokenizer=self.tokenizer, root=data["cache_dir"])
            entries = cache.codes_many(records, progress=_progress(rank, len(records)), rank=rank, world_size=world)

            reduction = ReductionConfig.from_dict(mc.reduction)
            self.codes = [e["codes"] for e in entries]
            self.selections = [select_tokens(c, reduction) for c in self.codes]  # parameter-free: once per scan
            geometries = [e["geometry"] for e in entries]
        self.model_config = mc
        lengths = [len(t) for t in self.targets]
        self.training_data = {
            "root": str(data["root"]),
            "split": data["split"],
            "scans": len(records),
            "target_tokens": {"mean": float(np.mean(lengths)), "max": int(max(lengths))},
            "geometry": geometry_range(geometries) if geometries else None,
            "labels": bool(has_labels),
        }
        longest = max(lengths) + 4 + (self._max_visual() if self.codes is not None else 0)
        limit = int(mc.lm["max_position_embeddings"]) if not mc.lm_path else None
        if limit is not None and longest > limit:
            raise ConfigError(
                f"the longest training sequence has {longest} tokens (visual + prompt + report), more "
                f"than model.lm.max_position_embeddings = {limit}; raise it or reduce visual tokens"
            )

    def _max_visual(self) -> int:

        if self.codes is None or self.model_config is None:
            raise RuntimeError("the task is not set up: the trainer calls setup() before _max_visual()")
        reduction = ReductionConfig.from_dict(self.model_config.reduction)
        extra = int(bool(self.model_config.summary_token))
        return max(count_tokens(reduction, tuple(c.shape[1:])) for c in self.codes) + extra

    # ------------------------------------------------------------------------------------ TrainTask
    def build_model(self, cfg: TrainConfig) -> nn.Module:
        self.prepare(cfg)
        seed_everything(cfg.seed)  # same initial weights whether the token cache was warm or cold
        if self.model_config is None or self.text is None:
            raise RuntimeError("the task is not set up: the trainer calls setup() before build_model()")
        return ReportModel(config=self.model_config, text=self.text)

    def batches(
        self, cfg: TrainConfig, rank: int, world_size: int, seed: int, start: int = 0
    ) -> Iterator[dict[str, Any]]:
        n = len(self.targets)
        perms: dict[int, torch.Tensor] = {}
        micro = start
        while True:
            picks = []
            for i in sample_indices(cfg, rank, world_size, micro):
                epoch, pos = divmod(i, n)
                if epoch not in perms:
                    perms = {
                        epoch: torch.randperm(n, generator=torch.Generator().manual_seed(derive_seed(seed, epoch)))
                    }
                picks.append(int(perms[epoch][pos]))
            yield {
                "codes": [self.selections[k] for k in picks] if self.selections is not None else None,
                "targets": [self.targets[k] for k in picks],
                "labels": self.labels[picks] if self.labels is not None else None,
                "states": self.states[picks] if self.states is not None else None,
            }
            micro += 1

    def dry_model(self, cfg: TrainConfig) -> nn.Module:
        """The configured model without data: a placeholder BPE sized to ``model.vocab_size`` (or the
        ``lm_path`` tokenizer), the tokenizer's channels when its bundle loads, no LM weights."""

        mc = ReportModelConfig.from_dict(dict(cfg.model))
        self.dry_notes = []
        if mc.visual == "tokenizer":
            mc.visual_dim, note = token_channels(self._data(cfg)["tokenizer"], mc.visual_dim)
            self.dry_notes += [note] if note else []
        if mc.lm_path:
            text: Any = ReportTextTokenizer.from_pretrained_lm(mc.lm_path)
        else:
            text = _SizedText(ReportTextTokenizer.train(_DRY_CORPUS, vocab_size=mc.vocab_size), mc.vocab_size)
        self.model_config, self.text = mc, text
        return ReportModel(config=mc, text=text, pretrained=False)

    def activation_bytes(self, cfg: TrainConfig, model: nn.Module, micro_batch: int) -> int | None:
        """Analytic LM activations at the longest sequence the config allows (``model.lm.max_position_embeddings``)."""

        lm = model.lm.get_base_model() if hasattr(model.lm, "get_base_model") else model.lm
        c = lm.config
        hidden = int(c.hidden_size)
        heads = int(c.num_attention_heads)
        kv = int(getattr(c, "num_key_value_heads", None) or heads) * hidden // heads
        inter = int(getattr(c, "intermediate_size", None) or getattr(c, "n_inner", None) or 4 * hidden)
        mc = self.model_config or ReportModelConfig.from_dict(dict(cfg.model))
        tokens = int(mc.lm["max_position_embeddings"])
        self.dry_notes = [
            *getattr(self, "dry_notes", []),
            f"activations at {tokens} tokens per sequence (model.lm.max_position_embeddings), logits included",
        ]
        lora = mc.lora
        return lm_activation_bytes(
            layers=int(c.num_hidden_layers),
            hidden=hidden,
            kv_hidden=kv,
            intermediate=inter,
            vocab=int(c.vocab_size),
            tokens=tokens,
            batch=micro_batch,
            value_bytes=compute_bytes(cfg),
            checkpointing=cfg.activation_checkpointing,
            lora_dropout=bool(lora and float(lora["dropout"]) > 0),
        )

    def load_initial_weights(self, model: nn.Module, state_dict: dict[str, torch.Tensor]) -> None:
        """Strict, except that weights trained without the detail table (``details.weight``) load into a model
        with one; it then stays at its zero start."""
        missing, unexpected = model.load_state_dict(state_dict, strict=False)
        wrong = [k for k in missing if k != "details.weight"] + list(unexpected)
        if wrong:
            raise RuntimeError(f"weights do not fit the report model: {', '.join(wrong[:4])}")

    def blocks(self, model: nn.Module) -> list[nn.Module]:
        """The LM's decoder layers: FSDP units and activation-checkpointing blocks."""

        return decoder_layers(model.lm)

    def loss(self, model: nn.Module, batch: dict[str, Any], step: int) -> tuple[torch.Tensor, dict]:
        out = model(batch["codes"], batch["targets"], batch["labels"], batch.get("states"))
        metrics = {k: v for k, v in out.items() if k != "loss"}
        return out["loss"], metrics

    def export_config(self) -> dict[str, Any]:
        if self.model_config is None or self.text is None:
            raise RuntimeError("the task is not set up: the trainer calls setup() before export_config()")
        tok = self.tokenizer
        return {
            "format": EXPORT_FORMAT,
            "model": self.model_config.to_dict(),
            "text_tokenizer": self.text.to_dict(),
            "tokenizer": tokenizer_identity(tok) if tok is not None else None,
            "preprocessing": tok.spec.to_dict() if tok is not None else None,
            "training_data": self.training_data,
        }


_DRY_CORPUS = ["No pleural effusion.", "Moderate right pleural effusion and cardiomegaly.", "Lungs are clear."] * 4


class _SizedText:
    """A trained BPE that reports the configured vocabulary size (dry runs size the embeddings as training would)."""

    def __init__(self, text: ReportTextTokenizer, vocab_size: int) -> None:
        self._text, self.vocab_size = text, max(int(vocab_size), text.vocab_size)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._text, name)


def _default_cache() -> Path:

    return default_cache_dir()


def _progress(rank: int, total: int):
    """A progress callback for encoding the training scans (rank 0 prints every ~10 %)."""
    if rank != 0 or total < 20:
        return None
    step = max(1, total // 10)

    def report(done: int, mine: int) -> None:
        if done % step == 0 or done == mine:
            print(f"visual tokens: {done}/{mine} scans of this rank", flush=True)

    return report


def _inherited_text(init_from: str) -> ReportTextTokenizer | None:
    """The BPE stored with ``init_from`` weights (a report bundle or checkpoint), or None if it has none."""
    _, config = load_checkpoint(init_from, weights="model")
    task = config.get("task") if isinstance(config, dict) else None
    stored = task.get("text_tokenizer") if isinstance(task, dict) else None
    return ReportTextTokenizer.from_dict(stored) if isinstance(stored, dict) else None
