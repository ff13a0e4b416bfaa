"""The report model: visual tokens → causal LM that writes findings and impression.

Sequence per scan (left-padded in a batch, positions counted from the first real token)::

    <bos> <image> v_1 ... v_k </image> [d_1 ... d_18] <findings> findings ... <impression> impression ... <eos>
                  └ VisualEncoder ┘    └ diagnosis ┘          └──────── loss on these tokens only ────────┘

The LM is a ``transformers`` causal LM: built from a small config (Llama- or GPT-2-style) for the CPU
models, or any local Hugging Face causal LM folder (``lm_path``) for GPU runs, whose own tokenizer then
replaces the BPE. ``visual: none`` builds the same LM without a visual path: the text-only prior of the
comparison. An optional auxiliary loss reads the 18 labels from the LM's hidden state at ``</image>``
(which has attended to every visual token): it teaches the LM to gather the findings into one place
that every report token can attend to, and gives per-label probabilities at inference.

**Diagnosis prompt** (``label_prompt``, after PromptMRG, Jin et al., AAAI 2024): 18 learned tokens, one per
CT-RATE label, each the embedding of (label, present/absent), sit between ``</image>`` and ``<findings>``.
In training they carry the ground-truth labels, so the LM learns to write what they say; at inference
they carry the visual path's own label head (the summary features, thresholded at ``label_threshold``).
A small LM trained briefly otherwise falls back on the most common wording; with the prompt, the
findings named in the report follow the classifier, which is the part of the model that reads the scan
best. The visual tokens stay in the prompt for what the labels do not say (sizes, sides, severity).

**Finding details** (``detail_prompt``, :mod:`ctvl.report.details`): a present label's token may also
carry its side and extent, as a second embedding (label, detail code) added to it. The table starts at
zero, so weights trained without details load unchanged and write the same text until fine-tuned
(``init_from``); in training the codes are the phantoms' own, at inference a voxel classifier's
:class:`~ctvl.report.details.DetailHead` reads them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ctvl.data.labels import NUM_LABELS
from ctvl.errors import ConfigError, check_keys
from ctvl.report.consistency import FirstTokenBan
from ctvl.report.details import CODES as DETAIL_CODES
from ctvl.report.lm import LM_ARCHS, LM_DEFAULTS, build_lm, lora_settings
from ctvl.report.text_tokenizer import ReportTextTokenizer
from ctvl.report.visual import ReductionConfig, VisualEncoder


@dataclass
class ReportModelConfig:
    """The ``model:`` section of a report config (one field per key)."""

    visual: str = "tokenizer"  # "tokenizer" (visual tokens from the tokenizer's latents) | "none" (text-only prior)
    visual_dim: int = 12  # latent channels D of the tokenizer (set from the tokenizer bundle by the task)
    lm: dict[str, Any] = field(default_factory=dict)  # small LM built from a config: arch, hidden_size, ...
    lm_path: str | None = None  # local HF causal LM folder (GPU runs); its tokenizer replaces the BPE
    projector_hidden: int | None = None  # MLP projector hidden width (None = LM width: 18 -> 4096 -> 4096)
    projector_layers: int = 2  # Linear layers in the projector
    positions: bool = True  # add the (t, h, w) position code to visual tokens
    conv_layers: int = 0  # 3x3x3 conv layers on the latent grid before the projector (C-Abstractor-style; 0 = MLP only)
    conv_width: int = 64  # channels of those conv layers
    summary_token: bool = False  # one extra visual token from the pooled features + a direct label loss on them
    reduction: dict[str, Any] = field(default_factory=lambda: {"kind": "none"})  # see ReductionConfig
    aux_label_weight: float = 0.0  # weight of the 18-label BCE read at </image> (0 = off)
    label_prompt: bool = False  # 18 diagnosis tokens after </image> (PromptMRG-style; needs summary_token)
    label_threshold: float = 0.5  # label-head probability above which a diagnosis token says "present"
    detail_prompt: bool = False  # diagnosis tokens also carry side + extent (ctvl.report.details; phantom data)
    vocab_size: int = 1024  # BPE vocabulary trained on the training reports (ignored with lm_path)
    max_new_tokens: int = 384  # generation length limit (tokens)
    num_beams: int = 1  # 1 = greedy decoding; > 1 = beam search
    lora: dict[str, Any] | None = (
        None  # LoRA adapters on the LM through peft (see LORA_DEFAULTS); null = full LM trains
    )

    def __post_init__(self) -> None:
        if self.visual not in ("tokenizer", "none"):
            raise ConfigError(f"model.visual must be 'tokenizer' or 'none', got {self.visual!r}")
        check_keys(self.lm, LM_DEFAULTS, "model.lm")
        self.lm = {**LM_DEFAULTS, **self.lm}
        if self.lm["arch"] not in LM_ARCHS:
            raise ConfigError(f"model.lm.arch must be one of {', '.join(LM_ARCHS)}, got {self.lm['arch']!r}")
        self.reduction = ReductionConfig.from_dict(self.reduction).to_dict()
        if self.max_new_tokens < 1 or self.num_beams < 1 or self.visual_dim < 1 or self.conv_width < 1:
            raise ConfigError(
                "model.max_new_tokens, model.num_beams, model.visual_dim and model.conv_width must be >= 1"
            )
        if self.conv_layers < 0:
            raise ConfigError(f"model.conv_layers must be >= 0, got {self.conv_layers}")
        if self.aux_label_weight < 0:
            raise ConfigError(f"model.aux_label_weight must be >= 0, got {self.aux_label_weight}")
        if self.label_prompt and not (self.visual == "tokenizer" and self.summary_token):
            raise ConfigError(
                "model.label_prompt needs the visual label head: set visual: tokenizer and summary_token: true"
            )
        if self.detail_prompt and not self.label_prompt:
            raise ConfigError("model.detail_prompt adds to the diagnosis tokens: set model.label_prompt: true")
        if not 0.0 < self.label_threshold < 1.0:
            raise ConfigError(f"model.label_threshold must be in (0, 1), got {self.label_threshold}")
        if self.label_prompt and self.aux_label_weight <= 0:
            raise ConfigError(
                "model.label_prompt needs model.aux_label_weight > 0: without the label loss the label "
                "head never trains and the diagnosis prompt carries noise"
            )
        if self.summary_token and self.aux_label_weight <= 0:
            raise ConfigError(
                "model.summary_token needs model.aux_label_weight > 0: its label head trains only "
                "through that loss (and DDP stops on the unused parameters)"
            )
        if self.lora is not None:
            self.lora = lora_settings(self.lora)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ReportModelConfig:
        """Build from the YAML ``model:`` mapping; unknown keys are a :class:`ConfigError`."""
        check_keys(data, cls, "model", where="the report config")
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Assembled:
    """A left-padded batch ready for the LM."""

    embeds: torch.Tensor  # (B, L, d)
    attention_mask: torch.Tensor  # (B, L) 1 = real token
    position_ids: torch.Tensor  # (B, L)
    labels: torch.Tensor | None  # (B, L) target ids, -100 elsewhere
    summary: torch.Tensor  # (B,) position of </image>


class ReportModel(nn.Module):
    """Visual encoder (optional) + causal LM + optional auxiliary label head.

    Args:
        config: the model config.
        text: the text tokenizer (its vocabulary size sizes the LM).
    """

    def __init__(self, *, config: ReportModelConfig, text: ReportTextTokenizer, pretrained: bool = True) -> None:
        super().__init__()
        self.config, self.text = config, text
        self.lm = build_lm(lm=config.lm, lm_path=config.lm_path, lora=config.lora, text=text, pretrained=pretrained)
        width = int(self.lm.get_input_embeddings().embedding_dim)
        self.visual: VisualEncoder | None = None
        if config.visual == "tokenizer":
            self.visual = VisualEncoder(
                in_dim=config.visual_dim,
                lm_dim=width,
                reduction=ReductionConfig.from_dict(config.reduction),
                projector_hidden=config.projector_hidden,
                projector_layers=config.projector_layers,
                positions=config.positions,
                conv_layers=config.conv_layers,
                conv_width=config.conv_width,
                summary=config.summary_token,
            )
        self.aux_head = nn.Linear(width, NUM_LABELS) if config.aux_label_weight > 0 else None
        self.diagnosis: nn.Embedding | None = None
        if config.label_prompt:  # row 2 i + s: label i, state s (0 absent, 1 present)
            self.diagnosis = nn.Embedding(2 * NUM_LABELS, width)
            nn.init.normal_(self.diagnosis.weight, std=0.02)
        self.register_buffer("label_rows", 2 * torch.arange(NUM_LABELS), persistent=False)
        self.details: nn.Embedding | None = None
        if config.detail_prompt:  # row CODES i + c: label i, detail code c; zero = no detail (loads old weights)
            self.details = nn.Embedding(DETAIL_CODES * NUM_LABELS, width)
            nn.init.zeros_(self.details.weight)
        self.register_buffer("detail_rows", DETAIL_CODES * torch.arange(NUM_LABELS), persistent=False)
        prompt = text.prompt()
        self.register_buffer("prompt_before", torch.tensor(prompt.before), persistent=False)
        self.register_buffer("prompt_after", torch.tensor(prompt.after), persistent=False)

    @property
    def width(self) -> int:
        return int(self.lm.get_input_embeddings().embedding_dim)

    @property
    def tail(self) -> int:
        """Prompt tokens from ``</image>`` to the end of the prompt (``</image> [d_1..d_18] <findings>``)."""
        return 2 + (NUM_LABELS if self.diagnosis is not None else 0)

    def diagnosis_states(self, logits: torch.Tensor) -> torch.Tensor:
        """(B, 18) 0/1 states the diagnosis prompt carries at inference: label-head probability > threshold."""
        return (torch.sigmoid(logits.float()) > self.config.label_threshold).long()

    def prefixes(
        self, codes: list[torch.Tensor] | None, batch: int, states: torch.Tensor | None = None
    ) -> tuple[list[torch.Tensor], torch.Tensor | None]:
        """Prompt embeddings per scan: ``<bos> <image> [visual] </image> [diagnosis] <findings>`` → B × (P_b, d),
        and the visual path's own label logits (B, 18) when it has a summary token (else None).

        Args:
            codes: B latent grids (D, t, h, w) or selections; None for a text-only model.
            batch: B.
            states: (B, 18) states for the diagnosis prompt (training: the ground truth): 0 absent, > 0
                present (with ``detail_prompt`` the detail code, :mod:`ctvl.report.details`; 1 = no detail);
                None = the label head's own reading (inference). Ignored without ``label_prompt``.
        """
        embed = self.lm.get_input_embeddings()
        before, after = embed(self.prompt_before), embed(self.prompt_after)  # (2, d) each
        if self.visual is None:
            return [torch.cat([before, after])] * batch, None
        if codes is None or len(codes) != batch:
            raise ConfigError("this report model needs visual latents for every scan")
        visual, logits = self.visual(codes)
        if self.diagnosis is None or logits is None:
            return [torch.cat([before, v.to(before.dtype), after]) for v in visual], logits
        states = (self.diagnosis_states(logits) if states is None else states.long()).to(self.label_rows.device)
        present = (states > 0).long()
        prompts = self.diagnosis(self.label_rows + present)  # (B, 18, d)
        if self.details is not None:  # absent labels (code 0) add nothing
            prompts = prompts + self.details(self.detail_rows + states) * present[..., None]
        prompts = prompts.to(before.dtype)
        return [
            torch.cat([before, v.to(before.dtype), after[:1], prompts[b], after[1:]]) for b, v in enumerate(visual)
        ], logits

    def assemble(self, prefixes: list[torch.Tensor], targets: list[torch.Tensor] | None = None) -> Assembled:
        """Left-pad ``prefix + target`` sequences into one batch (targets are 1-D id tensors)."""
        embed = self.lm.get_input_embeddings()
        seqs, labels, summary = [], [], []
        for b, prefix in enumerate(prefixes):
            parts, lab = [prefix], [torch.full((prefix.shape[0],), -100, device=prefix.device)]
            if targets is not None:
                parts.append(embed(targets[b]))
                lab.append(targets[b])
            seqs.append(torch.cat(parts))
            labels.append(torch.cat(lab))
            summary.append(prefix.shape[0] - self.tail)  # position of </image>
        length = max(s.shape[0] for s in seqs)
        d = prefixes[0].shape[1]
        device = prefixes[0].device
        embeds = prefixes[0].new_zeros(len(seqs), length, d)
        mask = torch.zeros(len(seqs), length, dtype=torch.long, device=device)
        lab_out = torch.full((len(seqs), length), -100, dtype=torch.long, device=device)
        for b, s in enumerate(seqs):
            pad = length - s.shape[0]
            embeds[b, pad:], mask[b, pad:], lab_out[b, pad:] = s, 1, labels[b]
            summary[b] += pad
        positions = (mask.cumsum(dim=1) - 1).clamp(min=0)
        return Assembled(
            embeds, mask, positions, lab_out if targets is not None else None, torch.tensor(summary, device=device)
        )

    def forward(
        self,
        codes: list[torch.Tensor] | None,
        targets: list[torch.Tensor],
        labels: torch.Tensor | None = None,
        states: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """Teacher-forced loss of one batch.

        Args:
            codes: B latent grids (D, t, h, w) or their precomputed
                :class:`~ctvl.report.visual.Selection`, or None for a text-only model.
            targets: B 1-D tensors of report ids (``ReportTextTokenizer.target``).
            labels: (B, 18) 0/1 ground truth for the auxiliary loss (ignored when it is off) and, unless
                ``states`` is given, for the diagnosis prompt.
            states: (B, 18) diagnosis-prompt states with detail codes (``detail_prompt``); None = ``labels``.

        Returns:
            ``{"loss", "lm_loss", "aux_loss", "token_accuracy"}`` scalars.
        """
        prompt = (labels if states is None else states) if self.diagnosis is not None else None
        prefixes, visual_logits = self.prefixes(codes, len(targets), prompt)
        batch = self.assemble(prefixes, targets)
        out = self.lm(
            inputs_embeds=batch.embeds,
            attention_mask=batch.attention_mask,
            position_ids=batch.position_ids,
            output_hidden_states=self.aux_head is not None,
        )
        logits = out.logits[:, :-1].float()  # (B, L-1, V) predicts token t+1
        target = batch.labels[:, 1:]  # type: ignore[index]
        valid = target != -100  # (B, L-1)
        per_token = F.cross_entropy(logits.transpose(1, 2), target, ignore_index=-100, reduction="none")  # (B, L-1)
        count = valid.sum(dim=1).clamp(min=1)
        # mean over each report's tokens, then over reports: every report weighs the same, so the loss of a
        # batch split over ranks / accumulation steps equals the loss of the whole batch
        lm_loss = (per_token.sum(dim=1) / count).mean()
        accuracy = (((logits.argmax(-1) == target) & valid).sum(dim=1) / count).mean()
        loss = lm_loss
        aux = lm_loss.new_zeros(())
        if self.aux_head is not None and labels is not None:
            hidden = out.hidden_states[-1]  # (B, L, d)
            summary = hidden[torch.arange(hidden.shape[0], device=hidden.device), batch.summary]  # (B, d)
            aux = F.binary_cross_entropy_with_logits(self.aux_head(summary).float(), labels.float())
            if visual_logits is not None:  # the visual path's own reading of the labels
                aux = aux + F.binary_cross_entropy_with_logits(visual_logits.float(), labels.float())
            loss = loss + self.config.aux_label_weight * aux
        return {
            "loss": loss,
            "lm_loss": lm_loss.detach(),
            "aux_loss": aux.detach(),
            "token_accuracy": accuracy.detach(),
        }

    @torch.no_grad()
    def label_probabilities(self, codes: list[torch.Tensor] | None, batch: int) -> torch.Tensor | None:
        """(B, 18) label probabilities: with the diagnosis prompt, the visual label head's (the ones the
        prompt carries), else the auxiliary head's read at ``</image>``; None without either."""
        if self.diagnosis is not None and self.visual is not None and codes is not None:
            return torch.sigmoid(self.visual(codes)[1].float())  # type: ignore[union-attr]
        if self.aux_head is None:
            return None
        a = self.assemble(self.prefixes(codes, batch)[0])
        out = self.lm(
            inputs_embeds=a.embeds,
            attention_mask=a.attention_mask,
            position_ids=a.position_ids,
            output_hidden_states=True,
        )
        hidden = out.hidden_states[-1]
        return torch.sigmoid(self.aux_head(hidden[torch.arange(batch, device=hidden.device), a.summary]).float())

    @torch.no_grad()
    def generate(
        self,
        codes: list[torch.Tensor] | None,
        batch: int | None = None,
        max_new_tokens: int | None = None,
        num_beams: int | None = None,
    ) -> list[list[int]]:
        """Write reports: greedy (``num_beams=1``) or beam search, up to ``max_new_tokens``.

        Args:
            codes: B latent grids, or None (text-only model; then pass ``batch``).
            batch: number of reports when ``codes`` is None.
            max_new_tokens: length limit (default: the config's).
            num_beams: beams (default: the config's).

        Returns:
            B lists of generated ids (up to and excluding ``<eos>``).
        """
        return self.generate_with_probabilities(codes, batch, max_new_tokens, num_beams)[0]

    @torch.inference_mode()  # not no_grad: skips autograd's version counters, ~10 % faster token by token
    def generate_with_probabilities(
        self,
        codes: list[torch.Tensor] | None,
        batch: int | None = None,
        max_new_tokens: int | None = None,
        num_beams: int | None = None,
        states: torch.Tensor | None = None,
    ) -> tuple[list[list[int]], torch.Tensor | None]:
        """:meth:`generate` plus the (B, 18) label probabilities of :meth:`label_probabilities`; with the
        diagnosis prompt they come from the same visual pass that built the prompt (no second pass).

        ``states`` (B, 18) 0/1 sets the diagnosis prompt from elsewhere (a voxel classifier,
        :mod:`ctvl.report.diagnosis`); None lets the visual label head set it."""
        n = len(codes) if codes is not None else int(batch or 1)
        prefixes, logits = self.prefixes(codes, n, states)
        a = self.assemble(prefixes)
        out = self.lm.generate(
            inputs_embeds=a.embeds,
            attention_mask=a.attention_mask,
            do_sample=False,
            max_new_tokens=int(max_new_tokens or self.config.max_new_tokens),
            num_beams=int(num_beams or self.config.num_beams),
            eos_token_id=self.text.eos_id,
            pad_token_id=self.text.pad_id,
        )
        rows = []
        for ids in out.tolist():
            rows.append(ids[: ids.index(self.text.eos_id)] if self.text.eos_id in ids else ids)
        if self.diagnosis is not None and logits is not None:
            return rows, torch.sigmoid(logits.float())
        return rows, self.label_probabilities(codes, n)

    @torch.inference_mode()
    def continue_report(
        self,
        codes: torch.Tensor | None,
        prefix: list[int],
        ban_first: list[int],
        max_new_tokens: int | None = None,
        num_beams: int | None = None,
        states: torch.Tensor | None = None,
    ) -> list[int]:
        """Continue one report after ``prefix`` ids, its next token not one of ``ban_first``.

        Args:
            codes: the scan's latent grid (D, t, h, w), or None (text-only model).
            prefix: report ids written so far (kept as they are).
            ban_first: token ids the continuation may not start with.
            max_new_tokens: length limit of the whole report (default: the config's).
            num_beams: beams (default: the config's).
            states: (18,) 0/1 diagnosis prompt the draft was written with (None: the label head's).

        Returns:
            ``prefix`` + the continuation, up to and excluding ``<eos>``.
        """
        from transformers import LogitsProcessorList

        limit = int(max_new_tokens or self.config.max_new_tokens)
        if len(prefix) >= limit:
            return list(prefix)
        prompt, _ = self.prefixes([codes] if codes is not None else None, 1, None if states is None else states[None])
        embeds = prompt[0]
        if prefix:
            ids = torch.tensor(prefix, device=embeds.device)
            embeds = torch.cat([embeds, self.lm.get_input_embeddings()(ids).to(embeds.dtype)])
        out = self.lm.generate(
            inputs_embeds=embeds[None],
            attention_mask=torch.ones(1, embeds.shape[0], dtype=torch.long, device=embeds.device),
            do_sample=False,
            max_new_tokens=limit - len(prefix),
            num_beams=int(num_beams or self.config.num_beams),
            eos_token_id=self.text.eos_id,
            pad_token_id=self.text.pad_id,
            logits_processor=LogitsProcessorList([FirstTokenBan(banned=ban_first)]),
        )
        new = out[0].tolist()
        new = new[: new.index(self.text.eos_id)] if self.text.eos_id in new else new
        return [*prefix, *new]
