"""``ctvl.bench.oned``: the 1D tokenizers' training schedule and phantom set (the real curves: docs/tokenizers.md)."""

import torch

from ctvl.bench.bench_data import BenchConfig
from ctvl.bench.oned import oned_config, oned_data, train_titok
from ctvl.tokenizers.oned import TiTok1D, tail_cut_cycle


def test_tail_drop_training_draws_one_stratified_cycle_of_cuts():
    """16 steps with 8 tokens and half the batches at full length = one whole cycle: every length once, 8 nine times."""
    cfg = BenchConfig(oned_patch=4, oned_tokens=8)
    config = oned_config(cfg, "tail", (16, 16))
    assert config.full_share == oned_config(cfg, "nested", (16, 16)).full_share == cfg.oned_full_share == 0.5
    torch.manual_seed(0)
    model = TiTok1D(config=config)
    seen: list[int] = []
    model.decoder.register_forward_hook(lambda m, inp, out: seen.append(inp[0].shape[1] - 16))  # minus 16 patches
    slices = torch.rand(12, 1, 16, 16, generator=torch.Generator().manual_seed(0)) * 2 - 1
    train_titok(model, slices, steps=16, batch=4, lr=1e-3, gen=torch.Generator().manual_seed(0))
    assert sorted(seen) == sorted(tail_cut_cycle(8, 0.5))


def test_oned_data_renders_its_own_patients():
    cfg = BenchConfig(phantom_shape=(16, 16, 9), slab_depth=4, train_cases=5, oned_train_cases=2, oned_test_cases=1)
    data = oned_data(cfg)
    assert data.train_2d.shape == (2 * 9, 1, 16, 16) and data.test_2d.shape == (9, 1, 16, 16)
