"""Uncertainty for accuracies and paired comparisons: percentile bootstrap and exact McNemar.

All functions take ``seed`` explicitly; the same inputs give the same intervals.

>>> round(mcnemar_exact(b=0, c=6), 4)   # 6 discordant pairs all favour one model: 2 * 0.5**6
0.0312
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


def paired_bootstrap_diff(a, b, *, n_boot: int = 2000, alpha: float = 0.05, seed: int = 0) -> dict:
    """Mean(a) - mean(b) on the SAME items, with a CI from resampling items (rows) jointly.

    ``a`` and ``b`` are aligned per item (e.g. correctness of two RMs on one language's pairs).
    """
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.shape != b.shape:
        raise ValueError(f"paired comparison needs aligned items: got {a.shape} and {b.shape}")
    d = a - b
    lo, hi = bootstrap_ci(d, n_boot=n_boot, alpha=alpha, seed=seed)
    return {"diff": float(d.mean()) if d.size else math.nan, "ci_low": lo, "ci_high": hi, "n": int(d.size)}


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value from the discordant counts.

    ``b`` = items only model A gets right, ``c`` = items only model B gets right. Under H0 the discordant
    items split Binomial(b + c, 1/2); p = min(1, 2 * P[X <= min(b, c)]).
    """
    n = b + c
    if n == 0:
        return 1.0
    k = min(b, c)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2**n
    return min(1.0, 2 * tail)


def paired_compare(a, b, *, n_boot: int = 2000, seed: int = 0) -> dict:
    """Difference of accuracies of two RMs on the same items, with bootstrap CI and McNemar p-value."""
    a, b = np.asarray(a, dtype=bool), np.asarray(b, dtype=bool)
    out = paired_bootstrap_diff(a, b, n_boot=n_boot, seed=seed)
    only_a, only_b = int((a & ~b).sum()), int((~a & b).sum())
    out.update(only_a=only_a, only_b=only_b, p_mcnemar=mcnemar_exact(only_a, only_b))
    return out


def category_mean_boot(values, categories, *, n_boot: int = 2000, seed: int = 0) -> np.ndarray:
    """Bootstrap draws ``(n_boot,)`` of the mean over categories of per-category means.

    RewardBench's overall score is the mean of its category scores, so items are resampled within their
    category (a stratified bootstrap) and each category keeps its weight.
    """
    x = np.asarray(values, dtype=float)
    cats = np.asarray(categories)
    rng = np.random.default_rng(seed)
    draws = []
    for c in sorted(set(cats.tolist())):
        xc = x[cats == c]
        draws.append(xc[rng.integers(0, xc.size, size=(n_boot, xc.size))].mean(axis=1))
    return np.mean(draws, axis=0)


def ci_from_draws(draws, alpha: float = 0.05) -> tuple[float, float]:
    return float(np.quantile(draws, alpha / 2)), float(np.quantile(draws, 1 - alpha / 2))
