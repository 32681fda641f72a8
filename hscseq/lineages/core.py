"""Numeric cores of the lineages stage (numbers and arrays in, numbers and arrays out).

Exact binomial CIs, the presence test against mapping noise and its detection limit, the per-lineage call,
the replicate-level trend (OLS slope on time) and the Benjamini-Hochberg adjustment.
"""

from __future__ import annotations

import re

import numpy as np
from scipy import stats


def clopper_pearson(k: np.ndarray, n: np.ndarray, alpha: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """Exact binomial (1 - alpha) CI of k / n (vectorised; n = 0 gives NaN)."""
    k = np.asarray(k, dtype=float)
    n = np.asarray(n, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        lo = np.where(k > 0, stats.beta.ppf(alpha / 2, k, n - k + 1), 0.0)
        hi = np.where(k < n, stats.beta.ppf(1 - alpha / 2, k + 1, n - k), 1.0)
    bad = n <= 0
    return np.where(bad, np.nan, lo), np.where(bad, np.nan, hi)


def presence_pvalue(k: np.ndarray, n: np.ndarray, background_rate: float) -> np.ndarray:
    """One-sided binomial p that ``k`` of ``n`` cells arise from mis-mapping at ``background_rate``."""
    k = np.asarray(k)
    return np.where(k > 0, stats.binom.sf(k - 1, n, background_rate), 1.0)


def critical_count(n: int, *, background_rate: float, alpha: float, min_cells: int) -> int:
    """Smallest count called present in a sample of ``n`` cells."""
    k = np.arange(0, n + 1)
    ok = (k >= min_cells) & (presence_pvalue(k, np.full_like(k, n), background_rate) < alpha)
    return int(k[ok][0]) if ok.any() else n + 1


def detection_limit(
    n: int, *, background_rate: float, alpha: float, min_cells: int, power: float = 0.8
) -> float:
    """Smallest true fraction called present with probability ``power`` among ``n`` cells (NaN if none)."""
    kc = critical_count(n, background_rate=background_rate, alpha=alpha, min_cells=min_cells)
    if n <= 0 or kc > n:
        return np.nan
    lo, hi = 0.0, 1.0
    for _ in range(60):  # P(X >= kc | n, f) increases with f: bisection
        mid = (lo + hi) / 2
        if stats.binom.sf(kc - 1, n, mid) >= power:
            hi = mid
        else:
            lo = mid
    return hi


def presence_status(
    k: int,
    n: int,
    *,
    expected_fraction: float,
    invivo_fraction: float = np.nan,
    background_rate: float = 0.005,
    alpha: float = 0.05,
    min_cells: int = 3,
    power: float = 0.8,
) -> tuple[str, float, float]:
    """Call one lineage in one sample: (status, presence p-value, detection limit); see the module doc."""
    p = float(presence_pvalue(np.array([k]), np.array([n]), background_rate)[0])
    limit = detection_limit(n, background_rate=background_rate, alpha=alpha, min_cells=min_cells, power=power)
    if k >= min_cells and p < alpha:
        status = "present"
        if np.isfinite(invivo_fraction) and 0 < invivo_fraction < 1:
            p_ratio = stats.binomtest(int(k), int(n), invivo_fraction).pvalue
            if p_ratio < alpha:
                status = "over-represented" if k / n > invivo_fraction else "under-represented"
        return status, p, limit
    if np.isfinite(limit) and limit <= expected_fraction:
        return "absent", p, limit
    return "undetermined", p, limit


def linear_trend(values: np.ndarray, t: np.ndarray) -> tuple[float, float, float]:
    """OLS slope of per-unit values on time, its t statistic and two-sided p (n_units - 2 df).

    One value per replicate unit (organoid), so the residual scatter between organoids sets the standard
    error. Returns (0, 0, 1) for a constant series and NaNs with fewer than 3 units or 2 distinct times.
    """
    v, t = np.asarray(values, dtype=float), np.asarray(t, dtype=float)
    ok = np.isfinite(v) & np.isfinite(t)
    v, t = v[ok], t[ok]
    if len(v) < 3 or len(np.unique(t)) < 2:
        return np.nan, np.nan, np.nan
    tc = t - t.mean()
    sxx = float(tc @ tc)
    slope = float(tc @ (v - v.mean()) / sxx)
    resid = v - v.mean() - slope * tc
    df = len(v) - 2
    s2 = float(resid @ resid) / df
    if s2 <= 1e-30:
        return (slope, np.inf * np.sign(slope), 0.0) if abs(slope) > 1e-15 else (0.0, 0.0, 1.0)
    tstat = slope / np.sqrt(s2 / sxx)
    return slope, float(tstat), float(2 * stats.t.sf(abs(tstat), df))


def bh_adjust(p: np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (NaN stays NaN; scipy's ``false_discovery_control``)."""
    p = np.asarray(p, dtype=float)
    out = np.full_like(p, np.nan)
    ok = np.isfinite(p)
    if ok.any():
        out[ok] = stats.false_discovery_control(p[ok], method="bh")
    return out


def timepoint_value(timepoint: str) -> float:
    """The number in a timepoint label (``week4`` -> 4.0, ``d10`` -> 10.0); NaN without one."""
    m = re.search(r"[-+]?\d+(\.\d+)?", str(timepoint))
    return float(m.group()) if m else np.nan
