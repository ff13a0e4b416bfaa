"""GlobalBatchEntropy: micro-batch surrogates whose mean value and gradient equal the whole batch's entropy."""

from __future__ import annotations

import pytest
import torch

from ctvl.tokenizers.quantizers.batch_entropy import GlobalBatchEntropy, entropy
from ctvl.tokenizers.quantizers.lfq import LFQ


def _avg(z: torch.Tensor) -> list[torch.Tensor]:
    return [torch.softmax(z @ torch.linspace(-1, 1, 8, dtype=z.dtype)[None], -1).mean(0)]  # (8,) per "group"


@pytest.mark.parametrize("sizes", [(3, 3, 3, 3), (5, 2, 4, 1)])  # equal and unequal token counts
def test_surrogate_equals_the_whole_batch_in_value_and_gradient(sizes: tuple[int, ...]) -> None:
    torch.manual_seed(0)
    z = torch.randn(sum(sizes), 1, dtype=torch.float64, requires_grad=True)
    whole = entropy(_avg(z)[0])
    (g_whole,) = torch.autograd.grad(whole, z)
    stats = GlobalBatchEntropy()
    parts = torch.split(z, list(sizes))
    stats.begin_collect()
    with torch.no_grad():
        for part in parts:
            stats.new_micro_batch()
            stats.batch_entropy(_avg(part), part.shape[0])
    stats.finish_collect(lambda t: t, scale=len(parts))  # one rank, len(parts) accumulation steps
    values = []
    for part in parts:  # the loop: sum of loss / accum
        stats.new_micro_batch()
        values.append(stats.batch_entropy(_avg(part), part.shape[0]))
    (g_parts,) = torch.autograd.grad(sum(v / len(parts) for v in values), z)
    torch.testing.assert_close(g_parts, g_whole, rtol=1e-10, atol=1e-12)
    if len(set(sizes)) == 1:
        assert float(sum(values) / len(values)) == pytest.approx(float(whole), rel=1e-12)
    stats.clear()
    assert not stats.active


def test_lfq_uses_its_own_batch_unless_told_otherwise() -> None:
    torch.manual_seed(0)
    q = LFQ(dim=6, bits=6).train()
    x = torch.randn(2, 6, 3, 4, 4)
    a = q(x).stats["batch_entropy"]
    q.batch_stats.begin_collect()
    with torch.no_grad():
        q(x[:1]), q(x[1:])  # two calls of one micro-batch: separate statistics per call
    q.batch_stats.finish_collect(lambda t: t, scale=1)
    assert q.batch_stats.active
    q.batch_stats.clear()
    assert q(x).stats["batch_entropy"] == pytest.approx(a)
