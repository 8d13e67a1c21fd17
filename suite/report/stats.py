"""Small statistics over seeds: which way is better, mean ± std, 95% intervals for means and ratios of means.

No SciPy: Student-t quantiles come from a table (two-sided 95%, df 1–30, then the normal 1.96).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

#: substrings of metric names where a higher value is better; every other metric is lower-is-better
#: (losses, errors, gaps, times, memory, FLOPs)
HIGHER_IS_BETTER = ("accuracy", "cosine", "score", "f1", "auc", "per_second", "throughput")

_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
         2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042)


def higher_is_better(metric: str) -> bool:
    return any(word in metric for word in HIGHER_IS_BETTER)


def t975(df: float) -> float:
    """Two-sided 95% Student-t quantile (df rounded down; ≥ 31 → 1.96)."""
    if not df >= 1:
        return math.nan
    df = int(df)
    return _T975[df - 1] if df <= len(_T975) else 1.96


def finite(values: Sequence[float]) -> np.ndarray:
    arr = np.asarray(values, dtype=float)
    return arr[np.isfinite(arr)]


def mean_std(values: Sequence[float]) -> tuple[float, float, int]:
    """Mean, sample standard deviation (NaN for one value) and count of the finite values."""
    arr = finite(values)
    if arr.size == 0:
        return math.nan, math.nan, 0
    std = float(arr.std(ddof=1)) if arr.size > 1 else math.nan
    return float(arr.mean()), std, int(arr.size)


def mean_interval(values: Sequence[float]) -> tuple[float, float, float, int]:
    """Mean and its 95% t-interval (NaN bounds with fewer than two values)."""
    mean, std, n = mean_std(values)
    if n < 2:
        return mean, math.nan, math.nan, n
    half = t975(n - 1) * std / math.sqrt(n)
    return mean, mean - half, mean + half, n


def ratio_interval(num: Sequence[float], den: Sequence[float]) -> tuple[float, float, float, int, int]:
    """Ratio of means mean(num)/mean(den) with a 95% interval (delta method on the log ratio).

    se(log r) = sqrt(s_a²/(n_a·m_a²) + s_b²/(n_b·m_b²)); the quantile uses df = min(n_a, n_b) − 1 (conservative).
    Needs positive means and at least two values on each side; otherwise the bounds are NaN.
    """
    a, b = finite(num), finite(den)
    na, nb = int(a.size), int(b.size)
    if na == 0 or nb == 0:
        return math.nan, math.nan, math.nan, na, nb
    ma, mb = float(a.mean()), float(b.mean())
    if mb == 0:
        return math.nan, math.nan, math.nan, na, nb
    ratio = ma / mb
    if na < 2 or nb < 2 or ma <= 0 or mb <= 0:
        return ratio, math.nan, math.nan, na, nb
    se = math.sqrt(a.var(ddof=1) / (na * ma**2) + b.var(ddof=1) / (nb * mb**2))
    half = t975(min(na, nb) - 1) * se
    return ratio, ratio * math.exp(-half), ratio * math.exp(half), na, nb


def loglog_slope(x: Sequence[float], y: Sequence[float]) -> tuple[float, float, float, int]:
    """Least-squares slope of log y on log x with its 95% interval; needs three distinct x (else NaN bounds)."""
    xs, ys = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    keep = np.isfinite(xs) & np.isfinite(ys) & (xs > 0) & (ys > 0)
    lx, ly = np.log(xs[keep]), np.log(ys[keep])
    n = int(lx.size)
    if n < 2 or np.unique(lx).size < 2:
        return math.nan, math.nan, math.nan, n
    slope, intercept = np.polyfit(lx, ly, 1)
    if np.unique(lx).size < 3 or n < 3:
        return float(slope), math.nan, math.nan, n
    resid = ly - (slope * lx + intercept)
    se = math.sqrt(float(resid @ resid) / (n - 2) / float(((lx - lx.mean()) ** 2).sum()))
    half = t975(n - 2) * se
    return float(slope), float(slope - half), float(slope + half), n
