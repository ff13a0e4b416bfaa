"""1D tokenizers: TiTok-style latents, nested dropout / tail drop, Matryoshka token sets."""

from ctvl.tokenizers.oned.matryoshka import MQTResampler, NestedPooling
from ctvl.tokenizers.oned.patches import PatchEmbed
from ctvl.tokenizers.oned.titok import TiTok1D, TiTokConfig, TiTokOutput
from ctvl.tokenizers.oned.token_drop import (
    TOKEN_DROP_MODES,
    apply_nested_mask,
    keep_mask,
    sample_keep,
    tail_cut_cycle,
)

__all__ = [
    "TOKEN_DROP_MODES",
    "MQTResampler",
    "NestedPooling",
    "PatchEmbed",
    "TiTok1D",
    "TiTokConfig",
    "TiTokOutput",
    "apply_nested_mask",
    "keep_mask",
    "sample_keep",
    "tail_cut_cycle",
]
