"""Numeric cores of the scorecard statistics (arrays in, arrays out)."""

from __future__ import annotations

import logging
from collections.abc import Mapping

import numpy as np

logger = logging.getLogger(__name__)


def jensen_shannon(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Jensen-Shannon divergence (base 2, in [0, 1]) between distributions along the last axis."""
    p = np.asarray(p, dtype=float)
    q = np.asarray(q, dtype=float)
    p = p / np.clip(p.sum(axis=-1, keepdims=True), 1e-300, None)
    q = q / np.clip(q.sum(axis=-1, keepdims=True), 1e-300, None)
    m = 0.5 * (p + q)

    def kl(a, b):
        with np.errstate(divide="ignore", invalid="ignore"):
            t = np.where(a > 0, a * np.log2(a / np.where(b > 0, b, 1.0)), 0.0)
        return t.sum(axis=-1)

    return np.clip(0.5 * kl(p, m) + 0.5 * kl(q, m), 0.0, 1.0)


def bootstrap_weights(n: int, n_bootstrap: int, seed: int) -> np.ndarray:
    """Multinomial resampling counts (bootstrap replicates x n): row b says how often each cell is drawn."""
    rng = np.random.default_rng(seed)
    if n == 0:
        return np.zeros((n_bootstrap, 0))
    return rng.multinomial(n, np.full(n, 1.0 / n), size=n_bootstrap).astype(float)


def percentile_ci(
    values: np.ndarray,
    *,
    level: float = 0.95,
    estimate: float | None = None,
    bounds: tuple[float, float] = (-np.inf, np.inf),
) -> tuple[float, float]:
    """Percentile interval of bootstrap replicates (NaNs ignored; NaN when all are NaN).

    With ``estimate``, the interval is shifted by the bootstrap bias (``mean(replicates) - estimate``), which
    matters for pseudobulk correlations (resampled pseudobulks hold fewer distinct cells), then clipped to
    ``bounds``.
    """
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return float("nan"), float("nan")
    a = (1 - level) / 2
    lo, hi = float(np.quantile(v, a)), float(np.quantile(v, 1 - a))
    if estimate is not None and np.isfinite(estimate):
        bias = float(v.mean()) - float(estimate)
        lo, hi = lo - bias, hi - bias
    return float(np.clip(lo, *bounds)), float(np.clip(hi, *bounds))


def log_cpm(pseudobulk: np.ndarray) -> np.ndarray:
    """log1p counts per million of pseudobulks (rows)."""
    pb = np.asarray(pseudobulk, dtype=float)
    return np.log1p(pb / np.clip(pb.sum(axis=-1, keepdims=True), 1e-12, None) * 1e6)


def row_corr(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson correlation of each row of ``a`` with ``b`` (1-d) or the matching row of ``b``."""
    a = a - a.mean(axis=-1, keepdims=True)
    b = b - b.mean(axis=-1, keepdims=True)
    num = (a * b).sum(axis=-1)
    den = np.sqrt((a * a).sum(axis=-1) * (b * b).sum(axis=-1))
    return num / np.clip(den, 1e-300, None)


def similarity_ratio(r_query: np.ndarray, r_null: float) -> np.ndarray:
    """``min(1, (1 - r_null) / (1 - r_query))``: 1 = as close as two real donors."""
    d_q = np.clip(1.0 - np.asarray(r_query, dtype=float), 1e-9, None)
    d_n = max(1.0 - float(r_null), 1e-9)
    return np.minimum(1.0, d_n / d_q)


def correct_composition(observed: np.ndarray, confusion: np.ndarray) -> np.ndarray:
    """Adjusted classify-and-count: solve ``confusion.T @ p = observed`` for ``p >= 0``, ``sum(p) = 1``.

    ``confusion[i, j]`` is P(predicted j | true i), estimated on held-out reference cells.
    """
    from scipy.optimize import nnls

    obs = np.asarray(observed, dtype=float)
    a = np.vstack([confusion.T, np.full(confusion.shape[0], 10.0)])
    b = np.concatenate([obs, [10.0 * obs.sum()]])
    p, _ = nnls(a, b)
    return p / p.sum() if p.sum() > 0 else obs


def weighted_fidelity_index(
    parts: Mapping[str, np.ndarray | float], weights: Mapping[str, float]
) -> np.ndarray:
    """Weighted mean of the available (finite) parts; weights are renormalised per value."""
    num = 0.0
    den = 0.0
    for name, w in weights.items():
        v = np.asarray(parts.get(name, np.nan), dtype=float)
        ok = np.isfinite(v)
        num = num + np.where(ok, w * np.nan_to_num(v), 0.0)
        den = den + np.where(ok, w, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)
