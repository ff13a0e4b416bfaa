"""The text-to-CT generator: a 3D MONAI ``DiffusionModelUNet`` with text cross-attention, in latent space.

It predicts the rectified-flow velocity of the causal tokenizer's latents (see :mod:`ctvl.synthesis.flow`).
What it generates are the tokenizer's **LFQ codes** (every channel ±1), normalised per channel with the
training set's mean and standard deviation (stored as buffers, so they travel with the weights). Codes,
not the continuous pre-quantisation latents: the shipped decoder was refined (curriculum stage 3) on
quantised codes only, so snapping a sample to the code lattice (the sign of each channel) puts it exactly
into the decoder's training distribution, whatever small error the flow leaves.

Shapes: latents (B, C, t, h, w) with C = token channels (12 for the CPU tokenizer), t = 1 + (D - 1) / 8
latent frames for D slices, (h, w) = in-plane size / 8. The UNet halves every axis ``len(channels) - 1``
times, so t (and h, w) are padded at the end to a multiple of ``2 ** (len(channels) - 1)``; a mask channel
(1 on real frames, 0 on padding) is fed beside the latents and the padding is cropped from the output.
The model is convolutional: any number of latent frames runs, and training on latent *prefixes* (the
causal encoder makes frames 0..k exactly the encoding of slices 0..8k) teaches shorter volumes.

Text: contexts from :class:`~ctvl.synthesis.text.TextEncoder` ((1 + L, 384) per prompt), zero-padded to
the longest prompt of the batch and projected without bias to ``cross_attention_dim``, so padding keys and
values are exactly zero. Classifier-free guidance uses a learned null text (``null_tokens`` × 384) in
place of the prompt.

Global text conditioning (``pooled_text``): cross-attention alone learns slowly on a CPU budget (the first
bundle's volumes barely followed their prompts). With ``pooled_text`` the projected first context row (the
prompt's mean-pooled sentence embedding, or the null text's first token) also passes through a small MLP
and is added to the UNet's timestep embedding, as Imagen and SDXL add a pooled text embedding. MONAI's
``DiffusionModelUNet`` adds a class embedding to the timestep embedding; its ``class_embedding`` (an
``nn.Embedding`` of ``num_class_embeds = 1``) is replaced by that MLP, fed the (B, cross_attention_dim)
vector as ``class_labels``. The MLP's last layer starts at zero, so training starts from the
cross-attention-only model.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ctvl.errors import ConfigError, check_keys
from ctvl.synthesis.text import TEXT_DIM

LATENT_KINDS = ("codes",)
SAMPLE_METHODS = ("logit-normal", "uniform")


@dataclass
class SynthesisConfig:
    """Architecture and training/sampling settings of the generator (the YAML ``model:`` section)."""

    latent_channels: int = 12  # tokenizer token channels; set from the tokenizer at training
    channels: list[int] = field(default_factory=lambda: [32, 64, 64])  # UNet width per level
    attention_levels: list[bool] = field(default_factory=lambda: [False, True, True])  # self+cross attn per level
    num_res_blocks: int = 1  # ResBlocks per level
    num_head_channels: int = 32  # channels per attention head
    norm_num_groups: int = 16  # GroupNorm groups (must divide every width)
    transformer_num_layers: int = 1  # transformer blocks per attention level
    cross_attention_dim: int = 128  # text is projected to this width
    text_dim: int = TEXT_DIM  # width of the text encoder's embeddings
    null_tokens: int = 4  # length of the learned null text (classifier-free guidance)
    max_text_tokens: int = 256  # word pieces kept per prompt
    p_uncond: float = 0.15  # share of training samples whose prompt is replaced by the null text
    prefix_prob: float = 0.2  # share of training batches cut to a random latent prefix (shorter volumes)
    num_train_timesteps: int = 1000  # RFlowScheduler time scale
    sample_method: str = "logit-normal"  # training time distribution (SD3 / MAISI-v2: logit-normal)
    default_steps: int = 25  # sampling steps when the user gives none
    default_guidance: float = 3.0  # classifier-free guidance scale when the user gives none
    latents: str = "codes"  # what is generated: the tokenizer's LFQ codes (see the module docstring)
    pooled_text: bool = False  # also add the pooled prompt embedding to the timestep embedding (docstring)

    def __post_init__(self) -> None:
        if not self.channels or len(self.attention_levels) != len(self.channels):
            raise ConfigError(
                f"model.channels ({self.channels}) and model.attention_levels "
                f"({self.attention_levels}) must be non-empty and of the same length"
            )
        if any(c % self.norm_num_groups for c in self.channels):
            raise ConfigError(
                f"model.norm_num_groups {self.norm_num_groups} must divide every width in {self.channels}"
            )
        if not any(self.attention_levels):
            raise ConfigError("model.attention_levels needs at least one true level: text enters through attention")
        if not 0.0 <= self.p_uncond < 1.0 or not 0.0 <= self.prefix_prob <= 1.0:
            raise ConfigError(
                f"model.p_uncond must be in [0, 1) and prefix_prob in [0, 1], got {self.p_uncond}, {self.prefix_prob}"
            )
        if self.sample_method not in SAMPLE_METHODS:
            raise ConfigError(f"model.sample_method must be one of {SAMPLE_METHODS}, got {self.sample_method!r}")
        if self.latents not in LATENT_KINDS:
            raise ConfigError(f"model.latents must be one of {LATENT_KINDS}, got {self.latents!r}")
        if self.default_steps < 1 or self.default_guidance < 0 or self.null_tokens < 1:
            raise ConfigError("model.default_steps and null_tokens must be >= 1 and default_guidance >= 0")
        self.channels = [int(c) for c in self.channels]
        self.attention_levels = [bool(a) for a in self.attention_levels]

    @property
    def multiple(self) -> int:
        """Every latent axis is padded to a multiple of this (2 per UNet downsampling)."""
        return 2 ** (len(self.channels) - 1)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SynthesisConfig:
        """Build from the YAML ``model:`` mapping; unknown keys are a :class:`ConfigError`."""
        check_keys(data, cls, "synthesis model")
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class LatentFlowGenerator(nn.Module):
    """Velocity network of the latent rectified flow, conditioned on text.

    Args:
        config: the architecture.
    """

    def __init__(self, *, config: SynthesisConfig) -> None:
        super().__init__()
        from monai.networks.nets import DiffusionModelUNet

        self.config = config
        c = config.latent_channels
        self.unet = DiffusionModelUNet(
            spatial_dims=3,
            in_channels=c + 1,
            out_channels=c,
            num_res_blocks=config.num_res_blocks,
            channels=tuple(config.channels),
            attention_levels=tuple(config.attention_levels),
            norm_num_groups=config.norm_num_groups,
            num_head_channels=config.num_head_channels,
            with_conditioning=True,
            cross_attention_dim=config.cross_attention_dim,
            transformer_num_layers=config.transformer_num_layers,
            num_class_embeds=1 if config.pooled_text else None,
        )
        if config.pooled_text:
            width = config.channels[0] * 4  # MONAI's time_embed_dim
            last = nn.Linear(width, width)
            nn.init.zeros_(last.weight)
            nn.init.zeros_(last.bias)
            self.unet.class_embedding = nn.Sequential(nn.Linear(config.cross_attention_dim, width), nn.SiLU(), last)
        self.text_proj = nn.Linear(config.text_dim, config.cross_attention_dim, bias=False)
        # MiniLM word-piece embeddings have norm ~8 (per-dimension std ~0.4): start the null text there
        self.null_text = nn.Parameter(torch.randn(config.null_tokens, config.text_dim) * 0.4)
        self.register_buffer("latent_mean", torch.zeros(c))  # (C,) training-set statistics of the codes
        self.register_buffer("latent_std", torch.ones(c))  # (C,)

    # ------------------------------------------------------------------ latent normalisation
    def set_latent_stats(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        """Store the per-channel mean and std (C,) of the training latents."""
        self.latent_mean.copy_(mean.to(self.latent_mean))
        self.latent_std.copy_(std.clamp_min(1e-3).to(self.latent_std))

    def normalize(self, codes: torch.Tensor) -> torch.Tensor:
        """(B, C, t, h, w) codes -> zero-mean, unit-variance per channel."""
        return (codes - self.latent_mean[:, None, None, None]) / self.latent_std[:, None, None, None]

    def to_codes(self, z: torch.Tensor) -> torch.Tensor:
        """(B, C, t, h, w) normalised sample -> LFQ codes (±1): un-normalise, then the sign of each channel."""
        x = z * self.latent_std[:, None, None, None] + self.latent_mean[:, None, None, None]
        return torch.where(x >= 0, torch.ones_like(x), -torch.ones_like(x))

    # ------------------------------------------------------------------ text
    def context(self, texts: Sequence[torch.Tensor | None]) -> torch.Tensor:
        """Cross-attention context of a batch.

        Args:
            texts: per sample a (L_i, text_dim) prompt context, or None / an empty tensor for the null text.

        Returns:
            (B, L, cross_attention_dim), zero rows after each prompt's end (L = the longest).
        """
        rows = [self.null_text if t is None or t.numel() == 0 else t.to(self.null_text) for t in texts]
        longest = max(r.shape[0] for r in rows)
        padded = torch.stack([F.pad(r, (0, 0, 0, longest - r.shape[0])) for r in rows])  # (B, L, text_dim)
        return self.text_proj(padded)

    # ------------------------------------------------------------------ velocity
    def forward(self, x: torch.Tensor, timesteps: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """Velocity of the flow at ``x``.

        Args:
            x: (B, C, t, h, w) noisy normalised latents.
            timesteps: (B,) flow time in [0, num_train_timesteps] (num_train_timesteps = pure noise).
            context: (B, L, cross_attention_dim) from :meth:`context`.

        Returns:
            (B, C, t, h, w) predicted velocity (clean latents minus noise).
        """
        b, _, t, h, w = x.shape
        m = self.config.multiple
        pad = [(-n) % m for n in (t, h, w)]
        mask = torch.ones(b, 1, t, h, w, dtype=x.dtype, device=x.device)
        inp = torch.cat([x, mask], 1)
        if any(pad):
            inp = F.pad(inp, (0, pad[2], 0, pad[1], 0, pad[0]))  # zeros: padded frames have mask 0
        pooled = context[:, 0] if self.config.pooled_text else None  # (B, cross_attention_dim)
        out = self.unet(inp, timesteps=timesteps.to(x.dtype), context=context, class_labels=pooled)
        return out[:, :, :t, :h, :w]
