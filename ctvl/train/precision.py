"""Mixed precision: which dtype the forward pass runs in, and whether gradients need loss scaling.

bf16 and fp16 autocast are used on GPUs only; on CPU a run always trains in fp32 (CPU autocast is slow
and changes numerics, and the CPU configs must give the same numbers everywhere). fp16 uses
:class:`torch.amp.GradScaler`; bf16 does not need one.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch

from ctvl.errors import ConfigError

_DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass(frozen=True)
class Precision:
    """The precision a run actually trains in."""

    name: str  # "fp32" | "bf16" | "fp16"
    device_type: str  # "cpu" | "cuda"

    @property
    def dtype(self) -> torch.dtype | None:
        """Autocast dtype, or None for plain fp32."""
        return _DTYPES[self.name]

    @property
    def use_scaler(self) -> bool:
        """fp16 needs dynamic loss scaling; bf16 and fp32 do not."""
        return self.name == "fp16"

    def autocast(self) -> contextlib.AbstractContextManager[object]:
        """Context for the forward pass and loss (backward runs outside it)."""
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device_type, dtype=self.dtype)


def resolve_precision(requested: str, device: torch.device) -> tuple[Precision, str | None]:
    """Turn the config's ``precision`` into what this device can do.

    Args:
        requested: ``auto`` | ``fp32`` | ``bf16`` | ``fp16``.
        device: the training device.

    Returns:
        (precision, note): the note says why a request was changed (e.g. bf16 on CPU -> fp32), else None.

    Raises:
        ConfigError: bf16 requested on a GPU without bf16 support.
    """
    if requested not in ("auto", *_DTYPES):
        raise ConfigError(f"'precision' must be auto, fp32, bf16 or fp16, got '{requested}'")
    if device.type != "cuda":
        note = None
        if requested in ("bf16", "fp16"):
            note = f"precision {requested} needs a GPU; training in fp32 on {device.type}"
        return Precision("fp32", device.type), note
    if requested == "auto":
        return Precision("bf16" if torch.cuda.is_bf16_supported() else "fp32", "cuda"), None
    if requested == "bf16" and not torch.cuda.is_bf16_supported():
        raise ConfigError("precision bf16 is not supported by this GPU; use precision=fp16 or fp32")
    return Precision(requested, "cuda"), None
