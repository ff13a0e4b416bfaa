"""The report model's causal LM: built from small settings or a local Hugging Face folder, optionally LoRA-wrapped.

The CPU models build a Llama- or GPT-2-style LM from a few ``model.lm`` settings; GPU runs load any local
causal LM folder (``model.lm_path``). ``model.lora`` wraps either in peft LoRA adapters, so only the
adapters (and the embeddings of the new report vocabulary) train. :func:`decoder_layers` names the repeated
blocks that FSDP shards and activation checkpointing recomputes.
"""

from __future__ import annotations

import warnings
from typing import Any

from torch import nn

from ctvl.errors import ConfigError, check_keys
from ctvl.report.text_tokenizer import ReportTextTokenizer

LM_ARCHS = ("llama", "gpt2")
LM_DEFAULTS: dict[str, Any] = {
    "arch": "llama",
    "hidden_size": 128,
    "num_hidden_layers": 4,
    "num_attention_heads": 4,
    "num_key_value_heads": None,
    "intermediate_size": None,
    "max_position_embeddings": 1024,
    "dropout": 0.0,
}


LORA_DEFAULTS: dict[str, Any] = {
    "r": 128,  # the paper's rank
    "alpha": 256,  # scaling alpha / r = 2
    "dropout": 0.05,
    "target_modules": "all-linear",  # peft: every Linear of the LM except its output head
    "train_embeddings": True,  # input (and tied output) embeddings train too: the report vocabulary is new to the LM
}


def lora_settings(raw: dict[str, Any]) -> dict[str, Any]:
    """The ``model.lora`` mapping with defaults filled in and values checked.

    Raises:
        ConfigError: unknown key, rank < 1, alpha <= 0 or dropout outside [0, 1).
    """
    if not isinstance(raw, dict):
        raise ConfigError(f"model.lora must be a mapping (keys {', '.join(LORA_DEFAULTS)}) or null, got {raw!r}")
    check_keys(raw, LORA_DEFAULTS, "model.lora")
    out = {**LORA_DEFAULTS, **raw}
    if int(out["r"]) < 1 or not float(out["alpha"]) > 0 or not 0.0 <= float(out["dropout"]) < 1.0:
        raise ConfigError(f"model.lora needs r >= 1, alpha > 0 and dropout in [0, 1), got {out}")
    return out


def apply_lora(lm: nn.Module, settings: dict[str, Any]) -> nn.Module:
    """Wrap ``lm`` in peft LoRA adapters; only the adapters (and, if asked, the embeddings) train.

    Args:
        lm: a ``transformers`` causal LM.
        settings: :func:`lora_settings` output.

    Returns:
        The peft model (a drop-in causal LM: same forward, ``generate`` and embeddings).
    """
    from peft import LoraConfig, get_peft_model

    target = settings["target_modules"]
    config = LoraConfig(
        r=int(settings["r"]),
        lora_alpha=float(settings["alpha"]),
        lora_dropout=float(settings["dropout"]),
        target_modules=target if isinstance(target, str) else list(target),
        task_type="CAUSAL_LM",
    )
    with warnings.catch_warnings():  # peft reads transformers' deprecated is_gradient_checkpointing
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        model = get_peft_model(lm, config)
    if settings["train_embeddings"]:
        model.get_input_embeddings().weight.requires_grad_(True)
        out = model.get_output_embeddings()
        if out is not None:
            out.weight.requires_grad_(True)
    return model


def build_lm(
    *,
    lm: dict[str, Any],
    lm_path: str | None,
    lora: dict[str, Any] | None,
    text: ReportTextTokenizer,
    pretrained: bool = True,
) -> nn.Module:
    """The causal LM (LoRA-wrapped when ``lora``): from ``lm_path`` or built from the ``lm`` settings.

    Args:
        lm: the ``model.lm`` mapping with :data:`LM_DEFAULTS` filled in (used when ``lm_path`` is None).
        lm_path: a local Hugging Face causal LM folder, or None.
        lora: :func:`lora_settings` output, or None for a fully trained LM.
        text: the report text tokenizer (vocabulary size and special ids).
        pretrained: False builds an ``lm_path`` model from its config.json alone, without weights (dry runs).
    """
    model = _base_lm(lm=lm, lm_path=lm_path, text=text, pretrained=pretrained)
    return apply_lora(model, lora) if lora is not None else model


def decoder_layers(lm: nn.Module) -> list[nn.Module]:
    """The LM's repeated transformer blocks (the units FSDP shards and activation checkpointing recomputes)."""
    layers = [m for m in lm.modules() if type(m).__name__.endswith(("DecoderLayer", "Block")) and m is not lm]
    return layers


def _base_lm(*, lm: dict[str, Any], lm_path: str | None, text: ReportTextTokenizer, pretrained: bool) -> nn.Module:
    if lm_path:
        from transformers import AutoConfig, AutoModelForCausalLM

        try:
            model = (
                AutoModelForCausalLM.from_pretrained(lm_path, local_files_only=True)
                if pretrained
                else AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(lm_path, local_files_only=True))
            )
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot load the causal LM: {str(exc).splitlines()[0]}", path=lm_path) from None
        model.resize_token_embeddings(text.vocab_size)
        model.config.pad_token_id, model.config.eos_token_id = text.pad_id, text.eos_id
        return model
    c = lm
    width, heads = int(c["hidden_size"]), int(c["num_attention_heads"])
    if width % heads:
        raise ConfigError(f"model.lm.hidden_size {width} must be divisible by num_attention_heads {heads}")
    ids = {"bos_token_id": text.bos_id, "eos_token_id": text.eos_id, "pad_token_id": text.pad_id}
    if c["arch"] == "llama":
        from transformers import LlamaConfig, LlamaForCausalLM

        cfg = LlamaConfig(
            vocab_size=text.vocab_size,
            hidden_size=width,
            num_hidden_layers=int(c["num_hidden_layers"]),
            num_attention_heads=heads,
            num_key_value_heads=int(c["num_key_value_heads"] or heads),
            intermediate_size=int(c["intermediate_size"] or 4 * width),
            max_position_embeddings=int(c["max_position_embeddings"]),
            attention_dropout=float(c["dropout"]),
            tie_word_embeddings=True,
            **ids,
        )
        return LlamaForCausalLM(cfg)
    from transformers import GPT2Config, GPT2LMHeadModel

    cfg = GPT2Config(
        vocab_size=text.vocab_size,
        n_embd=width,
        n_layer=int(c["num_hidden_layers"]),
        n_head=heads,
        n_inner=int(c["intermediate_size"] or 4 * width),
        n_positions=int(c["max_position_embeddings"]),
        resid_pdrop=float(c["dropout"]),
        embd_pdrop=float(c["dropout"]),
        attn_pdrop=float(c["dropout"]),
        **ids,
    )
    return GPT2LMHeadModel(cfg)
