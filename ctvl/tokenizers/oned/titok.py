"""TiTok-style 1D tokenizer for 2D images and 3D volumes, with FlexTok / One-D-Piece variable length.

Paper: Yu et al., "An Image is Worth 32 Tokens for Reconstruction and Generation" (TiTok,
NeurIPS 2024, arXiv:2406.07550); variable length after FlexTok (arXiv:2502.13967, nested dropout)
and One-D-Piece (arXiv:2501.10064, tail token drop) — see :mod:`.token_drop`.
Idea: a ViT reads the patches together with K learned latent tokens and only the latents are kept
and quantized; a second ViT reconstructs the patches from mask tokens plus those K latents.

Shapes: x (B, C, *S) with len(S) = spatial_dims ∈ {2, 3}; tokens (B, K, c); indices (B, K[, G]);
reconstruction (B, C, *S). Encoder sequence = N patches + K latents (N = prod(S / p)).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

import torch
from torch import nn

from ctvl.tokenizers.oned.patches import PatchEmbed
from ctvl.tokenizers.oned.token_drop import TOKEN_DROP_MODES, apply_nested_mask, check_full_share, sample_keep
from ctvl.tokenizers.quantizers import Quantizer, build_quantizer


@dataclass
class TiTokConfig:
    """Hyper-parameters of :class:`TiTok1D` (defaults: a CPU-sized 2D model)."""

    spatial_dims: int = 2  # 2 (images, (B, C, H, W)) or 3 (volumes, (B, C, T, H, W))
    in_channels: int = 1  # C of the input
    image_size: int | tuple[int, ...] = 32  # S, int = same on every axis
    patch_size: int | tuple[int, ...] = 4  # p, int = same on every axis
    width: int = 64  # transformer width D
    encoder_depth: int = 2  # encoder transformer layers
    decoder_depth: int = 2  # decoder transformer layers
    heads: int = 4  # attention heads
    mlp_ratio: float = 4.0  # MLP hidden = mlp_ratio · D
    num_latent_tokens: int = 32  # K, the 1D sequence length
    token_dim: int = 12  # c, channels of one latent token (the quantizer's dim)
    quantizer: str | None = "vq"  # build_quantizer kind (TiTok: VQ 4096 × 12); None = continuous
    quantizer_kwargs: dict[str, Any] = field(default_factory=dict)  # extra build_quantizer kwargs
    token_drop: str = "none"  # training-time drop: none | nested | nested_pow2 (FlexTok) | tail (One-D-Piece)
    full_share: float = 0.0  # share of training draws that keep all K tokens (see token_drop.sample_keep)
    causal_latents: bool = False  # latent i sees patches and latents ≤ i only (strict prefix ordering)


class TiTokOutput(NamedTuple):
    """Result of :meth:`TiTok1D.forward`.

    Attributes:
        reconstruction: (B, C, *S).
        tokens: (B, K, c) quantized latent tokens (before any dropping).
        indices: (B, K[, G]) codes, or None for continuous tokens.
        aux_loss: scalar quantizer loss (0 for continuous tokens).
        stats: quantizer stats (``codebook_usage``, ``perplexity``, ...).
        keep: (B,) number of leading tokens the decoder saw.
    """

    reconstruction: torch.Tensor
    tokens: torch.Tensor
    indices: torch.Tensor | None
    aux_loss: torch.Tensor
    stats: dict[str, float]
    keep: torch.Tensor


def _transformer(width: int, depth: int, heads: int, mlp_ratio: float) -> nn.TransformerEncoder:
    layer = nn.TransformerEncoderLayer(
        width, heads, int(width * mlp_ratio), dropout=0.0, activation="gelu", batch_first=True, norm_first=True
    )
    return nn.TransformerEncoder(layer, depth, norm=nn.LayerNorm(width), enable_nested_tensor=False)


class TiTok1D(nn.Module):
    """1D tokenizer: patches + K learned latents → K (quantized) tokens → reconstruction.

    Args:
        config: :class:`TiTokConfig`.
        quantizer: a channel-last :class:`Quantizer` of dim ``config.token_dim``; by default built
            from ``config.quantizer`` (None there = continuous tokens).
    """

    def __init__(self, *, config: TiTokConfig, quantizer: Quantizer | None = None) -> None:
        super().__init__()
        if config.token_drop not in TOKEN_DROP_MODES:
            raise ValueError(f"token_drop must be one of {TOKEN_DROP_MODES}, got {config.token_drop!r}")
        check_full_share(config.full_share)
        self.config = config
        d, k = config.width, config.num_latent_tokens
        self.patch_embed = PatchEmbed(
            spatial_dims=config.spatial_dims,
            in_channels=config.in_channels,
            dim=d,
            image_size=config.image_size,
            patch_size=config.patch_size,
        )
        n = self.patch_embed.num_patches
        self.enc_pos = nn.Parameter(torch.randn(n, d) * 0.02)
        self.latents = nn.Parameter(torch.randn(k, d) * 0.02)
        self.encoder = _transformer(d, config.encoder_depth, config.heads, config.mlp_ratio)
        self.to_token = nn.Linear(d, config.token_dim)
        if quantizer is None and config.quantizer is not None:
            kwargs = {"channel_last": True, **config.quantizer_kwargs}
            quantizer = build_quantizer(config.quantizer, config.token_dim, **kwargs)
        self.quantizer = quantizer
        self.from_token = nn.Linear(config.token_dim, d)
        self.dec_latent_pos = nn.Parameter(torch.randn(k, d) * 0.02)
        self.latent_mask_token = nn.Parameter(torch.zeros(d))  # replaces dropped latents (nested dropout)
        self.patch_mask_token = nn.Parameter(torch.zeros(d))  # the decoder's patch placeholders
        self.dec_pos = nn.Parameter(torch.randn(n, d) * 0.02)
        self.decoder = _transformer(d, config.decoder_depth, config.heads, config.mlp_ratio)
        self.to_pixels = nn.Linear(d, config.in_channels * int(torch.tensor(self.patch_embed.patch_size).prod()))
        if config.causal_latents:
            self.register_buffer("encoder_mask", self._prefix_mask(n, k), persistent=False)
        else:
            self.encoder_mask = None

    @staticmethod
    def _prefix_mask(n: int, k: int) -> torch.Tensor:
        """(N+K, N+K) bool, True = blocked: patches see patches; latent i sees patches + latents ≤ i."""
        blocked = torch.zeros(n + k, n + k, dtype=torch.bool)
        blocked[:n, n:] = True
        blocked[n:, n:] = torch.triu(torch.ones(k, k, dtype=torch.bool), diagonal=1)
        return blocked

    @property
    def num_tokens(self) -> int:
        return self.config.num_latent_tokens

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor, dict[str, float]]:
        """(B, C, *S) → tokens (B, K, c), indices (B, K[, G]) or None, aux loss, stats."""
        patches = self.patch_embed(x) + self.enc_pos  # (B, N, D)
        latents = self.latents.expand(x.shape[0], -1, -1)  # (B, K, D)
        h = self.encoder(torch.cat([patches, latents], dim=1), mask=self.encoder_mask)  # (B, N+K, D)
        z = self.to_token(h[:, patches.shape[1] :])  # (B, K, c)
        if self.quantizer is None:
            return z, None, z.new_zeros(()), {}
        q = self.quantizer(z)
        return q.quantized, q.indices, q.aux_loss, q.stats

    def decode(self, tokens: torch.Tensor, keep: torch.Tensor | int | None = None) -> torch.Tensor:
        """Reconstruct from the leading tokens.

        Args:
            tokens: (B, K', c) with K' ≤ K; a shorter sequence is a truncated one (One-D-Piece).
            keep: (B,) or int number of leading tokens to use; the rest are replaced by the learned
                mask token (FlexTok). None = all K' given.

        Returns:
            (B, C, *S).
        """
        b, k_in = tokens.shape[:2]
        z = self.from_token(tokens) + self.dec_latent_pos[:k_in]  # (B, K', D)
        if keep is not None:
            keep_t = torch.as_tensor(keep, device=tokens.device).long().expand(b)
            z = apply_nested_mask(z, keep_t, self.latent_mask_token)
        n = self.patch_embed.num_patches
        patches = (self.patch_mask_token + self.dec_pos).expand(b, -1, -1)  # (B, N, D)
        h = self.decoder(torch.cat([patches, z], dim=1))[:, :n]  # (B, N, D)
        return self.patch_embed.unpatchify(self.to_pixels(h), self.config.in_channels)

    def reconstruct(self, x: torch.Tensor, keep: int) -> torch.Tensor:
        """Encode and decode with only the first ``keep`` tokens, the way the model was trained
        (truncation for ``tail``, mask tokens otherwise). Returns (B, C, *S)."""
        tokens = self.encode(x)[0]
        if self.config.token_drop == "tail":
            return self.decode(tokens[:, :keep])
        return self.decode(tokens, keep)

    def forward(self, x: torch.Tensor, keep: torch.Tensor | int | None = None) -> TiTokOutput:
        """Encode, (in training) drop tokens per ``config.token_drop``, decode.

        Args:
            x: (B, C, *S).
            keep: override the number of kept tokens ((B,) or int); by default all in eval and
                sampled per ``config.token_drop`` in training.
        """
        tokens, indices, aux, stats = self.encode(x)
        b, k = tokens.shape[:2]
        if keep is None:
            mode = self.config.token_drop if self.training else "none"
            share = self.config.full_share
            keep_t = sample_keep(b, k, mode, device=x.device, full_share=share)  # type: ignore[arg-type]
        else:
            keep_t = torch.as_tensor(keep, device=x.device).long().expand(b).clone()
        if self.config.token_drop == "tail":
            recon = self.decode(tokens[:, : int(keep_t.max())])  # one cut per batch: truncate
        else:
            recon = self.decode(tokens, keep_t)
        return TiTokOutput(recon, tokens, indices, aux, stats, keep_t)
