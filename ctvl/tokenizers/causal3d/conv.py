"""Causal 3D convolution along the slice axis, with an optional streaming cache.

A causal conv pads ``k_t - 1`` frames in front of the slice axis only (zeros or copies of the first
frame) and pads in-plane symmetrically, so output frame ``j`` sees input frames ``s_t * j - (k_t - 1)``
... ``s_t * j`` and never a later one. With stride ``s_t`` an input of ``1 + s_t * n`` frames gives
``1 + n`` outputs: the "1 + 2^k n" depth rule of the tokenizer.

Streaming: pass a :class:`CausalCache` and feed the frames in chunks of any size. Each conv keeps in the
cache the input frames its next output still needs (at most ``k_t - 1 + s_t - 1``), so the concatenated
outputs of all chunks equal the one-shot output; memory per call depends on the chunk, not on the depth.
Written by hand because no library conv offers causal padding with a carried state.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import nn

PadMode = Literal["zeros", "replicate"]


class CausalCache:
    """Per-module streaming state for one sequence (one volume being encoded or decoded in chunks).

    Modules use themselves as keys; a fresh cache means "the next chunk starts the volume".
    """

    def __init__(self) -> None:
        self._state: dict[int, Any] = {}
        self._started: set[int] = set()
        self._owners: dict[int, nn.Module] = {}  # keep modules alive so ids stay unique

    def get(self, module: nn.Module, default: Any = None) -> Any:
        """State stored for ``module`` (``default`` when it has none yet)."""
        return self._state.get(id(module), default)

    def set(self, module: nn.Module, value: Any) -> None:
        """Store ``value`` as the state of ``module``."""
        self._state[id(module)] = value
        self._owners[id(module)] = module

    def started(self, module: nn.Module) -> bool:
        """True once ``module`` has been marked with :meth:`mark_started` in this cache."""
        return id(module) in self._started

    def mark_started(self, module: nn.Module) -> None:
        """Remember that ``module`` has seen the first chunk of the volume."""
        self._started.add(id(module))
        self._owners[id(module)] = module

    def nbytes(self) -> int:
        """Bytes held by cached tensors (to check that the cache stays small)."""
        return sum(v.numel() * v.element_size() for v in self._state.values() if isinstance(v, torch.Tensor))


def _triple(v: int | tuple[int, int, int]) -> tuple[int, int, int]:
    return (v, v, v) if isinstance(v, int) else tuple(v)  # type: ignore[return-value]


class CausalConv3d(nn.Module):
    """Conv3d that is causal along T (slices) and "same"-padded in-plane.

    Args:
        in_channels: input channels.
        out_channels: output channels.
        kernel_size: int or (k_t, k_h, k_w); in-plane kernels must be odd.
        stride: int or (s_t, s_h, s_w).
        pad_mode: what fills the ``k_t - 1`` front frames: ``"zeros"`` or ``"replicate"`` (copies of frame 0).
        bias: learn a bias.

    Shapes:
        (B, C_in, T, H, W) -> (B, C_out, (T - 1) // s_t + 1, ceil(H / s_h), ceil(W / s_w)) for odd kernels.
    """

    def __init__(
        self,
        *,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int, int] = 3,
        stride: int | tuple[int, int, int] = 1,
        pad_mode: PadMode = "zeros",
        bias: bool = True,
    ) -> None:
        super().__init__()
        kt, kh, kw = _triple(kernel_size)
        st, sh, sw = _triple(stride)
        if kh % 2 == 0 or kw % 2 == 0:
            raise ValueError(f"in-plane kernel sizes must be odd, got {(kh, kw)}")
        if pad_mode not in ("zeros", "replicate"):
            raise ValueError(f"pad_mode must be 'zeros' or 'replicate', got {pad_mode!r}")
        self.kernel_t, self.stride_t, self.pad_mode = kt, st, pad_mode
        self.conv = nn.Conv3d(
            in_channels, out_channels, (kt, kh, kw), stride=(st, sh, sw), padding=(0, kh // 2, kw // 2), bias=bias
        )

    def _front(self, x: torch.Tensor) -> torch.Tensor:
        """The k_t - 1 frames that go before frame 0: (B, C, k_t - 1, H, W)."""
        n = self.kernel_t - 1
        if self.pad_mode == "replicate":
            return x[:, :, :1].expand(-1, -1, n, -1, -1)
        return x.new_zeros(x.shape[0], x.shape[1], n, *x.shape[3:])

    def _empty(self, x: torch.Tensor) -> torch.Tensor:
        """An output with zero frames, for a chunk too short to complete one."""
        _, kh, kw = self.conv.kernel_size
        _, sh, sw = self.conv.stride
        h = (x.shape[3] + 2 * (kh // 2) - kh) // sh + 1
        w = (x.shape[4] + 2 * (kw // 2) - kw) // sw + 1
        return x.new_zeros(x.shape[0], self.conv.out_channels, 0, h, w)

    def forward(self, x: torch.Tensor, cache: CausalCache | None = None) -> torch.Tensor:
        """Apply the conv to (B, C_in, T, H, W).

        Args:
            x: the whole sequence (``cache=None``) or the next chunk of it (T may be 0).
            cache: streaming state; ``None`` means one-shot (pad in front, convolve, forget).

        Returns:
            (B, C_out, T_out, H', W'); streamed chunks concatenate to the one-shot output.
        """
        if cache is None:
            if x.shape[2] == 0:
                return self._empty(x)
            return self.conv(torch.cat((self._front(x), x), dim=2))  # (B, C_out, T_out, H', W')
        buf = cache.get(self)
        if buf is None:
            if x.shape[2] == 0:
                return self._empty(x)
            buf = self._front(x)
        z = torch.cat((buf, x), dim=2)  # (B, C_in, L, H, W): past frames still needed + the new chunk
        length = z.shape[2]
        n_out = (length - self.kernel_t) // self.stride_t + 1 if length >= self.kernel_t else 0
        # keep only what the next output needs; clone so the chunk's storage can be freed
        cache.set(self, z[:, :, n_out * self.stride_t :].clone())
        if n_out == 0:
            return self._empty(x)
        return self.conv(z[:, :, : (n_out - 1) * self.stride_t + self.kernel_t])


__all__ = ["CausalCache", "CausalConv3d", "PadMode"]
