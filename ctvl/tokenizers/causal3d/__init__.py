"""The causal 3D CT tokenizer (after BTB3D) and its 2D slice-wise baseline.

Example::

    from ctvl.tokenizers.causal3d import Causal3DConfig, Causal3DTokenizer

    model = Causal3DTokenizer(Causal3DConfig.cpu())
    out = model(volume)                      # training: (B, 1, T, H, W) -> recon, codes, aux_loss, ...
    tokens = model.encode(volume)            # inference, windowed, memory flat in depth
    recon = model.decode(tokens)             # streaming decode, equals the one-shot decode
"""

from ctvl.tokenizers.causal3d.conv import CausalCache, CausalConv3d
from ctvl.tokenizers.causal3d.model import (
    Causal3DConfig,
    Causal3DTokenizer,
    TokenizerOutput,
    Tokens,
)
from ctvl.tokenizers.causal3d.slicewise import SliceTokenizer, latent_values, slicewise_config

__all__ = [
    "Causal3DConfig",
    "Causal3DTokenizer",
    "CausalCache",
    "CausalConv3d",
    "SliceTokenizer",
    "Tokens",
    "TokenizerOutput",
    "latent_values",
    "slicewise_config",
]
