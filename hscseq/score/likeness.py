"""HSC-likeness calibrated on the in vivo reference HSCs.

Numeric cores: :func:`hsc_threshold` (the calibrated threshold) and :func:`bootstrap_fraction_ci` (CI of a
sample's HSC-like fraction); :func:`hsc_likeness` is the AnnData wrapper. The score stage itself calls
HSC-like cells through the identity classes (:func:`hscseq.score.identity.hsc_like_summary`, same layout).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import anndata as ad
import numpy as np
import pandas as pd

from hscseq._bootstrap import percentile_ci
from hscseq._labels import DEFAULT_HSC_LABELS, is_hsc_label
from hscseq._utils import input_error

logger = logging.getLogger(__name__)


def hsc_threshold(reference_scores: np.ndarray, *, quantile: float = 0.1) -> float:
    """The HSC-like threshold: the ``quantile`` of the HSC score among in vivo reference HSCs."""
    reference_scores = np.asarray(reference_scores, dtype=float)
    reference_scores = reference_scores[np.isfinite(reference_scores)]
    return float(np.quantile(reference_scores, quantile))


def bootstrap_fraction_ci(
    scores: np.ndarray,
    passes_null: np.ndarray,
    reference_scores: np.ndarray,
    *,
    quantile: float,
    n_bootstrap: int,
    rng: np.random.Generator,
    level: float = 0.95,
) -> tuple[float, float]:
    """Bootstrap CI of the HSC-like fraction of one sample.

    Each replicate resamples the reference HSCs (re-deriving the threshold, so its uncertainty propagates)
    and the sample's cells (a binomial draw of the share of cells above that threshold).
    """
    scores = np.asarray(scores, dtype=float)
    n = len(scores)
    if n == 0:
        return float("nan"), float("nan")
    eligible = np.sort(scores[np.asarray(passes_null, dtype=bool) & np.isfinite(scores)])
    ref = np.asarray(reference_scores, dtype=float)
    ref = ref[np.isfinite(ref)]
    fractions = np.empty(n_bootstrap)
    for b in range(n_bootstrap):
        t = np.quantile(rng.choice(ref, size=len(ref), replace=True), quantile) if len(ref) else -np.inf
        p = (len(eligible) - np.searchsorted(eligible, t, side="left")) / n
        fractions[b] = rng.binomial(n, p) / n
    return percentile_ci(fractions, level=level)


def _reference_hsc_mask(
    adata: ad.AnnData,
    *,
    condition_key: str,
    label_key: str,
    reference_condition: str,
    hsc_labels: Sequence[str],
) -> np.ndarray:
    if condition_key not in adata.obs or label_key not in adata.obs:
        return np.zeros(adata.n_obs, dtype=bool)
    in_vivo = adata.obs[condition_key].astype(str).to_numpy() == reference_condition
    return in_vivo & is_hsc_label(adata.obs[label_key].astype(str).to_numpy(), hsc_labels)


def _calibrate(
    ref_scores: np.ndarray,
    *,
    score_key: str,
    label_key: str,
    hsc_labels: Sequence[str],
    quantile: float,
    alpha: float,
    min_reference_cells: int,
) -> tuple[float, np.ndarray, str]:
    """Threshold, the reference scores it rests on and the rule in words (null only, uncalibrated, when
    there are fewer than ``min_reference_cells`` reference HSCs)."""
    if len(ref_scores) >= min_reference_cells:
        threshold = hsc_threshold(ref_scores, quantile=quantile)
        rule = (
            f"{score_key} >= {quantile:g} quantile of {len(ref_scores)} in vivo reference HSCs "
            f"({threshold:.4g}) and empirical p < {alpha:g}"
        )
        return threshold, ref_scores, rule
    logger.warning(
        "only %d in vivo reference HSCs (labels %s in obs[%r]); HSC-like = empirical p < %g only, "
        "not calibrated",
        len(ref_scores),
        list(hsc_labels),
        label_key,
        alpha,
    )
    rule = f"empirical p < {alpha:g} only (fewer than {min_reference_cells} reference HSCs)"
    return -np.inf, np.array([]), rule


def _sample_fractions(
    scores: np.ndarray,
    passes: np.ndarray,
    calls: np.ndarray,
    ref_scores: np.ndarray,
    samples: pd.Series,
    conditions: pd.Series,
    *,
    quantile: float,
    n_bootstrap: int,
    rng: np.random.Generator,
) -> pd.DataFrame:
    """Per sample: cells, HSC-like cells, their fraction and its bootstrap CI."""
    rows = []
    for s in pd.unique(samples):
        idx = np.flatnonzero(samples.to_numpy() == s)
        lo, hi = bootstrap_fraction_ci(
            scores[idx], passes[idx], ref_scores, quantile=quantile, n_bootstrap=n_bootstrap, rng=rng
        )
        rows.append(
            {
                "sample": s,
                "condition": conditions.iloc[idx[0]],
                "n_cells": len(idx),
                "n_hsc_like": int(calls[idx].sum()),
                "hsc_like_fraction": float(calls[idx].mean()),
                "hsc_like_ci_low": lo,
                "hsc_like_ci_high": hi,
            }
        )
    return pd.DataFrame(rows)


def _scores_and_null(
    adata: ad.AnnData, score_key: str, pval_key: str | None, alpha: float
) -> tuple[np.ndarray, np.ndarray]:
    """The HSC score per cell and whether it beats the null (``p < alpha``; all True without ``pval_key``)."""
    if score_key not in adata.obs:
        raise input_error(
            f"obs[{score_key!r}] is missing.", fix="run score_signatures with the HSC signature."
        )
    scores = adata.obs[score_key].to_numpy(dtype=float)
    passes = np.ones(adata.n_obs, dtype=bool)
    if pval_key is not None and pval_key in adata.obs:
        passes = adata.obs[pval_key].to_numpy(dtype=float) < alpha
    return scores, passes


def _samples_and_conditions(
    adata: ad.AnnData, sample_key: str, condition_key: str
) -> tuple[pd.Series, pd.Series]:
    """Sample (``"all"`` without the column) and condition (the sample without the column) per cell."""
    samples = (
        adata.obs[sample_key].astype(str)
        if sample_key in adata.obs
        else pd.Series("all", index=adata.obs_names)
    )
    conditions = adata.obs[condition_key].astype(str) if condition_key in adata.obs else samples
    return samples, conditions


def _calibration_rates(calls: np.ndarray, ref: np.ndarray, in_vivo: np.ndarray) -> dict[str, float]:
    """Share of reference HSCs called HSC-like, and of other in vivo cells (NaN without reference HSCs)."""
    other = in_vivo & ~ref
    return {
        "reference_hsc_sensitivity": float(calls[ref].mean()) if ref.any() else float("nan"),
        "in_vivo_non_hsc_rate": float(calls[other].mean()) if other.any() and ref.any() else float("nan"),
    }


def hsc_likeness(
    adata: ad.AnnData,
    *,
    score_key: str = "hsc_score",
    pval_key: str | None = "hsc_score_p",
    sample_key: str = "sample",
    condition_key: str = "condition",
    label_key: str = "reference_label",
    reference_condition: str = "in_vivo",
    hsc_labels: Sequence[str] = DEFAULT_HSC_LABELS,
    quantile: float = 0.1,
    alpha: float = 0.05,
    min_reference_cells: int = 20,
    n_bootstrap: int = 1000,
    key_added: str = "hsc_like",
    random_state: int = 0,
    copy: bool = False,
) -> ad.AnnData | None:
    """Call HSC-like cells with a threshold calibrated on the in vivo reference HSCs.

    Rule: a cell is HSC-like when its HSC score is at least the ``quantile`` of the scores of in vivo
    reference HSCs (``condition == reference_condition`` and ``label_key`` in ``hsc_labels``; by default the
    10th percentile, i.e. 90% of reference HSCs pass) AND its score beats expression-matched random gene
    sets (empirical ``p < alpha``). With fewer than ``min_reference_cells`` reference HSCs the first part
    is dropped (null only) and a warning is logged. Per sample, the HSC-like fraction gets a bootstrap CI
    that resamples both the reference HSCs (threshold) and the sample's cells.

    Parameters
    ----------
    adata
        Scored cells (see :func:`score_signatures`).
    score_key
        ``obs`` column of the HSC score.
    pval_key
        ``obs`` column of its empirical p-value (``None``: no null condition).
    sample_key
        ``obs`` column of samples.
    condition_key
        ``obs`` column of the condition (in vivo reference vs engineered / organoid).
    label_key
        ``obs`` column of reference labels.
    reference_condition
        Condition value of the in vivo reference.
    hsc_labels
        Reference labels counted as HSCs (case-insensitive).
    quantile
        Quantile of reference HSC scores used as threshold.
    alpha
        Empirical p-value cut of the null condition.
    min_reference_cells
        Minimum number of reference HSCs to calibrate on.
    n_bootstrap
        Bootstrap replicates of the per-sample CI.
    key_added
        ``obs`` column of the boolean call and ``uns`` key of the calibration and per-sample table.
    random_state
        Seed of the bootstrap.
    copy
        Return a modified copy instead of writing into ``adata``.

    Returns
    -------
    ``None``, or the modified copy when ``copy=True``. Writes ``obs[key_added]`` (bool) and
    ``uns[key_added]`` with ``threshold``, ``rule``, calibration numbers, ``samples`` (per sample
    n_cells, n_hsc_like, hsc_like_fraction, hsc_like_ci_low, hsc_like_ci_high) and ``params``.
    """
    adata = adata.copy() if copy else adata
    scores, passes = _scores_and_null(adata, score_key, pval_key, alpha)
    ref = _reference_hsc_mask(
        adata,
        condition_key=condition_key,
        label_key=label_key,
        reference_condition=reference_condition,
        hsc_labels=hsc_labels,
    )
    threshold, ref_scores, rule = _calibrate(
        scores[ref & np.isfinite(scores)],
        score_key=score_key,
        label_key=label_key,
        hsc_labels=hsc_labels,
        quantile=quantile,
        alpha=alpha,
        min_reference_cells=min_reference_cells,
    )
    calls = passes & np.isfinite(scores) & (scores >= threshold)
    adata.obs[key_added] = calls
    samples, conditions = _samples_and_conditions(adata, sample_key, condition_key)
    rng = np.random.default_rng(random_state)
    table = _sample_fractions(
        scores,
        passes,
        calls,
        ref_scores,
        samples,
        conditions,
        quantile=quantile,
        n_bootstrap=n_bootstrap,
        rng=rng,
    )
    adata.uns[key_added] = {
        "params": {
            "score_key": score_key,
            "pval_key": pval_key,
            "quantile": quantile,
            "alpha": alpha,
            "hsc_labels": list(hsc_labels),
            "reference_condition": reference_condition,
            "min_reference_cells": min_reference_cells,
            "n_bootstrap": n_bootstrap,
            "random_state": random_state,
        },
        "threshold": float(threshold),
        "rule": rule,
        "n_reference_hsc": len(ref_scores),
        **_calibration_rates(calls, ref, conditions.to_numpy() == reference_condition),
        "samples": table,
    }
    logger.info("HSC-like rule: %s", rule)
    return adata if copy else None
