"""The causal 3D CT tokenizer (after BTB3D): config, training forward, and inference entry points.

Pipeline: slices (B, C, T, H, W) in [-1, 1] -> pad at the end to T = 1 + f_t k and H, W multiples of
f_s (pad value -1 = air) -> first slice repeated + one Haar level -> causal encoder -> quantizer (LFQ or
FSQ from :mod:`ctvl.tokenizers.quantizers`) -> causal decoder with adaptive GN -> inverse Haar, first slice
dropped -> cropped back. A single slice (T = 1) and a volume go through the same network; latent frame 0
of a volume equals the latent of its first slice alone.

Encode paths (see :mod:`ctvl.tokenizers.causal3d.streaming`):
    * ``causal``   one-shot causal encode of the whole volume (the reference's ``encode``, fixed for T = 1);
    * ``stream``   chunk-by-chunk with a causal cache: EQUAL to ``causal`` (float tolerance), flat memory;
    * ``windowed`` overlapping windows of 1 + f_t slices, stride f_t (curriculum stage 2, the default for
      inference): flat memory; equal to ``causal`` when the volume fits in one window (T <= 1 + f_t).
Decode: one-shot in training; ``decode()`` streams with a causal cache and EQUALS the one-shot decode.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from ctvl.errors import ConfigError, InputError, check_keys
from ctvl.tokenizers.causal3d.decoder import Decoder
from ctvl.tokenizers.causal3d.encoder import Encoder
from ctvl.tokenizers.causal3d.haar import frames_to_volume, num_bands, volume_to_frames
from ctvl.tokenizers.causal3d.streaming import EncodeMode, encode_windowed, iter_decode, iter_encode
from ctvl.tokenizers.quantizers import build_quantizer
from ctvl.tokenizers.quantizers.base import Quantizer, QuantizerOutput


@dataclass
class Causal3DConfig:
    """Architecture of the causal 3D tokenizer (defaults: the paper's 8x8x8 model)."""

    in_channels: int = 1  # image channels (CT: 1)
    filters: int = 96  # base width of encoder and decoder
    channel_mult: tuple[int, ...] = (1, 2, 4)  # width per level; len - 1 downsamplings by 2 in-plane
    num_res_blocks: int = 4  # ResBlocks per level
    temporal_downsample: tuple[bool, ...] = (True, True)  # per downsampling: also halve the slices
    token_channels: int = 18  # latent channels D = bits per token with LFQ (2^18 codes)
    temporal: bool = True  # False: slice-wise 2D baseline (2D Haar, k_t = 1, no temporal stride)
    kernel_t: int = 3  # temporal kernel of the causal convs
    pad_mode: str = "zeros"  # temporal front padding: zeros | replicate
    max_groups: int = 32  # GroupNorm groups (gcd with channels)
    quantizer: str = "lfq"  # lfq | fsq, built by ctvl.tokenizers.quantizers.build_quantizer
    quantizer_kwargs: dict[str, Any] = field(default_factory=dict)  # passed to build_quantizer
    pad_value: float = -1.0  # value used to pad depth / in-plane (-1 = air after [-1, 1] scaling)
    window_latents: int = 1  # stage-2 windows: 1 + time_factor * this slices, stride time_factor * this

    def __post_init__(self) -> None:
        self.channel_mult = tuple(int(m) for m in self.channel_mult)
        self.temporal_downsample = tuple(bool(t) for t in self.temporal_downsample)
        if not self.temporal:
            self.temporal_downsample = (False,) * (len(self.channel_mult) - 1)
            self.kernel_t = 1
        if len(self.temporal_downsample) != len(self.channel_mult) - 1:
            raise ConfigError(
                f"temporal_downsample has {len(self.temporal_downsample)} entries, needs len(channel_mult) - 1 = "
                f"{len(self.channel_mult) - 1}"
            )
        if min(self.filters, self.num_res_blocks, self.token_channels, self.kernel_t, self.window_latents) < 1:
            raise ConfigError("filters, num_res_blocks, token_channels, kernel_t and window_latents must be >= 1")
        if self.pad_mode not in ("zeros", "replicate"):
            raise ConfigError(f"pad_mode must be 'zeros' or 'replicate', got {self.pad_mode!r}")

    @property
    def time_factor(self) -> int:
        """Slices per latent frame (after the first): 2 (Haar) x the temporal strides; 1 for 2D."""
        if not self.temporal:
            return 1
        return 2 * 2 ** sum(self.temporal_downsample)

    @property
    def space_factor(self) -> int:
        """In-plane pixels per latent pixel: 2 (Haar) x 2 per downsampling."""
        return 2 * 2 ** (len(self.channel_mult) - 1)

    @property
    def compression(self) -> str:
        """Compression as T x H x W, e.g. ``"8x8x8"``."""
        return f"{self.time_factor}x{self.space_factor}x{self.space_factor}"

    @property
    def haar_channels(self) -> int:
        """Channels of the Haar frames the encoder sees."""
        return num_bands(self.temporal) * self.in_channels

    @classmethod
    def paper(cls, compression: str = "8x8x8", **overrides: Any) -> Causal3DConfig:
        """The BTB3D model: 96 filters, 4 ResBlocks, 18-bit LFQ; ``"8x8x8"`` or ``"8x16x16"``."""
        presets = {
            "8x8x8": {"channel_mult": (1, 2, 4), "temporal_downsample": (True, True)},
            "8x16x16": {"channel_mult": (1, 2, 2, 4), "temporal_downsample": (False, True, True)},
        }
        if compression not in presets:
            raise ConfigError(f"unknown compression {compression!r}; use one of {sorted(presets)}")
        return cls(**{**presets[compression], **overrides})

    @classmethod
    def cpu(cls, **overrides: Any) -> Causal3DConfig:
        """A CPU-sized 8x8x8 model (16 filters, 1 ResBlock per level, 12-bit LFQ)."""
        base: dict[str, Any] = {"filters": 16, "channel_mult": (1, 2, 4), "num_res_blocks": 1, "token_channels": 12}
        return cls(**{**base, **overrides})

    def to_dict(self) -> dict[str, Any]:
        """JSON/YAML-friendly dict (tuples become lists)."""
        d = dataclasses.asdict(self)
        d["channel_mult"], d["temporal_downsample"] = list(self.channel_mult), list(self.temporal_downsample)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Causal3DConfig:
        """Inverse of :meth:`to_dict`; unknown keys are a :class:`ConfigError`."""
        check_keys(d, cls, "causal3d config")
        return cls(**d)


class TokenizerOutput(NamedTuple):
    """Training forward result: ``recon`` (B, C, T, H, W) like the input; ``codes`` (B, D, t, h, w)
    quantized latents; ``indices`` (B, t, h, w); ``aux_loss`` scalar; ``stats`` floats for logging."""

    recon: torch.Tensor
    codes: torch.Tensor
    indices: torch.Tensor
    aux_loss: torch.Tensor
    stats: dict[str, float]


class Tokens(NamedTuple):
    """Inference encode result: ``codes`` (B, D, t, h, w), ``indices`` (B, t, h, w) and the input's
    (T, H, W) ``shape`` so :meth:`Causal3DTokenizer.decode` can crop back."""

    codes: torch.Tensor
    indices: torch.Tensor
    shape: tuple[int, int, int]


def build_bottleneck(config: Causal3DConfig) -> Quantizer:
    """The quantizer named by the config, from the shared quantizer library."""

    return build_quantizer(config.quantizer, config.token_channels, **config.quantizer_kwargs)


def as_volume(x: torch.Tensor, in_channels: int) -> torch.Tensor:
    """Accept (B, C, H, W) images (as T = 1) or (B, C, T, H, W) volumes; return 5D or raise InputError."""
    if x.dim() == 4:
        x = x.unsqueeze(2)  # (B, C, 1, H, W)
    if x.dim() != 5 or x.shape[1] != in_channels or min(x.shape[2:]) < 1:
        raise InputError(
            f"tokenizer input must be (B, {in_channels}, T, H, W) or (B, {in_channels}, H, W) with sizes >= 1, "
            f"got {tuple(x.shape)}"
        )
    return x


@contextlib.contextmanager
def eval_mode(module: nn.Module) -> Iterator[None]:
    """Temporarily put ``module`` in eval mode (quantizers skip their training-only losses) and no_grad."""
    modes = [(m, m.training) for m in module.modules()]  # restore each one (e.g. a frozen, eval encoder)
    module.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        for m, training in modes:
            m.training = training


class Causal3DTokenizer(nn.Module):
    """Causal 3D tokenizer: Haar -> causal encoder -> quantizer -> causal decoder -> inverse Haar.

    Args:
        config: architecture; defaults to :meth:`Causal3DConfig.paper`.
        quantizer: a ready :class:`Quantizer` with ``dim == config.token_channels``; built from the config
            when omitted.
    """

    def __init__(self, *, config: Causal3DConfig | None = None, quantizer: Quantizer | None = None) -> None:
        super().__init__()
        self.config = cfg = config or Causal3DConfig.paper()
        arch = {
            "filters": cfg.filters,
            "channel_mult": cfg.channel_mult,
            "num_res_blocks": cfg.num_res_blocks,
            "temporal_downsample": cfg.temporal_downsample,
            "kernel_t": cfg.kernel_t,
            "pad_mode": cfg.pad_mode,
            "max_groups": cfg.max_groups,
        }
        self.encoder = Encoder(in_channels=cfg.haar_channels, out_channels=cfg.token_channels, **arch)
        self.decoder = Decoder(in_channels=cfg.token_channels, out_channels=cfg.haar_channels, **arch)
        self.quantizer = quantizer if quantizer is not None else build_bottleneck(cfg)

    # ----------------------------------------------------------------------------------------- geometry
    def padded_shape(self, t: int, h: int, w: int) -> tuple[int, int, int]:
        """Smallest (T', H', W') >= (t, h, w) the network accepts: T' = 1 + f_t k, H', W' multiples of f_s."""
        ft, fs = self.config.time_factor, self.config.space_factor
        return 1 + ft * math.ceil((t - 1) / ft), fs * math.ceil(h / fs), fs * math.ceil(w / fs)

    def latent_shape(self, t: int, h: int, w: int) -> tuple[int, int, int, int]:
        """(D, t', h', w') of the latent grid for an input of (t, h, w) slices x pixels."""
        tp, hp, wp = self.padded_shape(t, h, w)
        ft, fs = self.config.time_factor, self.config.space_factor
        return self.config.token_channels, 1 + (tp - 1) // ft, hp // fs, wp // fs

    def pad(self, x: torch.Tensor) -> torch.Tensor:
        """Pad (B, C, T, H, W) at the end of T, H and W with ``pad_value`` to :meth:`padded_shape`."""
        t, h, w = x.shape[2:]
        tp, hp, wp = self.padded_shape(t, h, w)
        if (tp, hp, wp) == (t, h, w):
            return x
        return F.pad(x, (0, wp - w, 0, hp - h, 0, tp - t), value=self.config.pad_value)

    # ----------------------------------------------------------------------------------------- training
    def encode_latents(self, x: torch.Tensor, mode: EncodeMode = "causal") -> torch.Tensor:
        """Continuous latents of a padded volume, differentiable.

        Args:
            x: (B, C, T, H, W) already at :meth:`padded_shape`.
            mode: ``"causal"`` (one-shot) or ``"windowed"`` (curriculum stage 2).

        Returns:
            (B, D, 1 + (T - 1) / f_t, H / f_s, W / f_s).
        """
        if mode == "windowed":
            return encode_windowed(self, x)
        if mode != "causal":
            raise ValueError(f"training encode mode must be 'causal' or 'windowed', got {mode!r}")
        return self.encoder(volume_to_frames(x, self.config.temporal))

    def decode_codes(self, codes: torch.Tensor) -> torch.Tensor:
        """One-shot decode of quantized latents (B, D, t, h, w) -> (B, C, 1 + f_t (t - 1), f_s h, f_s w)."""
        return frames_to_volume(self.decoder(codes), self.config.temporal)

    def bottleneck(self, x: torch.Tensor, encode_mode: EncodeMode = "causal") -> QuantizerOutput:
        """Encoder and quantizer of the training forward, without the decoder: ``x`` (B, C, T, H, W) or
        (B, C, H, W) -> the quantizer's output on the (B, D, t', h', w') latents."""
        return self.quantizer(self.encode_latents(self.pad(as_volume(x, self.config.in_channels)), encode_mode))

    def forward(self, x: torch.Tensor, encode_mode: EncodeMode = "causal") -> TokenizerOutput:
        """Reconstruct ``x`` (B, C, T, H, W) or (B, C, H, W) through the quantized bottleneck (training).

        Any T, H, W work: the input is padded at the end and the reconstruction cropped back.
        """
        image = x.dim() == 4
        x = as_volume(x, self.config.in_channels)
        t, h, w = x.shape[2:]
        q = self.bottleneck(x, encode_mode)
        recon = self.decode_codes(q.quantized)[:, :, :t, :h, :w]  # (B, C, T, H, W)
        if image:
            recon = recon[:, :, 0]
        return TokenizerOutput(recon, q.quantized, q.indices, q.aux_loss, q.stats)

    # ---------------------------------------------------------------------------------------- inference
    def encode(self, x: torch.Tensor, mode: EncodeMode = "windowed", chunk: int | None = None) -> Tokens:
        """Tokenize a volume with memory that does not grow with depth (no_grad, eval mode).

        Args:
            x: (B, C, T, H, W) or (B, C, H, W), values in [-1, 1].
            mode: ``"windowed"`` (stage-2 tiling, default), ``"stream"`` (exact = ``"causal"``) or
                ``"causal"`` (one-shot; memory grows with T).
            chunk: windows per batch (windowed) or Haar frames per chunk (stream); defaults are small.

        Returns:
            :class:`Tokens` with codes (B, D, t, h, w) and indices (B, t, h, w).
        """
        x = as_volume(x, self.config.in_channels)
        shape = tuple(x.shape[2:])
        codes, indices = [], []
        with eval_mode(self):
            for z in iter_encode(self, x, mode, chunk):
                q = self.quantizer(z)
                codes.append(q.quantized)
                indices.append(q.indices)
        return Tokens(torch.cat(codes, dim=2), torch.cat(indices, dim=1), shape)  # type: ignore[arg-type]

    def decode(
        self,
        tokens: Tokens | torch.Tensor,
        shape: tuple[int, int, int] | None = None,
        chunk_latents: int = 1,
    ) -> torch.Tensor:
        """Streaming decode with a causal cache: equals the one-shot decode, memory flat in depth.

        Args:
            tokens: :class:`Tokens`, integer indices (B, t, h, w) or float codes (B, D, t, h, w).
            shape: (T, H, W) to crop to; taken from ``tokens`` when it is :class:`Tokens`.
            chunk_latents: latent frames decoded per step.

        Returns:
            (B, C, T, H, W) reconstruction in the input's value range.
        """
        if isinstance(tokens, Tokens):
            shape = shape or tokens.shape
            tokens = tokens.codes
        n = tokens.shape[2] if torch.is_floating_point(tokens) else tokens.shape[1]
        depth = shape[0] if shape else 1 + self.config.time_factor * (n - 1)
        out: torch.Tensor | None = None
        t0 = 0
        with eval_mode(self):
            for part in iter_decode(self, tokens, chunk_latents=chunk_latents, shape=shape):
                if out is None:  # preallocate: no second copy of the volume
                    out = part.new_empty(*part.shape[:2], depth, *part.shape[3:])
                out[:, :, t0 : t0 + part.shape[2]] = part
                t0 += part.shape[2]
        if out is None or t0 != depth:
            raise InputError(f"tokens decode to {t0} slices, expected {depth}")
        return out
