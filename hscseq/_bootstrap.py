"""The one bootstrap helper: resampling weights and percentile CIs (used by score and fidelity)."""

from __future__ import annotations

import numpy as np


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
