"""The 2D slice-wise baseline at the same token budget as a 3D tokenizer.

Same blocks as the causal 3D tokenizer but nothing mixes slices: a 2D Haar level per slice, temporal
kernel 1, no temporal stride (``Causal3DConfig(temporal=False)``), so every slice is tokenized on its own.
To spend the same number of latent values per volume as a 3D model with compression f_t x f_s x f_s and D
channels, the baseline adds one in-plane downsampling (2 f_s) and uses D' = 4 D / f_t channels: per
slice D' (H / 2 f_s)^2 = D (H / f_s)^2 / f_t. With the paper's 8x8x8, 18 channels that is 16x16 in-plane
with 9 channels (9 bits per token with LFQ): the same bits per volume. Exactly equal budgets for a given
depth cannot always be had (the 3D grid has 1 + (T - 1) / f_t frames); pass ``depth`` to round D' to the
budget at that depth instead of the large-depth limit.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from ctvl.errors import ConfigError
from ctvl.tokenizers.causal3d.model import Causal3DConfig, Causal3DTokenizer
from ctvl.tokenizers.quantizers.base import Quantizer


def latent_values(config: Causal3DConfig, shape: tuple[int, int, int]) -> int:
    """Number of latent values (channels x grid) a tokenizer with ``config`` spends on a (T, H, W) input."""
    t, h, w = shape
    ft, fs = config.time_factor, config.space_factor
    frames = 1 + -(-(t - 1) // ft)  # ceil((t - 1) / ft) + 1
    return config.token_channels * frames * -(-h // fs) * -(-w // fs)


def slicewise_config(config: Causal3DConfig, depth: int | None = None, **overrides: Any) -> Causal3DConfig:
    """The slice-wise baseline config matching the token budget of the 3D ``config``.

    Args:
        config: the 3D tokenizer's config (same filters, blocks, quantizer kind).
        depth: match the budget at this depth; None matches the large-depth limit (D' = 4 D / f_t).
        **overrides: further fields to change.

    Returns:
        A ``temporal=False`` config with one more in-plane downsampling and D' token channels.
    """
    if not config.temporal:
        raise ConfigError("slicewise_config expects a 3D (temporal=True) config")
    ft = config.time_factor
    if depth is None:
        channels = 4 * config.token_channels / ft
    else:
        channels = 4 * config.token_channels * (1 + -(-(depth - 1) // ft)) / depth
    channels = max(1, round(channels))
    qkw = {k: v for k, v in config.quantizer_kwargs.items() if k != "bits"}  # bits follow the channels
    fields: dict[str, Any] = {
        "temporal": False,
        "channel_mult": (*config.channel_mult, config.channel_mult[-1]),
        "temporal_downsample": (False,) * len(config.channel_mult),
        "token_channels": channels,
        "quantizer_kwargs": qkw,
        "kernel_t": 1,
    }
    return dataclasses.replace(config, **{**fields, **overrides})


class SliceTokenizer(Causal3DTokenizer):
    """Slice-wise 2D tokenizer: the causal 3D tokenizer's blocks with no mixing across slices.

    Takes (B, C, T, H, W) volumes (every slice tokenized independently, any T) or (B, C, H, W) images;
    all encode/decode paths of :class:`Causal3DTokenizer` apply and coincide here.

    Args:
        config: a ``temporal=False`` config, usually from :func:`slicewise_config`.
        quantizer: optional ready quantizer with ``dim == config.token_channels``.
    """

    def __init__(self, *, config: Causal3DConfig, quantizer: Quantizer | None = None) -> None:
        if config.temporal:
            raise ConfigError("SliceTokenizer needs a temporal=False config (see slicewise_config)")
        super().__init__(config=config, quantizer=quantizer)

    @classmethod
    def matching(cls, config: Causal3DConfig, depth: int | None = None, **overrides: Any) -> SliceTokenizer:
        """A baseline with the token budget of the 3D ``config`` (see :func:`slicewise_config`)."""
        return cls(config=slicewise_config(config, depth, **overrides))
