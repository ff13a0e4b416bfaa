"""Multi-scale residual vector quantization (VAR's tokenizer).

Paper: Tian et al., "Visual Autoregressive Modeling: Scalable Image Generation via Next-Scale
Prediction" (VAR), NeurIPS 2024 (arXiv:2404.02905).
Idea: quantize the residual of the latent at a rising sequence of resolutions (1×1, 2×2, …, full)
with one shared codebook; each scale's codes are upsampled, refined by a small conv φ_k and
subtracted, so a prefix of scales is a coarse version of the whole map.

Shapes: (B, C, *S) with 1, 2 or 3 spatial dims → quantized (B, C, *S), indices (B, L) with
L = Σ_k prod(scale_k): the scales' index maps flattened and concatenated coarse → fine (VAR's token
order). ``scale_shapes(S)`` gives the per-scale grids; ``indices_to_codes`` needs S.

Written here because vector-quantize-pytorch's ``ResidualVQ`` quantizes the residual at a single
resolution with one codebook per level; there is no multi-resolution residual with refinement convs.
The shared codebook itself (nearest-code lookup, EMA update, dead-code re-seeding) is the library's
``VectorQuantize``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from vector_quantize_pytorch import VectorQuantize

from ctvl.tokenizers.quantizers.base import Quantizer, QuantizerOutput, codebook_stats, full_precision

_UP_MODE = {1: "linear", 2: "bicubic", 3: "trilinear"}
_CONV = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}


class MultiScaleResidualVQ(Quantizer):
    """VAR multi-scale residual VQ with a shared codebook and a refinement conv per scale.

    Args:
        dim: channels C of the latent.
        spatial_dims: 1 (token sequences), 2 (images) or 3 (volumes).
        scales: coarse grid sizes before the final full-resolution step; an int is the same size on
            every axis, a tuple gives one size per axis. Sizes are clipped to the input, repeats are
            dropped, and the full input size is always the last step (VAR: 1,2,3,4,5,6,8,10,13,16).
        codebook_size: shared codebook size K (VAR: 4096).
        codebook_dim: lookup dimension (None = C).
        use_cosine_sim: l2-normalised lookup instead of Euclidean (VAR uses Euclidean).
        commitment_weight: β of the encoder commitment term (0.25).
        refine_ratio: φ_k(z) = (1 - r)·z + r·conv_k(z) (VAR: 0.5).
        decay: EMA decay of the shared codebook.
        threshold_ema_dead_code: dead-code re-seeding threshold (0 disables it).
        channel_last: inputs are (B, *S, C) instead of (B, C, *S).
    """

    def __init__(
        self,
        *,
        dim: int,
        spatial_dims: int = 2,
        scales: Sequence[int | Sequence[int]] = (1, 2, 3, 4, 6, 8, 10, 13, 16),
        codebook_size: int = 4096,
        codebook_dim: int | None = None,
        use_cosine_sim: bool = False,
        commitment_weight: float = 0.25,
        refine_ratio: float = 0.5,
        decay: float = 0.99,
        threshold_ema_dead_code: float = 2.0,
        channel_last: bool = False,
    ) -> None:
        super().__init__()
        if spatial_dims not in _CONV:
            raise ValueError(f"spatial_dims must be 1, 2 or 3, got {spatial_dims}")
        self.dim, self.spatial_dims, self.channel_last = dim, spatial_dims, channel_last
        self.scales = [self._as_tuple(s) for s in scales]
        self._codebook_size = int(codebook_size)
        self.commitment_weight, self.refine_ratio = commitment_weight, refine_ratio
        self.codebook = VectorQuantize(
            dim=dim,
            codebook_size=codebook_size,
            codebook_dim=codebook_dim,
            use_cosine_sim=use_cosine_sim,
            commitment_weight=0.0,  # the VAR losses below replace the library's commitment term
            decay=decay,
            threshold_ema_dead_code=threshold_ema_dead_code,
            channel_last=True,
        )
        conv = _CONV[spatial_dims]
        self.refine = nn.ModuleList(conv(dim, dim, 3, padding=1) for _ in range(len(self.scales) + 1))

    def _as_tuple(self, size: int | Sequence[int]) -> tuple[int, ...]:
        if isinstance(size, int):
            return (size,) * self.spatial_dims
        size = tuple(int(s) for s in size)
        if len(size) != self.spatial_dims:
            raise ValueError(f"scale {size} has {len(size)} axes, expected {self.spatial_dims}")
        return size

    @property
    def codebook_size(self) -> int:
        return self._codebook_size

    @property
    def bits_per_token(self) -> float:
        """Bits per index; the number of indices per position grows with the scale count."""
        return math.log2(self._codebook_size)

    def scale_shapes(self, spatial: Sequence[int]) -> list[tuple[int, ...]]:
        """The grids actually used for an input of spatial shape S, coarse → fine (last = S)."""
        spatial = tuple(int(s) for s in spatial)
        shapes: list[tuple[int, ...]] = []
        for scale in self.scales:
            shape = tuple(min(s, full) for s, full in zip(scale, spatial, strict=True))
            if not shapes or shapes[-1] != shape:
                shapes.append(shape)
        if not shapes or shapes[-1] != spatial:
            shapes.append(spatial)
        return shapes

    def _upsample(self, z: torch.Tensor, size: tuple[int, ...]) -> torch.Tensor:
        if tuple(z.shape[2:]) == size:
            return z
        return F.interpolate(z, size=size, mode=_UP_MODE[self.spatial_dims])

    def _refine(self, k: int, z: torch.Tensor) -> torch.Tensor:
        return (1 - self.refine_ratio) * z + self.refine_ratio * self.refine[k](z)

    def forward(self, x: torch.Tensor) -> QuantizerOutput:
        """Quantize.

        Args:
            x: (B, C, *S) (or (B, *S, C) with ``channel_last``), len(S) = ``spatial_dims``.

        Returns:
            :class:`QuantizerOutput` with indices (B, L) (see the module docstring). ``aux_loss`` =
            mean over scales of β·‖sg(f̂) - f‖² + ‖f̂ - sg(f)‖² (commitment + training of φ), in
            training and eval alike.
        """
        if self.channel_last:
            x = x.movedim(-1, 1)
        if x.ndim != 2 + self.spatial_dims:
            raise ValueError(
                f"expected {2 + self.spatial_dims}-D input for spatial_dims={self.spatial_dims}, got {tuple(x.shape)}"
            )
        spatial = tuple(x.shape[2:])
        with full_precision(x):
            f = x.float()  # (B, C, *S)
            f_target = f.detach()
            rest = f_target.clone()
            f_hat = torch.zeros_like(f_target)
            all_indices, aux = [], f.new_zeros(())
            shapes = self.scale_shapes(spatial)
            for k, shape in enumerate(shapes):
                r_k = _area(rest, shape)  # (B, C, *s_k)
                tokens = r_k.flatten(2).transpose(1, 2)  # (B, n_k, C)
                _, idx, _ = self.codebook(tokens)  # (B, n_k); updates the EMA codebook in training
                codes = self.codebook.get_output_from_indices(idx).transpose(1, 2).reshape(r_k.shape)
                h = self._refine(k, self._upsample(codes.detach(), spatial))  # (B, C, *S)
                f_hat = f_hat + h
                rest = rest - h.detach()
                aux = aux + self.commitment_weight * F.mse_loss(f_hat.detach(), f) + F.mse_loss(f_hat, f_target)
                all_indices.append(idx.long())
            aux = aux / len(shapes)
            quantized = f + (f_hat - f).detach()  # straight-through to the encoder
        indices = torch.cat(all_indices, dim=1)  # (B, L)
        stats = codebook_stats(indices, self.codebook_size)
        stats["scales"] = float(len(shapes))
        out = quantized.to(x.dtype)
        if self.channel_last:
            out = out.movedim(1, -1)
        return QuantizerOutput(out, indices, aux, stats)

    def indices_to_codes(self, indices: torch.Tensor, spatial_shape: Sequence[int] | None = None) -> torch.Tensor:
        """(B, L) concatenated scale indices → (B, C, *S) (or (B, *S, C) with ``channel_last``).

        Args:
            indices: the ``indices`` of :meth:`forward`.
            spatial_shape: S of the latent that was quantized (needed to know the scale grids).
        """
        if spatial_shape is None:
            raise ValueError("MultiScaleResidualVQ.indices_to_codes needs spatial_shape (the latent's S)")
        spatial = tuple(int(s) for s in spatial_shape)
        shapes = self.scale_shapes(spatial)
        expected = sum(math.prod(s) for s in shapes)
        if indices.shape[1] != expected:
            raise ValueError(f"expected {expected} indices for spatial shape {spatial}, got {indices.shape[1]}")
        b = indices.shape[0]
        f_hat = None
        chunks = torch.split(indices, [math.prod(s) for s in shapes], dim=1)
        for k, (shape, idx) in enumerate(zip(shapes, chunks, strict=True)):
            codes = self.codebook.get_output_from_indices(idx.long()).transpose(1, 2).reshape(b, self.dim, *shape)
            h = self._refine(k, self._upsample(codes, spatial))
            f_hat = h if f_hat is None else f_hat + h
        if f_hat is None:
            raise RuntimeError("indices_to_codes needs at least one scale")
        return f_hat.movedim(1, -1) if self.channel_last else f_hat


def _area(x: torch.Tensor, size: tuple[int, ...]) -> torch.Tensor:
    """Area (average) downsampling of (B, C, *S) to ``size``; identity at full size."""
    if tuple(x.shape[2:]) == size:
        return x
    return F.interpolate(x, size=size, mode="area")
