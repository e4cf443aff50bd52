"""xlrm_lib.stats: bootstrap CIs over items (stratified, weighted); sign-flip tests, against hand computations."""

import math

import numpy as np
import pytest

from xlrm_lib.stats import bootstrap_ci, ci_from_draws, signflip_p, stratified_boot, stratified_mean


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


def test_stratified_boot_weights_categories_equally():
    # category "a": 90 items, accuracy 0.9; category "b": 10 items, accuracy 0.1.
    # mean of category means = 0.5, while the row mean would be 0.82
    x = np.r_[np.ones(81), np.zeros(9), np.ones(1), np.zeros(9)]
    cats = np.array(["a"] * 90 + ["b"] * 10)
    ids = np.arange(100)
    draws = stratified_boot(x, cats, ids, n_boot=4000, seed=0)
    assert draws.shape == (4000,)
    assert draws.mean() == pytest.approx(0.5, abs=0.01) and stratified_mean(x, cats, ids) == pytest.approx(0.5)
    lo, hi = ci_from_draws(draws)
    assert lo < 0.5 < hi
    assert np.array_equal(draws, stratified_boot(x, cats, ids, n_boot=4000, seed=0))


def test_stratified_boot_constant_categories_have_no_spread():
    # every category constant -> every draw equals the mean of category means exactly
    x = np.r_[np.ones(5), np.zeros(3), np.ones(4)]
    cats = np.array(["a"] * 5 + ["b"] * 3 + ["c"] * 4)
    draws = stratified_boot(x, cats, np.arange(12), n_boot=50, seed=0)
    assert np.allclose(draws, 2 / 3)


def test_stratified_boot_resamples_items_not_rows_and_ignores_row_order():
    rng = np.random.default_rng(1)
    x, cats, ids = rng.integers(0, 2, 60).astype(float), np.repeat(["a", "b"], 30), np.arange(60)
    one = stratified_boot(x, cats, ids, n_boot=500, seed=3)
    # the same items scored three times (three seeds agreeing): the same items, so the same draws
    three = stratified_boot(np.tile(x, 3), np.tile(cats, 3), np.tile(ids, 3), n_boot=500, seed=3)
    np.testing.assert_allclose(three, one)
    perm = rng.permutation(60)  # rows in another order: the same draws
    np.testing.assert_allclose(stratified_boot(x[perm], cats[perm], ids[perm], n_boot=500, seed=3), one)


def test_an_item_is_drawn_and_flipped_in_every_group_at_once():
    # two languages whose per-item differences are identical: the mean over languages must vary exactly as
    # one language does (independent draws per language would shrink the spread by about sqrt(2))
    rng = np.random.default_rng(2)
    d = rng.choice([-1.0, 0.0, 1.0], 80)
    cats, ids = np.repeat(["a", "b"], 40), np.arange(80)
    single = stratified_boot(d, cats, ids, n_boot=400, seed=5)
    joint = stratified_boot(np.r_[d, d], np.r_[cats, cats], np.r_[ids, ids], groups=np.repeat(["ko", "zh"], 80),
                            n_boot=400, seed=5)
    np.testing.assert_allclose(joint, single)
    # and the sign-flip test flips an item in every language at once: the one-language test (independent flips
    # per language would halve the spread and the p-value: 0.23 vs 0.45)
    p_single = signflip_p(d, cats, ids, n_perm=1000, seed=5)
    assert signflip_p(np.r_[d, d], np.r_[cats, cats], np.r_[ids, ids], groups=np.repeat(["ko", "zh"], 80),
                      n_perm=1000, seed=5) == p_single and 0.1 < p_single < 0.9
    # a language missing an item just skips it: the statistic is the mean of the two languages' means
    keep = np.r_[np.ones(80, bool), ids != 0]
    g = np.repeat(["ko", "zh"], 80)[keep]
    got = stratified_mean(np.r_[d, d][keep], np.r_[cats, cats][keep], np.r_[ids, ids][keep], groups=g)
    expected = (stratified_mean(d, cats, ids) + stratified_mean(d[1:], cats[1:], ids[1:])) / 2
    assert got == pytest.approx(expected)


def test_stratified_mean_with_row_weights_hand_computed():
    # category "r": rows [1, 0, 0] with weights [2, 1, 1] -> 2/4; category "c": [1] -> 1; overall (0.5 + 1) / 2
    x, cats, w = np.array([1.0, 0, 0, 1]), np.array(["r", "r", "r", "c"]), np.array([2.0, 1, 1, 1])
    assert stratified_mean(x, cats, np.arange(4), weights=w) == pytest.approx(0.75)
    assert np.allclose(stratified_boot(np.ones(4), cats, np.arange(4), weights=w, n_boot=20), 1.0)
    with pytest.raises(ValueError, match="aligned 1-d arrays"):
        stratified_boot(x, cats[:3], np.arange(4))


def test_signflip_p_hand_computed_and_tests_the_weighted_statistic():
    # 3 items, all differences +1: of the 8 sign patterns only all-(+) and all-(-) reach |T| = 1 -> p ~ 2/8
    d, cats, ids = np.ones(3), np.array(["a"] * 3), np.arange(3)
    assert signflip_p(d, cats, ids, n_perm=20000, seed=0) == pytest.approx(0.25, abs=0.01)
    assert signflip_p(np.zeros(3), cats, ids, n_perm=100) == 1.0  # no difference: every flip is as extreme, p = 1
    # category-weighted: "a" has 1 item at +1, "b" has 9 items at -1/9 each on average (one -1, eight 0)
    # T = (1 + (-1/9)) / 2 > 0 even though one item favours each side
    d2 = np.r_[1.0, -1.0, np.zeros(8)]
    c2 = np.array(["a"] + ["b"] * 9)
    assert stratified_mean(d2, c2, np.arange(10)) == pytest.approx((1 - 1 / 9) / 2)
    p = signflip_p(d2, c2, np.arange(10), n_perm=4000, seed=1)
    assert 0.4 < p <= 1.0  # two items with nonzero differences: no evidence either way


def test_an_interval_over_groups_survives_draws_without_a_groups_item():
    # 60 items in one language, 3 in the other: some draws hold none of the small language's items
    rng = np.random.default_rng(0)
    d = np.r_[rng.choice([-1.0, 0.0, 1.0], 60), [1.0, 0.0, -1.0]]
    ids = np.r_[np.arange(60), [100, 101, 102]].astype(str)
    groups = np.array(["ko"] * 60 + ["zh"] * 3)
    draws = stratified_boot(d, np.array(["a"] * 63), ids, groups=groups, n_boot=500)
    # a draw without zh's items has no zh mean: it is NaN (about (60/63)**63 = 4.6% of draws), set aside
    missed = np.isnan(draws)
    assert 0 < missed.sum() < 0.1 * draws.size
    lo, hi = ci_from_draws(draws)
    assert np.isfinite([lo, hi]).all() and lo < stratified_mean(d, np.array(["a"] * 63), ids, groups=groups) < hi


def test_a_draw_that_misses_a_category_of_a_group_does_not_change_the_statistic():
    # ko: 24 chat items (difference 0) and 24 safety (1); zh: one chat item (-1) and 24 safety (1). Draws without
    # zh's chat item used to average zh's safety alone: a 3-category mean, so constant values got an interval
    # (0.25, 0.75) around 0.25. Such draws are undefined now, set aside: every kept draw is exactly 0.25
    ids = np.r_[[f"c{i}" for i in range(24)], [f"s{i}" for i in range(24)], ["c0"], [f"s{i}" for i in range(24)]]
    cats = np.array(["chat"] * 24 + ["safety"] * 24 + ["chat"] + ["safety"] * 24)
    d = np.r_[np.zeros(24), np.ones(24), [-1.0], np.ones(24)]
    groups = np.array(["ko"] * 48 + ["zh"] * 25)
    assert stratified_mean(d, cats, ids, groups=groups) == pytest.approx(0.25)
    draws = stratified_boot(d, cats, ids, groups=groups, n_boot=2000)
    assert np.allclose(draws[np.isfinite(draws)], 0.25)
    assert ci_from_draws(draws) == pytest.approx((0.25, 0.25))


def test_an_interval_needs_most_draws_defined():
    assert np.isnan(ci_from_draws(np.r_[np.full(6, np.nan), np.arange(4.0)])).all()  # 4 of 10: too few
    assert ci_from_draws(np.r_[np.nan, np.arange(9.0)]) == pytest.approx((0.2, 7.8))


# ----------------------------------------------------------------------------- added by mutation testing
def test_bootstrap_ci_is_the_two_sided_percentile_interval_of_its_draws():
    # the resampled means of the very draws bootstrap_ci makes (rng.integers over rows); a 95% interval cuts 2.5%
    # off each side: quantiles 0.025 and 0.975, not 0.05 and 0.95 (a 90% interval)
    x = np.array([0.0, 1, 1, 0, 1, 1, 1, 0, 1, 1])
    means = x[np.random.default_rng(7).integers(0, 10, size=(500, 10))].mean(1)
    assert bootstrap_ci(x, n_boot=500, seed=7) == pytest.approx(tuple(np.quantile(means, [0.025, 0.975])))
    assert np.quantile(means, 0.05) > np.quantile(means, 0.025)  # the two readings differ on these draws


def test_an_interval_of_draws_exactly_half_defined_is_given():
    # "NaN bounds when FEWER than half the draws are defined": 5 of 10 is not fewer -> percentiles of 0..4
    assert ci_from_draws(np.r_[np.full(5, np.nan), np.arange(5.0)]) == pytest.approx((0.1, 3.9))


def test_signflip_p_is_never_zero():
    # 30 items all +1: no sign pattern but all-(+)/all-(-) (2 in 2^30) reaches |T| = 1, so none of 99 flips does:
    # p = (1 + 0) / (1 + 99), not 0 / 99
    assert signflip_p(np.ones(30), np.array(["a"] * 30), np.arange(30), n_perm=99, seed=0) == pytest.approx(0.01)


def test_signflip_p_of_an_item_scored_by_several_seeds_is_that_of_one_seed():
    # three seeds that agree are the same evidence: the flipped statistic divides by the total weight (30 rows),
    # as the observed one does; dividing by the item count (10) tripled every |T*| and p went from ~0.002 to ~0.3
    d, cats, ids = np.ones(10), np.array(["a"] * 10), np.arange(10)
    one = signflip_p(d, cats, ids, n_perm=1000, seed=2)
    assert signflip_p(np.tile(d, 3), np.tile(cats, 3), np.tile(ids, 3), n_perm=1000, seed=2) == one
    assert one < 0.01  # only all-(+) / all-(-) of 10 items (2 in 1024) reach |T| = 1


def test_holm_caps_adjusted_p_values_at_one():
    from xlrm_lib.stats import holm

    # 0.6 x 2 = 1.2 and max(1.2, 0.9 x 1): both above 1, so both are 1 (a probability)
    assert holm([0.6, 0.9]).tolist() == [1.0, 1.0]


def test_edge_interval_of_zero_mirrors_one_and_needs_an_item():
    from xlrm_lib.stats import edge_interval

    assert edge_interval(0.0, 1) == pytest.approx((0.0, 0.975))  # 0 of 1: [0, 1 - 0.025]
    assert edge_interval(1.0, 1) == pytest.approx((0.025, 1.0))
    with pytest.raises(ValueError, match="over >= 1 item; got 0.0 over 0"):
        edge_interval(0.0, 0)
