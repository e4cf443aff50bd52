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


def ci_from_draws(draws, alpha: float = 0.05) -> tuple[float, float]:
    """Percentile interval of bootstrap draws. NaN draws (a resample without any item of some group's category:
    the statistic is undefined there) are set aside, so the interval is conditional on every stratum being
    drawn; NaN bounds when fewer than half the draws are defined (too few items to resample)."""
    draws = np.asarray(draws, dtype=float)
    kept = draws[np.isfinite(draws)]
    if kept.size == 0 or kept.size < draws.size / 2:
        return (math.nan, math.nan)
    return float(np.quantile(kept, alpha / 2)), float(np.quantile(kept, 1 - alpha / 2))
