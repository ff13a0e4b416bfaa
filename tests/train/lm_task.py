"""A tiny causal-LM task for the sharding tests: a 2-layer Llama (transformers) with peft LoRA adapters,
trained on deterministic random token sequences (sample ``i`` from a generator seeded by ``(seed, i)``).

``model:`` options: ``lora`` (a ``model.lora`` mapping as the report model takes, or null for the full LM).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from ctvl.report.lm import apply_lora, decoder_layers, lora_settings
from ctvl.train import TrainConfig, TrainTask, sample_indices
from ctvl.train.rng import derive_seed

VOCAB, LENGTH = 64, 12


class TinyLMTask(TrainTask):
    """Next-token prediction with a tiny Llama; its decoder layers are the FSDP / checkpointing blocks."""

    name = "tiny-lm"

    def build_model(self, cfg: TrainConfig) -> nn.Module:
        from transformers import LlamaConfig, LlamaForCausalLM

        lm = LlamaForCausalLM(
            LlamaConfig(
                vocab_size=VOCAB,
                hidden_size=32,
                intermediate_size=64,
                num_hidden_layers=2,
                num_attention_heads=4,
                max_position_embeddings=LENGTH,
                tie_word_embeddings=True,
            )
        )
        lora = cfg.model.get("lora")
        return apply_lora(lm, lora_settings(lora)) if lora is not None else lm

    def blocks(self, model: nn.Module) -> list[nn.Module]:
        return decoder_layers(model)

    def batches(self, cfg: TrainConfig, rank: int, world_size: int, seed: int, start: int = 0) -> Iterator[Any]:
        micro = start
        while True:
            rows = [
                torch.randint(0, VOCAB, (LENGTH,), generator=torch.Generator().manual_seed(derive_seed(seed, i)))
                for i in sample_indices(cfg, rank, world_size, micro)
            ]
            yield {"ids": torch.stack(rows)}  # (B, L)
            micro += 1

    def loss(self, model: nn.Module, batch: dict[str, torch.Tensor], step: int) -> tuple[torch.Tensor, dict]:
        out = model(input_ids=batch["ids"], labels=batch["ids"])
        return out.loss, {}

    def export_config(self) -> dict[str, Any]:
        return {"vocab": VOCAB}


def train_rank(config: str, overrides: list[str], resume: bool) -> dict[str, Any]:
    """One rank of a run (for :func:`tests.ranks.run_ranks`): the result's step, start and world size."""
    from ctvl.train import run_training

    result = run_training(TinyLMTask(), config, overrides, resume=resume)
    return {"step": result.step, "start": result.start_step, "world": result.world_size}
