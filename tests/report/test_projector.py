"""MLP projector shapes (paper: 18 → 4096 → 4096) and the position code of visual tokens."""

from __future__ import annotations

import pytest
import torch

from ctvl.report.projector import MLPProjector, grid_coordinates, sincos_positions


@pytest.mark.parametrize(
    ("in_dim", "out_dim", "hidden", "layers"), [(12, 32, None, 2), (6, 16, 8, 3), (4, 10, None, 1)]
)
def test_projector_shapes(in_dim, out_dim, hidden, layers):
    proj = MLPProjector(in_dim=in_dim, out_dim=out_dim, hidden=hidden, layers=layers)
    assert proj(torch.randn(2, 5, in_dim)).shape == (2, 5, out_dim)
    assert sum(isinstance(m, torch.nn.Linear) for m in proj.modules()) == layers


def test_paper_projector_is_18_to_4096_to_4096():
    proj = MLPProjector(in_dim=18, out_dim=4096)  # hidden defaults to the LM width, as in BTB3D
    linears = [m for m in proj.modules() if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(18, 4096), (4096, 4096)]
    assert sum(p.numel() for p in proj.parameters()) == 18 * 4096 + 4096 + 4096 * 4096 + 4096
    out = proj(torch.sign(torch.randn(7, 18)))  # LFQ codes are +-1
    out.sum().backward()
    assert out.shape == (7, 4096) and linears[0].weight.grad is not None


def test_projector_rejects_zero_layers():
    with pytest.raises(ValueError):
        MLPProjector(in_dim=4, out_dim=4, layers=0)


def test_grid_coordinates_row_major_and_normalised():
    grid = (3, 4, 5)
    idx = torch.tensor([0, 1, 5, 20, 59])
    coords = grid_coordinates(idx, grid)
    expect = torch.tensor([[0, 0, 0], [0, 0, 1], [0, 1, 0], [1, 0, 0], [2, 3, 4]], dtype=torch.float32)
    assert torch.allclose(coords, expect / torch.tensor([2.0, 3.0, 4.0]))
    assert torch.equal(grid_coordinates(torch.tensor([0]), (1, 1, 1)), torch.zeros(1, 3))


def test_sincos_positions_distinguish_positions():
    coords = grid_coordinates(torch.arange(5 * 8 * 8), (5, 8, 8))
    enc = sincos_positions(coords, 48)
    assert enc.shape == (320, 48)
    assert torch.cdist(enc, enc).add(torch.eye(320) * 1e3).min() > 1e-3  # every position is unique
    assert torch.equal(sincos_positions(coords, 2), torch.zeros(320, 2))  # too narrow: zeros, no crash
