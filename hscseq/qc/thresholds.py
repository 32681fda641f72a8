"""Per-sample adaptive thresholds (median +/- k MADs) and Otsu's threshold of a score distribution.

Numeric cores: :func:`mad_bounds`, :func:`otsu_threshold`; AnnData wrapper: :func:`adaptive_thresholds`.
"""

from __future__ import annotations

import logging

import anndata as ad
import numpy as np

from hscseq._utils import input_error
from hscseq.qc.settings import DEFAULT_SETTINGS as _D

logger = logging.getLogger(__name__)

#: MAD scaled to be a consistent estimator of the standard deviation of normal data (R's ``mad()``, as in
#: scater's ``isOutlier``, where the "k MADs" QC rule comes from).
MAD_SCALE = 1.4826


def mad_bounds(values: np.ndarray, n_mads: float) -> tuple[float, float]:
    """``median -/+ n_mads * MAD`` of ``values`` (MAD scaled by :data:`MAD_SCALE`; NaNs ignored).

    Parameters
    ----------
    values
        One value per cell (e.g. log1p counts).
    n_mads
        Number of MADs on each side.

    Returns
    -------
    Lower and upper bound.
    """
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return float("nan"), float("nan")
    med = float(np.median(v))
    mad = MAD_SCALE * float(np.median(np.abs(v - med)))
    return med - n_mads * mad, med + n_mads * mad


def adaptive_thresholds(
    adata: ad.AnnData,
    *,
    n_mads: float = _D.n_mads,
    mito_n_mads: float = _D.mito_n_mads,
    mito_max_pct: float = _D.mito_max_pct,
    mito_scale: str = _D.mito_scale,
    min_counts: float | None = _D.min_counts,
    max_counts: float | None = _D.max_counts,
    min_genes: float | None = _D.min_genes,
    max_genes: float | None = _D.max_genes,
    max_pct_mt: float | None = _D.max_pct_mt,
    key_added: str = "qc_thresholds",
    copy: bool = False,
) -> ad.AnnData | None:
    """Per-sample adaptive thresholds and a flag per cell and criterion.

    Counts and genes: ``exp(median(log1p x) -/+ n_mads * MAD(log1p x)) - 1``. Mitochondrial %:
    ``min(median + mito_n_mads * MAD, mito_max_pct)``, by default on the ``log1p`` scale like counts and
    genes (``mito_scale="log"``): the % mito of intact cells is right-skewed (a proportion of a few counts),
    so on the linear scale median + 3 MADs cuts into the intact cells' upper tail (on the simulator ~0.7% of
    intact cells, as many as half the planted damaged cells in a small sample), while damaged cells sit
    far above either bound. Any explicit ``min_*``/``max_*`` value replaces the adaptive one. Run
    :func:`qc_metrics` first.

    Adds boolean ``obs`` columns ``qc_low_counts``, ``qc_high_counts``, ``qc_low_genes``, ``qc_high_genes``,
    ``qc_high_pct_mt`` (True = fails), and ``uns[key_added]`` with ``thresholds`` (the values used),
    ``source`` (``"adaptive"`` or ``"config"`` per threshold) and ``params``.

    Parameters
    ----------
    adata
        Annotated with :func:`qc_metrics`.
    n_mads
        MADs on log counts and log genes (both sides).
    mito_n_mads
        MADs above the median % mitochondrial counts.
    mito_max_pct
        Absolute cap of the mitochondrial threshold (%).
    mito_scale
        ``"log"`` (median and MAD of ``log1p`` % mito) or ``"linear"`` (of % mito itself).
    min_counts
        Fixed lower bound on total counts (replaces the adaptive one).
    max_counts
        Fixed upper bound on total counts.
    min_genes
        Fixed lower bound on detected genes.
    max_genes
        Fixed upper bound on detected genes.
    max_pct_mt
        Fixed upper bound on % mitochondrial counts (replaces adaptive value and cap).
    key_added
        ``uns`` key of the thresholds.
    copy
        Return a modified copy instead of writing in place.

    Returns
    -------
    The modified copy if ``copy=True``, else ``None``.
    """
    missing = [c for c in ("total_counts", "n_genes_by_counts", "pct_counts_mt") if c not in adata.obs]
    if missing:
        raise input_error(f"obs lacks {missing}; run hscseq.qc.qc_metrics first.")
    adata = adata.copy() if copy else adata
    counts = adata.obs["total_counts"].to_numpy(dtype=np.float64)
    genes = adata.obs["n_genes_by_counts"].to_numpy(dtype=np.float64)
    mt = adata.obs["pct_counts_mt"].to_numpy(dtype=np.float64)
    lo_c, hi_c = (float(np.expm1(b)) for b in mad_bounds(np.log1p(counts), n_mads))
    lo_g, hi_g = (float(np.expm1(b)) for b in mad_bounds(np.log1p(genes), n_mads))
    if mito_scale not in ("log", "linear"):
        raise input_error(f"unknown mito_scale {mito_scale!r}.", fix="use 'log' or 'linear'.")
    if mito_scale == "log":
        mt_adaptive = float(np.expm1(mad_bounds(np.log1p(mt), mito_n_mads)[1]))
    else:
        mt_adaptive = mad_bounds(mt, mito_n_mads)[1]
    mt_upper = min(mt_adaptive, float(mito_max_pct))
    adaptive = {
        "min_counts": lo_c,
        "max_counts": hi_c,
        "min_genes": lo_g,
        "max_genes": hi_g,
        "max_pct_mt": mt_upper,
    }
    given = {
        "min_counts": min_counts,
        "max_counts": max_counts,
        "min_genes": min_genes,
        "max_genes": max_genes,
        "max_pct_mt": max_pct_mt,
    }
    thresholds = {k: float(given[k]) if given[k] is not None else adaptive[k] for k in adaptive}
    source = {k: "config" if given[k] is not None else "adaptive" for k in adaptive}
    adata.obs["qc_low_counts"] = counts < thresholds["min_counts"]
    adata.obs["qc_high_counts"] = counts > thresholds["max_counts"]
    adata.obs["qc_low_genes"] = genes < thresholds["min_genes"]
    adata.obs["qc_high_genes"] = genes > thresholds["max_genes"]
    adata.obs["qc_high_pct_mt"] = mt > thresholds["max_pct_mt"]
    adata.uns[key_added] = {
        "thresholds": thresholds,
        "source": source,
        "params": {
            "n_mads": float(n_mads),
            "mito_n_mads": float(mito_n_mads),
            "mito_max_pct": float(mito_max_pct),
            "mito_scale": mito_scale,
            **{k: float(v) for k, v in given.items() if v is not None},
        },
    }
    logger.info("thresholds: %s", ", ".join(f"{k}={v:.3g} ({source[k]})" for k, v in thresholds.items()))
    return adata if copy else None


def otsu_threshold(scores: np.ndarray, *, n_bins: int = 256) -> float | None:
    """Otsu's threshold (maximal between-class variance) of a score distribution.

    Used on Scrublet's simulated-doublet scores, which split into doublets of similar cells (low scores) and
    of distinct cells (high scores). Unlike Scrublet's histogram-minimum rule, it is
    robust to the discrete, gappy score histograms of small samples (scores are fractions of k neighbours).

    Parameters
    ----------
    scores
        Scores.
    n_bins
        Histogram bins.

    Returns
    -------
    The threshold, or ``None`` for constant or too few scores.
    """
    x = np.asarray(scores, dtype=np.float64)
    x = x[np.isfinite(x)]
    if x.size < 10 or np.ptp(x) == 0:
        return None
    hist, edges = np.histogram(x, bins=n_bins)
    centres = (edges[:-1] + edges[1:]) / 2
    h = hist.astype(np.float64)
    w0 = np.cumsum(h)
    w1 = w0[-1] - w0
    m0 = np.cumsum(h * centres)
    with np.errstate(divide="ignore", invalid="ignore"):
        between = w0 * w1 * (m0 / w0 - (m0[-1] - m0) / w1) ** 2
    between = np.nan_to_num(between[:-1], nan=-1.0)
    return float(edges[int(np.argmax(between)) + 1])
