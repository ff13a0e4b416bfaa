"""``ctvl.psnr``: the one PSNR-from-MSE formula, for floats and tensors."""

import math

import pytest
import torch

from ctvl.psnr import psnr_from_mse


def test_float_and_tensor_agree_with_the_formula():
    assert psnr_from_mse(1.0) == pytest.approx(10 * math.log10(4.0))  # range 2 (model units)
    assert psnr_from_mse(0.01, data_range=1.0) == pytest.approx(20.0)
    t = psnr_from_mse(torch.tensor([1.0, 0.01]), data_range=1.0)
    assert t.shape == (2,) and t.tolist() == pytest.approx([0.0, 20.0])


def test_a_perfect_match_is_finite():
    assert psnr_from_mse(0.0, data_range=1.0) == pytest.approx(100.0)
    assert torch.isfinite(psnr_from_mse(torch.zeros(3))).all()
