"""Label consistency and the memorization check, on hand-computed cases."""

import numpy as np
import pytest
import torch

from ctvl.data.labels import CTRATE_LABELS
from ctvl.errors import InputError
from ctvl.eval.features.consistency import label_consistency, memorization, nearest_rmse


def _mat(rows, cols):
    m = np.zeros((len(rows), 18), np.int64)
    for i, r in enumerate(rows):
        for j, v in zip(cols, r):
            m[i, j] = v
    return m


def test_label_consistency_by_hand():
    # prompts state labels 0 and 2 (label 5 only in the real set: not used)
    prompts = _mat([[1, 0], [1, 1], [0, 1], [0, 0]], [0, 2])
    gen = _mat([[1, 0], [0, 1], [0, 0], [1, 0]], [0, 2])  # label 0: tp 1 fp 1 fn 1 -> F1 0.5; label 2: tp 1 fn 1 -> 2/3
    real_true = _mat([[1, 1, 1], [0, 1, 0]], [0, 2, 5])
    real_pred = _mat([[1, 0, 1], [0, 1, 0]], [0, 2, 5])  # label 0: F1 1; label 2: tp 1 fn 1 -> 2/3
    out = label_consistency(prompts, gen, real_true, real_pred)
    a, c = CTRATE_LABELS[0], CTRATE_LABELS[2]
    assert out["labels"] == [a, c]
    assert out["per_label"][a] == pytest.approx({"f1": 0.5, "real_f1": 1.0, "support": 2, "real_support": 1})
    assert out["per_label"][c]["f1"] == pytest.approx(2 / 3) and out["per_label"][c]["real_f1"] == pytest.approx(2 / 3)
    assert out["macro"] == pytest.approx((0.5 + 2 / 3) / 2)
    assert out["real_macro"] == pytest.approx((1.0 + 2 / 3) / 2)
    assert out["n_generated"] == 4 and out["n_real"] == 2


def test_label_consistency_errors():
    z = np.zeros((3, 18), np.int64)
    with pytest.raises(InputError, match="no prompt"):
        label_consistency(z, z, z, z)
    with pytest.raises(InputError, match="shape"):
        label_consistency(np.zeros((3, 17)), z, z, z)
    with pytest.raises(InputError, match="row counts"):
        label_consistency(z + 1, z[:2], z, z)


def test_nearest_rmse_matches_brute_force():
    g = torch.Generator().manual_seed(0)
    q = torch.rand(7, 1, 3, 4, 5, generator=g)
    r = torch.rand(11, 1, 3, 4, 5, generator=g).half()
    d, i = nearest_rmse(q, r, chunk=3)
    brute = ((q.double().reshape(7, 1, -1) - r.double().reshape(1, 11, -1)) ** 2).mean(-1).sqrt()
    assert torch.allclose(d, brute.min(1).values, atol=1e-9)
    assert torch.equal(i, brute.argmin(1))


def test_memorization_flags_copies_and_passes_fresh_volumes():
    g = torch.Generator().manual_seed(1)
    train = torch.rand(40, 1, 3, 4, 4, generator=g)
    real = torch.rand(400, 1, 3, 4, 4, generator=g)
    copies = train[:20] + 0.001
    fresh = torch.rand(400, 1, 3, 4, 4, generator=g)  # same distribution as real: ~5 % below its p5
    bad = memorization(copies, train, real)
    assert bad["fraction_below_real_p5"] == 1.0 and not bad["generated_not_closer"]
    assert bad["generated_nearest_index"] == list(range(20)) and bad["generated_median"] < bad["real_median"]
    good = memorization(fresh, train, real, chunk=7)
    assert good["generated_not_closer"] and good["fraction_below_real_p5"] <= 0.10
    assert good["n_generated"] == 400 and good["n_train"] == 40 and good["n_real"] == 400
    assert len(good["real_nearest"]) == 400
    with pytest.raises(InputError):
        memorization(fresh[:0], train, real)
