"""Training task of the causal 3D tokenizer (all three curriculum stages) and of its slice-wise baseline.

``ctvl train tokenizer --config configs/phantom-cpu-tokenizer-s1.yaml --stage 1`` runs
:class:`TokenizerTask` in the generic loop (:func:`ctvl.train.run_training`). The YAML's free-form sections:

``model:``
    ``kind``: ``causal3d`` (default) or ``slicewise`` (the 2D baseline, built with
    :func:`~ctvl.tokenizers.causal3d.slicewise.slicewise_config` from the 3D architecture given here, at the
    token budget of ``match_depth`` slices); ``loss``: :class:`TokenizerLossConfig` fields; every other key
    is a :class:`Causal3DConfig` field (``filters``, ``channel_mult``, ``token_channels``, ...).
``data:``
    see :data:`ctvl.tokenizers.causal3d.curriculum.DATA_KEYS` (``root``, ``preprocessing``, ``stage``, ``excerpt``,
    ``singles``, ``crop``, ...).

Each stage starts from the previous one with ``init_from`` (a run folder). Stage 3 freezes encoder and
quantizer (eval mode: no quantizer loss) and trains only the decoder. The checkpoint's ``config.json``
stores the model kind, architecture, stage and preprocessing spec (:func:`bundle.tokenizer_export`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from typing import Any

import torch
from torch import nn

from ctvl.data.transforms import PreprocessSpec
from ctvl.errors import ConfigError, check_keys
from ctvl.psnr import psnr_from_mse
from ctvl.tokenizers.causal3d.bundle import KINDS, build_tokenizer, tokenizer_export
from ctvl.tokenizers.causal3d.curriculum import (
    StagePlan,
    check_data_keys,
    collate,
    draw_sample,
    open_volumes,
    sample_generator,
    stage_plan,
)
from ctvl.tokenizers.causal3d.losses import TokenizerLoss, TokenizerLossConfig
from ctvl.tokenizers.causal3d.model import Causal3DConfig, Causal3DTokenizer
from ctvl.tokenizers.causal3d.slicewise import slicewise_config
from ctvl.train import TrainConfig, TrainTask, sample_indices, unwrap
from ctvl.train.distributed import all_reduce_sum
from ctvl.train.rng import capture_rng_state, restore_rng_state
from ctvl.train.task import to_device


@dataclasses.dataclass
class ModelSection:
    """The parsed ``model:`` section."""

    kind: str  # causal3d | slicewise
    config: Causal3DConfig  # the architecture built (slicewise: the 2D config)
    loss: TokenizerLossConfig  # loss weights
    base: Causal3DConfig | None = None  # slicewise: the 3D architecture it matches
    match_depth: int | None = None  # slicewise: depth at which the token budgets match


def parse_model_section(model: Mapping[str, Any]) -> ModelSection:
    """Read the ``model:`` section (see the module docstring).

    Raises:
        ConfigError: unknown kind, architecture or loss keys.
    """
    raw = dict(model)
    kind = str(raw.pop("kind", "causal3d"))
    if kind not in KINDS:
        raise ConfigError(f"model.kind must be one of {', '.join(KINDS)}, got {kind!r}")
    loss_raw = raw.pop("loss", None) or {}
    check_keys(loss_raw, TokenizerLossConfig, "model.loss")
    loss = TokenizerLossConfig(**loss_raw)
    match_depth = raw.pop("match_depth", None)
    arch = Causal3DConfig.from_dict(raw)
    if kind == "slicewise":
        depth = None if match_depth is None else int(match_depth)
        return ModelSection(kind, slicewise_config(arch, depth=depth), loss, arch, depth)
    if match_depth is not None:
        raise ConfigError("model.match_depth only applies to kind: slicewise")
    return ModelSection(kind, arch, loss)


def parse_spec(value: Any) -> PreprocessSpec:
    """``"cpu"`` / ``"cpu-iso"`` / ``"paper"`` presets, or a mapping of :class:`PreprocessSpec` fields.

    A mapping may name a ``preset`` and override some of its fields.
    """
    presets = {"cpu": PreprocessSpec.cpu, "cpu-iso": PreprocessSpec.cpu_iso, "paper": PreprocessSpec.paper}
    if value is None:
        raise ConfigError("the tokenizer config needs data.preprocessing (cpu, cpu-iso, paper or a spec mapping)")
    if isinstance(value, str):
        if value not in presets:
            raise ConfigError(f"data.preprocessing must be one of {sorted(presets)} or a mapping, got {value!r}")
        return presets[value]()
    if not isinstance(value, Mapping):
        raise ConfigError("data.preprocessing must be a preset name or a mapping of spec fields")
    fields = dict(value)
    base = presets.get(str(fields.pop("preset", "paper")))
    if base is None:
        raise ConfigError(f"data.preprocessing.preset must be one of {sorted(presets)}")
    return PreprocessSpec.from_dict({**base().to_dict(), **fields})


class TokenizerTask(TrainTask):
    """One curriculum stage of the causal 3D tokenizer, or the slice-wise baseline.

    Args:
        stage: curriculum stage (1, 2 or 3); None takes ``data.stage`` from the config. When both are
            given they must agree.
    """

    name = "tokenizer"
    step_hooks = True  # the LFQ batch entropy and the LeCAM anchors cover the whole step (begin_step, end_step)

    def __init__(self, *, stage: int | None = None) -> None:
        self.stage_arg = stage
        self.cfg: TrainConfig | None = None
        self.section: ModelSection | None = None
        self.spec: PreprocessSpec | None = None
        self.plan: StagePlan | None = None
        self.criterion: TokenizerLoss | None = None
        self._gan_pair: tuple[torch.Tensor, torch.Tensor] | None = None

    # ------------------------------------------------------------------------------------- setup
    def setup(self, cfg: TrainConfig) -> None:
        """Parse and check the config (called by :meth:`build_model`; idempotent)."""
        check_data_keys(cfg.data)
        stage = cfg.data.get("stage")
        if stage is not None and self.stage_arg is not None and int(stage) != int(self.stage_arg):
            raise ConfigError(
                f"--stage {self.stage_arg} but the config is for stage {stage} (data.stage); "
                "use that stage's config file"
            )
        stage = self.stage_arg if self.stage_arg is not None else stage
        if stage is None:
            raise ConfigError("no curriculum stage: pass --stage 1|2|3 or set data.stage in the config")
        self.cfg = cfg
        self.section = parse_model_section(cfg.model)
        self.spec = parse_spec(cfg.data.get("preprocessing"))
        if self.spec.depth_multiple % self.section.config.time_factor:
            raise ConfigError(
                f"preprocessing depth_multiple {self.spec.depth_multiple} is not a multiple of the "
                f"model's {self.section.config.time_factor} slices per latent frame"
            )
        self.plan = stage_plan(int(stage), cfg.data, self.section.config.time_factor)
        if self.section.kind == "slicewise" and self.plan.stage != 1:
            raise ConfigError("the slice-wise baseline trains on the stage-1 stream only (data.stage: 1)")
        self.criterion = TokenizerLoss(config=self.section.loss)

    def build_model(self, cfg: TrainConfig) -> nn.Module:
        self.setup(cfg)
        if self.section is None or self.plan is None:
            raise RuntimeError("the task is not set up: the trainer calls setup() before build_model()")
        model = build_tokenizer(self.section.kind, self.section.config)
        if not self.plan.train_encoder:
            for part in (model.encoder, model.quantizer):
                part.requires_grad_(False)
                part.eval()  # frozen quantizer: no entropy/commitment loss, no annealing tick
        return model

    def trainable_parameters(self, model: nn.Module) -> list[nn.Parameter]:
        if self.plan is None:
            raise RuntimeError("the task is not set up: the trainer calls setup() before trainable_parameters()")
        if not self.plan.train_encoder:
            return list(unwrap(model).decoder.parameters())
        return [p for p in model.parameters() if p.requires_grad]

    def extra_modules(self, cfg: TrainConfig, model: nn.Module) -> dict[str, nn.Module]:
        """The patch discriminator (with its LeCAM anchors) when ``model.loss.adversarial_weight > 0``."""
        if self.criterion is None:
            raise RuntimeError("the task is not set up: the trainer calls setup() before extra_modules()")
        return {"disc": self.criterion} if self.criterion.discriminator is not None else {}

    # -------------------------------------------------------------------------------------- data
    def batches(
        self, cfg: TrainConfig, rank: int, world_size: int, seed: int, start: int = 0
    ) -> Iterator[dict[str, torch.Tensor]]:
        """Micro-batches ``{"volume": (B, 1, L, H, W)[, "slices": (B * singles, 1, H, W)]}``.

        H, W are ``data.patch`` when it is set.
        """
        if self.plan is None:
            self.setup(cfg)
        if self.plan is None or self.spec is None:
            raise RuntimeError("the task is not set up: the trainer calls setup() before batches()")
        source = open_volumes(cfg.data, self.spec)
        (w0, w1), (o0, o1) = self.spec.window, self.spec.out_range
        tissue = o0 + (min(max(-900.0, w0), w1) - w0) / (w1 - w0) * (o1 - o0)  # -900 HU in model units
        micro = start
        while True:
            samples = [
                draw_sample(source, self.plan, sample_generator(seed, i), self.spec.pad_value, tissue)
                for i in sample_indices(cfg, rank, world_size, micro)
            ]
            yield collate(samples)
            micro += 1

    # -------------------------------------------------------------------------------------- loss
    def loss(self, model: nn.Module, batch: dict[str, torch.Tensor], step: int) -> tuple[torch.Tensor, dict]:
        if self.plan is None or self.criterion is None:
            raise RuntimeError("the task is not set up: the trainer calls setup() before loss()")
        tok: Causal3DTokenizer = unwrap(model)
        self.criterion.to(batch["volume"].device)
        if self.plan.train_encoder:
            tok.quantizer.set_step(step)  # entropy-weight annealing follows the optimiser step
        else:
            tok.encoder.eval()
            tok.quantizer.eval()
        stats = getattr(tok.quantizer, "batch_stats", None)
        if stats is not None:
            stats.new_micro_batch()
        x = batch["volume"]  # (B, 1, L, H, W)
        out = model(x, encode_mode=self.plan.encode_mode)
        loss, logs = self.criterion.generator_loss(x, out.recon, out.aux_loss, step)
        mse = (out.recon.detach() - x).pow(2).mean()
        metrics: dict[str, Any] = {k: v for k, v in logs.items() if k != "loss"}
        metrics["psnr"] = psnr_from_mse(mse)
        for key in ("codebook_usage", "perplexity"):
            if key in out.stats:
                metrics[key] = float(out.stats[key])
        if "slices" in batch:  # stage 1: single slices through the same network, weighted per slice
            s = batch["slices"]  # (N, 1, H, W)
            tok.quantizer.set_step(step)
            out_s = model(s)
            loss_s, logs_s = self.criterion.generator_loss(s, out_s.recon, out_s.aux_loss, step)
            n_vol, n_single = x.shape[0] * x.shape[2], s.shape[0]
            loss = (n_vol * loss + n_single * loss_s) / (n_vol + n_single)
            metrics["psnr_single"] = psnr_from_mse((out_s.recon.detach() - s).pow(2).mean())
            metrics["l1_single"] = logs_s["l1"]
        if self.criterion.discriminator is not None:
            self._gan_pair = (x.detach(), out.recon.detach())
        return loss, metrics

    def begin_step(self, model: nn.Module, micro_batches: list[Any], step: int, ctx: Any) -> None:
        """Collect the step's LFQ code distribution over every micro-batch and rank (encoder and quantizer
        only, without gradients, RNG state restored after it), so the batch entropy is the whole step's; see
        :mod:`ctvl.tokenizers.quantizers.batch_entropy`. Nothing to do for one micro-batch on one rank."""
        tok: Causal3DTokenizer = unwrap(model)
        stats = getattr(tok.quantizer, "batch_stats", None)
        if stats is None or self.plan is None or not self.plan.train_encoder:
            return
        if ctx.world_size * len(micro_batches) == 1:
            return
        rng = capture_rng_state()
        stats.begin_collect()
        with torch.no_grad():
            for batch in micro_batches:  # the quantizer calls of loss(), in its order
                batch = to_device(batch, ctx.device)
                stats.new_micro_batch()
                tok.bottleneck(batch["volume"], self.plan.encode_mode)
                if "slices" in batch:
                    tok.bottleneck(batch["slices"])
        restore_rng_state(rng)
        stats.finish_collect(lambda t: all_reduce_sum(t, ctx), scale=ctx.world_size * len(micro_batches))

    def end_step(self, model: nn.Module, step: int, ctx: Any) -> None:
        """Back to per-batch statistics; move the LeCAM anchors once by the whole step's logits."""
        stats = getattr(unwrap(model).quantizer, "batch_stats", None)
        if stats is not None:
            stats.clear()
        if self.criterion is not None:
            self.criterion.update_anchors(lambda t: all_reduce_sum(t, ctx))

    def extra_loss(self, name: str, module: nn.Module, batch: Any, step: int) -> tuple[torch.Tensor, dict] | None:
        if self.criterion is None:
            raise RuntimeError("the task is not set up: the trainer calls setup() before extra_loss()")
        if name != "disc" or self._gan_pair is None or not self.criterion.gan_active(step):
            return None
        real, fake = self._gan_pair
        return self.criterion.discriminator_loss(real, fake, step)

    # ------------------------------------------------------------------------------------ export
    def export_config(self) -> dict[str, Any]:
        if self.section is None or self.spec is None or self.plan is None:
            raise RuntimeError("the task is not set up: the trainer calls setup() before export_config()")
        extra: dict[str, Any] = {"stage_name": self.plan.name, "loss": dataclasses.asdict(self.section.loss)}
        if self.section.base is not None:
            extra["matches"] = {
                "config": self.section.base.to_dict(),
                "depth": self.section.match_depth,
                "compression": self.section.base.compression,
            }
        return tokenizer_export(self.section.kind, self.section.config, self.spec, self.plan.stage, "windowed", extra)
