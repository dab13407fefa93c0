"""Listening-test statistics: each metric against scipy on random data, system-level means on a hand-made case,
seeded bootstrap intervals and the out-of-fold cubic mapping."""

import math

import numpy as np
import pytest
from scipy import stats as sp

from aqa.eval.stats import (
    METRICS,
    bootstrap_ci,
    kfold_cubic,
    ktau,
    lcc,
    mse,
    srcc,
    summary_stats,
    system_means,
)


def _random(seed: int, n: int = 40, ties: bool = False) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    y = 0.6 * x + rng.normal(size=n)
    if ties:  # MOS-like ratings on a coarse grid: many ties
        y = np.round(y * 2) / 2
    return x, y


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("ties", [False, True])
def test_metrics_match_scipy_on_random_data(seed, ties):
    x, y = _random(seed, ties=ties)
    assert lcc(x, y) == pytest.approx(sp.pearsonr(x, y).statistic, abs=1e-12)
    assert srcc(x, y) == pytest.approx(sp.spearmanr(x, y).statistic, abs=1e-12)
    assert ktau(x, y) == pytest.approx(sp.kendalltau(x, y).statistic, abs=1e-12)
    assert mse(x, y) == pytest.approx(float(np.mean((x - y) ** 2)), abs=1e-12)


def test_row_wise_metrics_match_scipy_per_row():
    rng = np.random.default_rng(5)
    xs, ys = rng.normal(size=(6, 15)), rng.normal(size=(6, 15))
    ys[2] = np.round(ys[2])  # ties in one row
    for name, fn, ref in [
        ("LCC", lcc, sp.pearsonr),
        ("SRCC", srcc, sp.spearmanr),
        ("KTAU", ktau, sp.kendalltau),
    ]:
        got = fn(xs, ys)
        assert got.shape == (6,), name
        np.testing.assert_allclose(
            got, [ref(a, b).statistic for a, b in zip(xs, ys, strict=True)], atol=1e-12
        )
    assert set(METRICS) == {"MSE", "LCC", "SRCC", "KTAU"}


def test_constant_input_gives_nan_not_an_error():
    x, y = np.ones(5), np.arange(5.0)
    assert math.isnan(lcc(x, y)) and math.isnan(srcc(x, y)) and math.isnan(ktau(x, y))


def test_system_means_on_a_hand_made_case():
    # A: preds 1, 3 / scores 2, 4 -> (2, 3); B: 5 / 1 -> (5, 1); C: 2, 2, 8 / 3, 3, 3 -> (4, 3)
    pred = [1, 3, 5, 2, 2, 8]
    score = [2, 4, 1, 3, 3, 3]
    systems = ["A", "A", "B", "C", "C", "C"]
    p, t, names = system_means(pred, score, systems)
    assert names == ["A", "B", "C"]
    np.testing.assert_allclose(p, [2, 5, 4])
    np.testing.assert_allclose(t, [3, 1, 3])
    # deviations p: -5/3, 4/3, 1/3; t: 2/3, -4/3, 2/3 -> r = (-24/9) / sqrt(42/9 * 24/9) = -sqrt(4/7)
    assert lcc(p, t) == pytest.approx(-math.sqrt(4 / 7), abs=1e-12)
    with pytest.raises(ValueError, match="differ in length"):
        system_means([1, 2], [1, 2], ["A"])


def test_bootstrap_interval_is_seeded_and_brackets_the_estimate():
    x, y = _random(0, n=60)
    low, high = bootstrap_ci(lcc, x, y, n_boot=500, seed=3)
    assert (low, high) == bootstrap_ci(lcc, x, y, n_boot=500, seed=3)
    assert (low, high) != bootstrap_ci(lcc, x, y, n_boot=500, seed=4)
    assert low < lcc(x, y) < high and high - low < 0.6
    # more data, narrower interval
    x2, y2 = _random(0, n=600)
    low2, high2 = bootstrap_ci(lcc, x2, y2, n_boot=500, seed=3)
    assert high2 - low2 < (high - low) / 2
    assert all(math.isnan(v) for v in bootstrap_ci(lcc, x[:2], y[:2]))


def test_kfold_mapping_predicts_each_item_from_the_other_folds():
    x = np.arange(20.0)
    y = 2 * x + 1
    y[7] = 100.0  # an outlier: an in-sample fit would bend towards it, the out-of-fold one cannot see it
    mapped = kfold_cubic(x, y, folds=5, seed=0)
    assert mapped[7] == pytest.approx(15.0, abs=1e-6)
    assert np.all(np.isfinite(mapped))
    assert np.all(np.isnan(kfold_cubic(x[:4], y[:4], folds=4)))  # 3 points per training fold: no cubic


def test_summary_stats_drops_missing_pairs_and_reports_every_metric():
    x, y = _random(1, n=30)
    x[[3, 4]] = np.nan
    got = summary_stats(x, y, n_boot=200, seed=0)
    assert list(got) == ["MSE", "LCC", "SRCC", "KTAU", "MSE_mapped", "LCC_mapped"]
    keep = np.isfinite(x)
    assert got["LCC"][0] == pytest.approx(sp.pearsonr(x[keep], y[keep]).statistic)
    assert all(v[3] == 28 for v in got.values())
    assert all(v[1] <= v[0] <= v[2] for k, v in got.items() if k != "MSE_mapped")
    # the mapping is fitted on the target's scale: far better MSE than the raw predictions of another scale
    assert got["MSE_mapped"][0] < summary_stats(x + 10, y, n_boot=10)["MSE"][0]
    assert all(math.isnan(v[0]) and v[3] == 2 for v in summary_stats(x[:2], y[:2]).values())
