"""Token reduction: DivPrune vs a brute force, region-budget top-k, TokenPacker locality."""

import itertools

import numpy as np
import pytest
import torch

from ctvl.tokenizers.reduction import (
    TokenPacker,
    attention_topk,
    divprune,
    nearest_neighbour_distance,
    region_ids,
    split_budget,
)


def brute_force_divprune(tokens: np.ndarray, keep: int) -> list[int]:
    """The greedy rule written out with explicit loops over a full cosine-distance matrix."""
    unit = tokens / np.linalg.norm(tokens, axis=1, keepdims=True)
    n = len(unit)
    dist = np.array([[1.0 - float(unit[i] @ unit[j]) for j in range(n)] for i in range(n)])
    nn = [min(dist[i, j] for j in range(n) if j != i) for i in range(n)]
    chosen = [int(np.argmax(nn))]
    while len(chosen) < keep:
        best, best_val = None, -np.inf
        for i in range(n):
            if i in chosen:
                continue
            val = min(dist[i, j] for j in chosen)
            if val > best_val:
                best, best_val = i, val
        chosen.append(best)
    return sorted(chosen)


def min_pairwise(tokens: np.ndarray, subset) -> float:
    unit = tokens / np.linalg.norm(tokens, axis=1, keepdims=True)
    return min(1.0 - float(unit[i] @ unit[j]) for i, j in itertools.combinations(subset, 2))


@pytest.mark.parametrize("n,c,keep", [(6, 3, 3), (9, 4, 4), (12, 2, 5), (10, 8, 1), (7, 5, 7)])
def test_divprune_matches_brute_force_greedy(n, c, keep):
    gen = torch.Generator().manual_seed(n * 100 + keep)
    x = torch.randn(3, n, c, generator=gen, dtype=torch.float64).float()
    out = divprune(x, keep)
    assert out.indices.shape == (3, keep) and out.tokens.shape == (3, keep, c)
    for b in range(3):
        expected = brute_force_divprune(x[b].double().numpy(), keep)
        assert out.indices[b].tolist() == expected
        assert torch.equal(out.tokens[b], x[b, out.indices[b]])  # gathered in original order


def test_divprune_is_a_two_approximation_of_the_max_min_optimum():
    gen = torch.Generator().manual_seed(7)
    x = torch.randn(1, 10, 3, generator=gen)
    picked = divprune(x, 4).indices[0].tolist()
    arr = x[0].double().numpy()
    optimum = max(min_pairwise(arr, s) for s in itertools.combinations(range(10), 4))
    assert min_pairwise(arr, picked) >= 0.5 * optimum - 1e-9


def test_divprune_first_pick_is_the_most_isolated_token_and_duplicates_are_avoided():
    base = torch.tensor([[1.0, 0.0], [1.0, 0.01], [0.99, 0.02], [0.0, 1.0], [-1.0, 0.05]])
    picked = divprune(base[None], 3).indices[0].tolist()
    assert {3, 4} <= set(picked) and len({0, 1, 2} & set(picked)) == 1  # one of the near-duplicates
    nn = nearest_neighbour_distance(torch.nn.functional.normalize(base[None], dim=-1))
    assert int(nn.argmax()) in (3, 4)


@pytest.mark.parametrize("spatial", [(6,), (4, 5), (2, 3, 4)])
def test_divprune_on_maps_and_chunking(spatial):
    torch.manual_seed(0)
    x = torch.randn(2, 5, *spatial)
    n = int(np.prod(spatial))
    out = divprune(x, 4, spatial_dims=len(spatial))
    flat = x.flatten(2).transpose(1, 2)
    assert out.tokens.shape == (2, 4, 5)
    assert torch.equal(out.tokens, flat.gather(1, out.indices[..., None].expand(-1, -1, 5)))
    assert bool((out.indices.diff(dim=1) > 0).all()) and int(out.indices.max()) < n
    small_chunks = divprune(x, 4, spatial_dims=len(spatial), chunk=2)
    assert torch.equal(small_chunks.indices, out.indices)


def test_divprune_rejects_bad_keep_and_shapes():
    with pytest.raises(ValueError, match="keep"):
        divprune(torch.randn(1, 4, 2), 5)
    with pytest.raises(ValueError, match="spatial_dims"):
        divprune(torch.randn(1, 2, 4, 4), 2)


def test_attention_topk_without_regions_is_plain_topk_in_order():
    torch.manual_seed(0)
    x = torch.randn(2, 10, 4)
    scores = torch.rand(2, 10)
    out = attention_topk(x, 4, scores=scores)
    expected = scores.topk(4, dim=1).indices.sort(dim=1).values
    assert torch.equal(out.indices, expected)
    assert torch.equal(out.tokens, x.gather(1, expected[..., None].expand(-1, -1, 4)))


@pytest.mark.parametrize(
    "spatial,regions,keep",
    [((8,), 2, 4), ((4, 6), 2, 7), ((4, 6), (1, 3), 6), ((2, 4, 4), 2, 10), ((2, 4, 4), (2, 1, 2), 5)],
)
def test_attention_topk_budget_split_across_regions(spatial, regions, keep):
    torch.manual_seed(0)
    x = torch.randn(3, 6, *spatial)
    scores = torch.rand(3, int(np.prod(spatial)))
    per_axis = (regions,) * len(spatial) if isinstance(regions, int) else regions
    ids = region_ids(spatial, per_axis)
    for split in ("proportional", "equal"):
        out = attention_topk(x, keep, scores=scores, spatial_dims=len(spatial), regions=regions, split=split)
        assert out.indices.shape == (3, keep) and bool((out.indices.diff(dim=1) > 0).all())
        for b in range(3):
            counts = torch.bincount(ids)
            weights = torch.bincount(ids, weights=scores[b]) if split == "proportional" else counts.double()
            budget = split_budget(weights, torch.bincount(ids), keep)
            kept_ids = ids[out.indices[b]]
            assert torch.equal(torch.bincount(kept_ids, minlength=len(budget)), budget)
            for r in range(len(budget)):  # inside each region: the best-scoring tokens
                in_region = (ids == r).nonzero().squeeze(1)
                best = in_region[scores[b, in_region].argsort(descending=True)[: int(budget[r])]]
                assert set(best.tolist()) == set(out.indices[b][kept_ids == r].tolist())


def test_attention_topk_default_scores_and_token_grid_input():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 4, 4)
    a = attention_topk(x, 5, spatial_dims=2, regions=2)
    b = attention_topk(x.flatten(2).transpose(1, 2), 5, grid=(4, 4), regions=2)
    assert torch.equal(a.indices, b.indices)
    with pytest.raises(ValueError, match="grid"):
        attention_topk(x.flatten(2).transpose(1, 2), 5, regions=2)


def test_split_budget_sums_respects_capacity_and_proportion():
    budget = split_budget(torch.tensor([10.0, 1.0, 0.0]), torch.tensor([3, 5, 5]), 8)
    assert budget.tolist() == [3, 5, 0]
    budget = split_budget(torch.tensor([3.0, 1.0]), torch.tensor([10, 10]), 8)
    assert budget.tolist() == [6, 2]
    budget = split_budget(torch.tensor([1.0, 1.0, 1.0]), torch.tensor([1, 1, 1]), 3)
    assert budget.tolist() == [1, 1, 1]


@pytest.mark.parametrize(
    "spatial_dims,spatial,factor,grid",
    [
        (1, (8,), 2, (4,)),
        (2, (4, 6), (2, 3), (2, 2)),
        (3, (2, 4, 4), 2, (1, 2, 2)),
    ],
)
def test_tokenpacker_shapes_and_region_locality(spatial_dims, spatial, factor, grid):
    torch.manual_seed(0)
    packer = TokenPacker(spatial_dims=spatial_dims, dim=8, out_dim=12, factor=factor, heads=2).eval()
    x = torch.randn(2, 8, *spatial)
    out, got_grid = packer(x)
    assert got_grid == grid and out.shape == (2, int(np.prod(grid)), 12)
    # perturb one fine token: only the query of its own region changes
    y = x.clone()
    # a random vector, not a per-channel constant (LayerNorm would hide that)
    y[(slice(None), slice(None)) + (0,) * spatial_dims] += 3 * torch.randn(2, 8)
    changed = (packer(y)[0] - out).abs().amax(dim=(0, 2)) > 1e-6
    assert changed.tolist() == [True] + [False] * (len(changed) - 1)


def test_tokenpacker_rejects_indivisible_input():
    with pytest.raises(ValueError, match="divisible"):
        TokenPacker(spatial_dims=2, dim=8, factor=3, heads=2)(torch.randn(1, 8, 4, 6))
