"""Small statistics over seeds: mean ± std, 95% t-intervals (quantiles from scipy.stats.t) for means, paired and
unpaired ratios, log–log slopes, and how many seeds a paired comparison would need."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import stats as _st


def t975(df: float) -> float:
    """Two-sided 95% Student-t quantile with ``df`` degrees of freedom (NaN below 1)."""
    if not df >= 1:
        return math.nan
    return float(_st.t.ppf(0.975, df))


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
    """Unpaired: ratio of means mean(num)/mean(den) with a 95% interval (delta method on the log ratio).

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


def paired_ratio(pairs: Sequence[tuple[float, float]]) -> tuple[float, float, float, int, float]:
    """Paired: the geometric mean of the per-seed ratios num/den with its 95% t-interval (a one-sample t-interval
    on the per-seed log ratios, n − 1 degrees of freedom), n, and the log ratios' sample std. Pairs with a
    non-positive or non-finite value are left out; NaN bounds below two pairs."""
    logs = np.array([math.log(a / b) for a, b in pairs
                     if a is not None and b is not None and math.isfinite(a) and math.isfinite(b) and a > 0 and b > 0])
    n = int(logs.size)
    if n == 0:
        return math.nan, math.nan, math.nan, 0, math.nan
    mean = float(logs.mean())
    if n < 2:
        return math.exp(mean), math.nan, math.nan, n, math.nan
    sd = float(logs.std(ddof=1))
    half = t975(n - 1) * sd / math.sqrt(n)
    return math.exp(mean), math.exp(mean - half), math.exp(mean + half), n, sd


def seeds_needed(ratio: float, sd_log: float, bound: float = 1.0, cap: int = 10_000) -> int | None:
    """The smallest number of paired seeds whose 95% t-interval would clear ``bound`` if the per-seed log ratios kept
    their observed mean log(``ratio``) and std ``sd_log``: n with t(0.975, n−1)·sd/√n < |log ratio − log bound|.
    ``None`` when it cannot be said (no spread measured, or the mean sits on the bound); ``cap`` + 1 beyond cap."""
    if not (math.isfinite(ratio) and math.isfinite(sd_log) and ratio > 0 and sd_log >= 0):
        return None
    gap = abs(math.log(ratio) - math.log(bound))
    if gap == 0:
        return None
    if sd_log == 0:
        return 2
    n = max(2, math.ceil((1.96 * sd_log / gap) ** 2))
    while n <= cap and t975(n - 1) * sd_log / math.sqrt(n) >= gap:
        n += 1
    return n if n <= cap else cap + 1


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
