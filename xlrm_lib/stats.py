"""Uncertainty for accuracies and paired comparisons: percentile bootstrap over items (stratified by category,
an item's rows resampled together), and paired sign-flip tests of the very statistic reported.

All functions take ``seed`` explicitly; the same inputs give the same intervals.

>>> stratified_mean([1, 0, 1, 1], ["chat", "chat", "safety", "safety"], ["a", "b", "c", "d"])  # (1/2 + 2/2) / 2
0.75
"""

from __future__ import annotations

import math

import numpy as np


def bootstrap_ci(values, *, n_boot: int = 2000, alpha: float = 0.05, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean of ``values`` (n,) (e.g. 0/1 correctness)."""
    x = np.asarray(values, dtype=float)
    if x.size == 0:
        return (math.nan, math.nan)
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, x.size, size=(n_boot, x.size))].mean(axis=1)
    return float(np.quantile(means, alpha / 2)), float(np.quantile(means, 1 - alpha / 2))


def _item_sums(values, categories, ids, groups, weights) -> dict:
    """Per category: ``(number of items, {group: (S, W)})`` with ``S``/``W`` the per-item sums of weight x value
    and of weight (items sorted by id, so nothing depends on the order of the rows)."""
    x = np.asarray(values, dtype=float)
    cats, ids = np.asarray(categories).astype(str), np.asarray(ids).astype(str)
    g = np.zeros(x.size, dtype=int).astype(str) if groups is None else np.asarray(groups).astype(str)
    w = np.ones(x.size) if weights is None else np.asarray(weights, dtype=float)
    if not (x.shape == cats.shape == ids.shape == g.shape == w.shape) or x.ndim != 1:
        raise ValueError(f"values, categories, ids, groups and weights must be aligned 1-d arrays; got shapes "
                         f"{x.shape}, {cats.shape}, {ids.shape}, {g.shape}, {w.shape}")
    out = {}
    for c in sorted(set(cats.tolist())):
        m = cats == c
        uid, inv = np.unique(ids[m], return_inverse=True)
        xm, wm, gm = x[m], w[m], g[m]
        out[c] = (uid.size, {gg: (np.bincount(inv[gm == gg], weights=(wm * xm)[gm == gg], minlength=uid.size),
                                  np.bincount(inv[gm == gg], weights=wm[gm == gg], minlength=uid.size))
                             for gg in sorted(set(gm.tolist()))})
    return out


def _mean_of_means(per_group: dict) -> np.ndarray:
    # the mean over groups of the mean over their categories; a draw that holds no item of some category of a
    # group (a language with few items there) is NaN: leaving that category out would make it another statistic
    # (a 3-category mean), which widened intervals of constant values; ci_from_draws sets such draws aside
    return np.mean([np.mean(v, axis=0) for v in per_group.values()], axis=0)


def stratified_boot(values, categories, ids, *, groups=None, weights=None, n_boot: int = 2000,
                    seed: int = 0) -> np.ndarray:
    """Bootstrap draws ``(n_boot,)`` of the mean over ``groups`` of the mean over categories of the weighted
    mean of ``values`` per category.

    RewardBench's overall score is the mean of its category scores, so items are resampled within their
    category (a stratified bootstrap) and each category keeps its weight. The unit resampled is the ITEM
    (``ids``): all rows of a drawn item come along, in every group (its translations, when the groups are
    languages) and every repeat (several seeds scoring it). Rows of one item are not independent, and
    resampling them as if they were gives intervals that are too narrow. Nothing depends on the rows' order.
    """
    rng = np.random.default_rng(seed)
    per_group: dict[str, list] = {}
    for n, sums in _item_sums(values, categories, ids, groups, weights).values():
        draw = rng.integers(0, n, size=(n_boot, n))  # the items of each resample, the same for every group
        for gg, (S, W) in sums.items():
            with np.errstate(invalid="ignore", divide="ignore"):
                per_group.setdefault(gg, []).append(S[draw].sum(axis=1) / W[draw].sum(axis=1))
    return _mean_of_means(per_group)  # NaN where a draw misses all of some group's items of a category


def stratified_mean(values, categories, ids, *, groups=None, weights=None) -> float:
    """The statistic :func:`stratified_boot` resamples, on the data as they are."""
    per_group: dict[str, list] = {}
    for _, sums in _item_sums(values, categories, ids, groups, weights).values():
        for gg, (S, W) in sums.items():
            per_group.setdefault(gg, []).append(np.array([S.sum() / W.sum()]))
    return float(_mean_of_means(per_group)[0])


def signflip_p(diffs, categories, ids, *, groups=None, weights=None, n_perm: int = 2000, seed: int = 0) -> float:
    """Two-sided p-value of a paired randomisation test of :func:`stratified_mean` of per-row differences
    (RM a minus RM b): under H0 the two RMs are exchangeable on each item, so each item's differences (all its
    rows: every language, every seed) flip sign together. It tests the very statistic reported, weighted as it
    is (a McNemar test counts items and so weights categories by their size: it can disagree in sign).
    ``p = (1 + #{|T*| >= |T|}) / (1 + n_perm)``.
    """
    rng = np.random.default_rng(seed)
    flipped: dict[str, list] = {}
    for n, sums in _item_sums(diffs, categories, ids, groups, weights).values():
        signs = rng.choice(np.array([-1.0, 1.0]), size=(n_perm, n))
        for gg, (S, W) in sums.items():
            flipped.setdefault(gg, []).append((signs @ S) / W.sum())
    t = abs(stratified_mean(diffs, categories, ids, groups=groups, weights=weights))
    return float((1 + np.sum(np.abs(_mean_of_means(flipped)) >= t - 1e-12)) / (1 + n_perm))


def edge_interval(value: float, n_items: int, alpha: float = 0.05) -> tuple[float, float]:
    """Clopper-Pearson's exact interval for an accuracy of exactly 0 or 1 over ``n_items`` items, where a
    percentile bootstrap cannot vary (every resample is all right, or all wrong) and would give an interval of no
    width: ``[(alpha/2)^(1/n), 1]`` for 1, its mirror for 0.

    >>> [round(b, 3) for b in edge_interval(1.0, 24)]  # 24 of 24 items right
    [0.858, 1.0]
    """
    if value not in (0.0, 1.0) or n_items < 1:
        raise ValueError(f"edge_interval takes an accuracy of 0 or 1 over >= 1 item; got {value!r} over {n_items}")
    bound = (alpha / 2) ** (1 / n_items)
    return (bound, 1.0) if value == 1.0 else (0.0, 1.0 - bound)


def holm(p_values) -> np.ndarray:
    """Holm's step-down adjustment of a family of p-values (controls the chance of any false rejection among
    them, without assuming they are independent): the k-th smallest is multiplied by ``m - k + 1``, then made
    non-decreasing in that order and capped at 1.

    >>> holm([0.01, 0.04, 0.03]).tolist()  # 0.01 x 3; 0.03 x 2; 0.04 x 1, raised to 0.06
    [0.03, 0.06, 0.06]
    """
    p = np.asarray(p_values, dtype=float)
    order = np.argsort(p, kind="stable")
    steps = np.maximum.accumulate(p[order] * (p.size - np.arange(p.size)))
    out = np.empty_like(p)
    out[order] = np.minimum(steps, 1.0)
    return out


def detectable_difference(ci_low: float, ci_high: float, *, power: float = 0.8, alpha: float = 0.05) -> float:
    """The smallest true difference a two-sided test at ``alpha`` would find with probability ``power``, from the
    width of a ``1 - alpha`` interval of the estimate (read as ``2 z SE``): ``(z_{1-alpha/2} + z_power) SE``.
    A difference below it is not evidence either way: the items are too few to tell it from noise.

    >>> round(detectable_difference(-0.037, 0.070), 4)  # 10.7 points wide: 7.65 points detectable
    0.0765
    """
    from statistics import NormalDist

    z = NormalDist().inv_cdf
    return (z(1 - alpha / 2) + z(power)) * (ci_high - ci_low) / (2 * z(1 - alpha / 2))


def ci_from_draws(draws, alpha: float = 0.05) -> tuple[float, float]:
    """Percentile interval of bootstrap draws. NaN draws (a resample without any item of some group's category:
    the statistic is undefined there) are set aside, so the interval is conditional on every stratum being
    drawn; NaN bounds when fewer than half the draws are defined (too few items to resample)."""
    draws = np.asarray(draws, dtype=float)
    kept = draws[np.isfinite(draws)]
    if kept.size == 0 or kept.size < draws.size / 2:
        return (math.nan, math.nan)
    return float(np.quantile(kept, alpha / 2)), float(np.quantile(kept, 1 - alpha / 2))
