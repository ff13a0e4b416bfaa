"""Tests for ctvl.train.precision: fp32 on CPU, autocast on GPU."""

from __future__ import annotations

import pytest
import torch

from ctvl.errors import ConfigError
from ctvl.train.precision import resolve_precision


@pytest.mark.parametrize(("requested", "note"), [("auto", False), ("fp32", False), ("bf16", True), ("fp16", True)])
def test_cpu_always_fp32(requested: str, note: bool) -> None:
    precision, message = resolve_precision(requested, torch.device("cpu"))
    assert precision.name == "fp32" and precision.dtype is None and not precision.use_scaler
    assert (message is not None) == note
    if note:
        assert requested in message and "fp32" in message
    with precision.autocast():
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.float32


def test_unknown_precision() -> None:
    with pytest.raises(ConfigError, match="precision"):
        resolve_precision("int8", torch.device("cpu"))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_gpu_autocast_dtypes() -> None:
    device = torch.device("cuda")
    fp16, _ = resolve_precision("fp16", device)
    assert fp16.use_scaler and fp16.dtype == torch.float16
    with fp16.autocast():
        assert (torch.ones(4, 4, device=device) @ torch.ones(4, 4, device=device)).dtype == torch.float16
    auto, _ = resolve_precision("auto", device)
    assert auto.name == ("bf16" if torch.cuda.is_bf16_supported() else "fp32")
