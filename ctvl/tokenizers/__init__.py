"""ctvl.tokenizers: visual tokenizers and token compression.

General-domain library (2D images and 3D volumes alike, ``spatial_dims``):

- :mod:`ctvl.tokenizers.quantizers`: FSQ, LFQ (2^18-ready), grouped LFQ, cosine VQ, multi-scale
  residual VQ behind one ``Quantizer`` interface; ``build_quantizer(kind, dim, **kwargs)``.
- :mod:`ctvl.tokenizers.oned`: TiTok-style 1D tokenizer with FlexTok nested dropout / One-D-Piece
  tail drop, MQT prefix resampler, M3 nested pooling.
- :mod:`ctvl.tokenizers.reduction`: DivPrune, attention top-k with region budgets, TokenPacker.

Medical: :mod:`ctvl.tokenizers.causal3d`, the causal 3D CT tokenizer, built on these quantizers.
See ``docs/tokenizers.md`` for usage and benchmark numbers.
"""
