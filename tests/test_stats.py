"""xlrm_lib.stats: exact McNemar against hand-computed binomial tails; bootstrap CIs."""

import math

import numpy as np
import pytest

from xlrm_lib.stats import (bootstrap_ci, category_mean_boot, ci_from_draws, mcnemar_exact, paired_bootstrap_diff,
                            paired_compare)


@pytest.mark.parametrize("b, c, expected", [
    (0, 6, 2 / 64),                    # 2 * 0.5**6 = 0.03125
    (6, 0, 2 / 64),                    # symmetric
    (3, 3, 1.0),                       # 2 * P[X <= 3 | n=6] = 2 * 42/64 > 1 -> capped at 1
    (1, 9, 2 * (1 + 10) / 1024),       # 2 * (C(10,0) + C(10,1)) / 2**10
    (0, 0, 1.0),                       # no discordant pairs: no evidence
    (2, 8, 2 * (1 + 10 + 45) / 1024),  # 0.109375
    (0, 1, 1.0),                       # 2 * 0.5 = 1
])
def test_mcnemar_exact(b, c, expected):
    assert mcnemar_exact(b, c) == pytest.approx(expected, abs=1e-12)


def test_mcnemar_b1_c9_literal():
    # the value a reader checks by hand: P[X<=1] for Binomial(10, 1/2) = 11/1024, doubled
    assert mcnemar_exact(1, 9) == pytest.approx(0.021484375, abs=1e-12)


def test_bootstrap_ci_contains_mean_and_is_deterministic():
    x = np.array([1, 0, 1, 1, 0, 1, 1, 1, 0, 1] * 5, dtype=float)  # mean 0.7
    lo, hi = bootstrap_ci(x, n_boot=2000, seed=3)
    assert lo < 0.7 < hi
    assert 0.5 < lo and hi < 0.85  # n=50: the half-width is about 1.96 * sqrt(.21/50) = 0.127
    assert bootstrap_ci(x, n_boot=2000, seed=3) == (lo, hi)
    assert bootstrap_ci(x, n_boot=2000, seed=4) != (lo, hi)


def test_bootstrap_ci_degenerate_inputs():
    assert bootstrap_ci(np.ones(10), seed=0) == (1.0, 1.0)
    lo, hi = bootstrap_ci([], seed=0)
    assert math.isnan(lo) and math.isnan(hi)


def test_paired_bootstrap_diff_identical_is_zero():
    a = np.array([1, 0, 1, 1, 0, 0, 1], dtype=float)
    out = paired_bootstrap_diff(a, a.copy(), seed=0)
    assert (out["diff"], out["ci_low"], out["ci_high"]) == (0.0, 0.0, 0.0)
    assert out["n"] == 7


def test_paired_bootstrap_diff_values_and_shape_check():
    a = np.array([1, 1, 1, 1, 0, 1, 1, 1], dtype=float)
    b = np.array([0, 1, 0, 1, 0, 0, 1, 0], dtype=float)
    out = paired_bootstrap_diff(a, b, seed=1)
    assert out["diff"] == pytest.approx(7 / 8 - 3 / 8)
    assert out["ci_low"] <= 0.5 <= out["ci_high"]
    with pytest.raises(ValueError, match="aligned"):
        paired_bootstrap_diff([1, 0], [1, 0, 1])


def test_paired_compare_counts_discordant_pairs():
    a = np.array([1, 1, 1, 0, 0, 1], dtype=bool)
    b = np.array([0, 0, 1, 0, 1, 1], dtype=bool)
    out = paired_compare(a, b, seed=0)
    assert (out["only_a"], out["only_b"]) == (2, 1)
    assert out["p_mcnemar"] == pytest.approx(1.0)  # 2 * P[X<=1 | n=3] = 2 * 4/8 -> 1
    assert out["diff"] == pytest.approx(4 / 6 - 3 / 6)


def test_category_mean_boot_weights_categories_equally():
    # category "a": 90 rows, accuracy 0.9; category "b": 10 rows, accuracy 0.1.
    # mean of category means = 0.5, while the row mean would be 0.82
    x = np.r_[np.ones(81), np.zeros(9), np.ones(1), np.zeros(9)]
    cats = np.array(["a"] * 90 + ["b"] * 10)
    draws = category_mean_boot(x, cats, n_boot=4000, seed=0)
    assert draws.shape == (4000,)
    assert draws.mean() == pytest.approx(0.5, abs=0.01)
    lo, hi = ci_from_draws(draws)
    assert lo < 0.5 < hi
    assert np.array_equal(draws, category_mean_boot(x, cats, n_boot=4000, seed=0))


def test_category_mean_boot_constant_categories_have_no_spread():
    # every category constant -> every draw equals the mean of category means exactly
    x = np.r_[np.ones(5), np.zeros(3), np.ones(4)]
    cats = np.array(["a"] * 5 + ["b"] * 3 + ["c"] * 4)
    draws = category_mean_boot(x, cats, n_boot=50, seed=0)
    assert np.allclose(draws, 2 / 3)
