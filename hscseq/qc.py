"""Quality control per sample: metrics, adaptive thresholds, doublets, cell cycle, filtering and its account.

AnnData API (scanpy style, re-exported from ``hscseq.pp``):

- :func:`qc_metrics` -- species-aware per-cell metrics (counts, genes, % mito / ribo / haemoglobin,
  complexity);
- :func:`adaptive_thresholds` -- per-sample thresholds (median +/- k MADs on log counts and log genes, median
  + k MADs on % mito capped at an absolute %), every one overridable, and a flag per cell and criterion;
- :func:`detect_doublets` -- Scrublet (through scanpy) and SOLO (scvi-tools), combined by a documented rule;
- :func:`score_cell_cycle` -- Tirosh S / G2M scores and phase, mouse or human;
- :func:`filter_cells` -- drops flagged cells, counts what every criterion removed, and refuses to lose a
  sample silently.

Numeric cores (arrays in, arrays out): :func:`mad_bounds`, :func:`otsu_threshold`,
:func:`expected_doublet_rate`, :func:`combine_doublet_calls`.

Stage functions used by the workflow: :func:`run_qc` (one sample) and :func:`run_qc_summary` (all samples).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from hscseq._utils import HscseqInputError, atomic_path, input_error, resource_path, write_h5ad, write_table

logger = logging.getLogger(__name__)

#: Gene-name patterns of each species (10x reference symbols).
GENE_PATTERNS: dict[str, dict[str, str]] = {
    "mouse": {
        "mt": r"^mt-",
        "ribo": r"^Rp[sl]\d|^Rp[sl]p\d|^Rps27a$",
        "hb": r"^Hb[ab]-|^Hbq\d",
    },
    "human": {
        "mt": r"^MT-",
        "ribo": r"^RP[SL]\d|^RP[SL]P\d|^RPS27A$",
        "hb": r"^HB(?:A1|A2|B|D|E1|G1|G2|M|Q1|Z)$",
    },
}

#: Criteria in the order used to attribute a removed cell to one *first* reason (the account sums up).
CRITERIA: tuple[str, ...] = (
    "high_pct_mt",
    "low_counts",
    "low_genes",
    "high_counts",
    "high_genes",
    "doublet",
)

#: Defaults of the ``qc`` config section (``workflow/schemas/config.schema.yaml`` holds the same values).
DEFAULTS: dict[str, Any] = {
    "n_mads": 5.0,
    "mito_n_mads": 3.0,
    "mito_max_pct": 20.0,
    "mito_scale": "log",
    "min_counts": None,
    "max_counts": None,
    "min_genes": None,
    "max_genes": None,
    "max_pct_mt": None,
    "max_removed_fraction": 0.5,
    "continue_on_excess_removal": False,
    "doublet_methods": ["scrublet", "solo"],
    "doublet_rule": "rank",
    "expected_doublet_rate": None,
    "doublet_rate_per_1000_cells": 0.008,
    "solo_max_epochs": 100,
    "scrublet_n_prin_comps": 10,
    "scrublet_log_transform": True,
    "scrublet_sim_doublet_ratio": 4.0,
    "remove_doublets": True,
    "min_cell_cycle_genes": 10,
    "cell_cycle_phase_rule": "otsu",
    "seed": 0,
    "per_sample": {},
}

DOUBLET_RULES = ("rank", "union", "intersection", "scrublet", "solo")

#: Simulated doublets per cell in SOLO's training set (scvi-tools' default, used in :func:`_run_solo`).
SOLO_DOUBLET_RATIO = 2


# --------------------------------------------------------------------------------------------------------
# metrics


def _as_csr(x) -> sp.csr_matrix:
    return x.tocsr() if sp.issparse(x) else sp.csr_matrix(np.asarray(x))


def gene_masks(var_names: Sequence[str], species: str) -> dict[str, np.ndarray]:
    """Boolean masks of mitochondrial (``mt``), ribosomal (``ribo``) and haemoglobin (``hb``) genes.

    Parameters
    ----------
    var_names
        Gene symbols.
    species
        ``"mouse"`` or ``"human"``.

    Returns
    -------
    One boolean array per gene family, aligned with ``var_names``.
    """
    if species not in GENE_PATTERNS:
        raise input_error(
            f"unknown species {species!r} for QC gene patterns.",
            fix=f"set species to one of {sorted(GENE_PATTERNS)} in the sample sheet.",
        )
    names = pd.Index([str(g) for g in var_names])
    return {
        fam: np.asarray(names.str.contains(pat, regex=True)) for fam, pat in GENE_PATTERNS[species].items()
    }


def compute_metrics(counts, masks: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Per-cell metrics of a cells x genes count matrix (sparse or dense; never densified).

    Parameters
    ----------
    counts
        Raw counts, cells x genes.
    masks
        Gene-family masks (e.g. from :func:`gene_masks`); each gives ``pct_counts_<family>``.

    Returns
    -------
    ``total_counts``, ``n_genes_by_counts``, ``pct_counts_<family>`` (0-100) and ``complexity``
    (log1p genes / log1p counts; NaN for empty cells).
    """
    x = _as_csr(counts)
    total = np.asarray(x.sum(axis=1), dtype=np.float64).ravel()
    n_genes = np.asarray((x > 0).sum(axis=1)).ravel().astype(np.int64)
    out: dict[str, np.ndarray] = {"total_counts": total, "n_genes_by_counts": n_genes}
    with np.errstate(divide="ignore", invalid="ignore"):
        for fam, mask in masks.items():
            sub = np.asarray(x[:, np.flatnonzero(mask)].sum(axis=1), dtype=np.float64).ravel()
            out[f"pct_counts_{fam}"] = np.where(total > 0, 100.0 * sub / np.where(total > 0, total, 1), 0.0)
        out["complexity"] = np.where(total > 0, np.log1p(n_genes) / np.log1p(total), np.nan)
    return out


def qc_metrics(
    adata: ad.AnnData,
    *,
    species: str,
    layer: str | None = None,
    key_added: str = "qc_metrics",
    copy: bool = False,
) -> ad.AnnData | None:
    """Species-aware QC metrics per cell.

    Adds to ``obs``: ``total_counts``, ``n_genes_by_counts``, ``pct_counts_mt``, ``pct_counts_ribo``,
    ``pct_counts_hb``, ``complexity`` (log genes / log counts); to ``var``: boolean ``mt``, ``ribo``, ``hb``.

    Parameters
    ----------
    adata
        Raw counts in ``X`` (or in ``layer``).
    species
        ``"mouse"`` (``mt-``, ``Rps/Rpl``, ``Hba/Hbb``) or ``"human"`` (``MT-``, ``RPS/RPL``, ``HBA/HBB``).
    layer
        Layer holding the counts; ``None`` uses ``X``.
    key_added
        ``uns`` key receiving ``params`` and the number of genes of each family.
    copy
        Return a modified copy instead of writing in place.

    Returns
    -------
    The modified copy if ``copy=True``, else ``None``.
    """
    adata = adata.copy() if copy else adata
    masks = gene_masks(adata.var_names, species)
    counts = adata.layers[layer] if layer is not None else adata.X
    metrics = compute_metrics(counts, masks)
    for name, values in metrics.items():
        adata.obs[name] = values
    for fam, mask in masks.items():
        adata.var[fam] = mask
    n_family = {fam: int(mask.sum()) for fam, mask in masks.items()}
    if n_family["mt"] == 0:
        logger.warning(
            "no mitochondrial genes (%s) found among %d genes: %% mito is 0 for every cell and "
            "cannot flag damaged cells",
            GENE_PATTERNS[species]["mt"],
            adata.n_vars,
        )
    adata.uns[key_added] = {
        "params": {"species": species, "layer": layer or "X", "patterns": dict(GENE_PATTERNS[species])},
        "n_genes": n_family,
    }
    return adata if copy else None


# --------------------------------------------------------------------------------------------------------
# adaptive thresholds


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
    n_mads: float = 5.0,
    mito_n_mads: float = 3.0,
    mito_max_pct: float = 20.0,
    mito_scale: str = "log",
    min_counts: float | None = None,
    max_counts: float | None = None,
    min_genes: float | None = None,
    max_genes: float | None = None,
    max_pct_mt: float | None = None,
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


# --------------------------------------------------------------------------------------------------------
# doublets


def expected_doublet_rate(n_cells: int, *, rate_per_1000_cells: float = 0.008) -> float:
    """Expected multiplet rate of a droplet run from the number of cells recovered.

    10x Genomics' loading table gives about 0.8% multiplets per 1,000 cells recovered (3' v3); the rate is
    clipped to [0.001, 0.5].

    Parameters
    ----------
    n_cells
        Cells recovered (barcodes called as cells) in the sample.
    rate_per_1000_cells
        Multiplet rate per 1,000 cells recovered.

    Returns
    -------
    The expected doublet rate.
    """
    return float(np.clip(rate_per_1000_cells * n_cells / 1000.0, 0.001, 0.5))


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


def combine_doublet_calls(calls: Mapping[str, np.ndarray], *, rule: str = "intersection") -> np.ndarray:
    """Combine boolean doublet calls of several methods.

    Rules: ``"intersection"`` (the default) -- a doublet only when every method agrees: two independent
    methods (kNN on simulated doublets, a neural classifier on an scVI latent space) rarely err on the same
    singlet, so agreement keeps precision while SOLO alone over-calls on small samples (on the simulator
    it flags ~25% of cells, with 4% planted doublets); ``"union"`` -- a doublet for any method (maximal
    recall); ``"scrublet"`` / ``"solo"`` -- that method alone. A rule naming a method that did not run falls
    back to the union of the methods that did.

    Parameters
    ----------
    calls
        Method name -> boolean array (one per cell).
    rule
        One of :data:`DOUBLET_RULES`.

    Returns
    -------
    Boolean array: the combined call.
    """
    if rule not in DOUBLET_RULES:
        raise input_error(f"unknown doublet rule {rule!r}.", fix=f"use one of {list(DOUBLET_RULES)}.")
    if not calls:
        msg = "no doublet calls to combine"
        raise ValueError(msg)
    arrays = {k: np.asarray(v, dtype=bool) for k, v in calls.items()}
    if rule in arrays:
        return arrays[rule]
    stack = np.vstack(list(arrays.values()))
    return stack.all(axis=0) if rule == "intersection" else stack.any(axis=0)


def rank_doublet_score(scores: Mapping[str, np.ndarray]) -> np.ndarray:
    """Combined doublet score: the mean over methods of each cell's percentile rank (0-1] in that method.

    Scores of different methods are not on one scale (Scrublet: a share of simulated-doublet neighbours
    around 0.05-0.3; SOLO: a probability); ranks put them on one. Ties take their mean rank; NaN scores
    rank lowest.

    Parameters
    ----------
    scores
        Method name -> score per cell (higher = more doublet-like).

    Returns
    -------
    The mean percentile rank per cell.
    """
    from scipy.stats import rankdata

    if not scores:
        msg = "no doublet scores to combine"
        raise ValueError(msg)
    ranks = []
    for values in scores.values():
        v = np.asarray(values, dtype=np.float64)
        v = np.where(np.isfinite(v), v, -np.inf)
        ranks.append(rankdata(v, method="average") / v.size)
    return np.mean(ranks, axis=0)


def rank_call_count(n_cells: int, scrublet_info: Mapping[str, Any] | None, *, expected_rate: float) -> int:
    """How many cells the ``"rank"`` rule calls doublets.

    With Scrublet: midway between Scrublet's own call count (``called = rate_hat * detectable * n``, the
    doublets Scrublet alone can see) and its estimate of all doublets (``rate_hat * n``, including
    doublets of near-identical cells that no expression-based method can see). The consensus of two
    methods sees more doublets than Scrublet alone, never the near-identical ones; the midpoint is the
    documented compromise (on the simulator it keeps precision >= 0.9 where ``rate_hat * n`` falls to
    ~0.8). Without Scrublet: ``expected_rate * n``.

    Parameters
    ----------
    n_cells
        Cells scored.
    scrublet_info
        Scrublet's record (``detectable_fraction``, ``estimated_rate``), or ``None``.
    expected_rate
        Prior doublet rate (used without Scrublet).

    Returns
    -------
    The number of cells to call.
    """
    if scrublet_info is None:
        return round(expected_rate * n_cells)
    rate_hat = float(scrublet_info["estimated_rate"])
    detectable = float(scrublet_info["detectable_fraction"])
    return round(n_cells * rate_hat * (1.0 + detectable) / 2.0)


def top_calls(score: np.ndarray, n_call: int) -> np.ndarray:
    """Boolean mask of the ``n_call`` highest scores (ties at the cut broken by order).

    Parameters
    ----------
    score
        One score per cell.
    n_call
        Number of cells to call.

    Returns
    -------
    True for the called cells.
    """
    score = np.asarray(score, dtype=np.float64)
    n_call = int(np.clip(n_call, 0, score.size))
    called = np.zeros(score.size, dtype=bool)
    called[np.argsort(-score, kind="stable")[:n_call]] = True
    return called


def _run_scrublet(
    adata: ad.AnnData,
    *,
    rate: float,
    seed: int,
    n_prin_comps: int = 10,
    log_transform: bool = True,
    sim_doublet_ratio: float = 4.0,
) -> tuple[np.ndarray, np.ndarray, dict]:
    """Scrublet through scanpy on raw counts; threshold by :func:`otsu_threshold` on simulated scores.

    Besides the calls, returns Scrublet's own estimate of the sample's doublet rate: the share of cells
    called divided by the share of simulated doublets that are detectable (above the threshold).
    """
    import scanpy as sc

    tmp = ad.AnnData(
        X=_as_csr(adata.X).astype(np.float32),
        obs=pd.DataFrame(index=adata.obs_names),
        var=pd.DataFrame(index=adata.var_names),
    )
    # threshold given so that scanpy does not need scikit-image; the real threshold is set below
    # use_approx_neighbors=False: scanpy's approximate kNN path (pynndescent) returns a scipy csr_array that
    # scanpy 1.11.5 calls .getnnz() on, which scipy >= 1.16 sparse arrays lack (fails from ~4k cells on).
    # The placeholder threshold makes Scrublet divide by a zero detectable fraction: silenced here.
    with np.errstate(divide="ignore", invalid="ignore"):
        sc.pp.scrublet(
            tmp,
            expected_doublet_rate=rate,
            threshold=1.0,
            n_prin_comps=int(max(2, min(n_prin_comps, tmp.n_obs - 1, tmp.n_vars - 1))),
            log_transform=bool(log_transform),
            sim_doublet_ratio=float(sim_doublet_ratio),
            use_approx_neighbors=False,
            random_state=seed,
            verbose=False,
        )
    scores = tmp.obs["doublet_score"].to_numpy(dtype=np.float64)
    sim = np.asarray(tmp.uns["scrublet"]["doublet_scores_sim"], dtype=np.float64)
    threshold = otsu_threshold(sim)
    how = "Otsu threshold of simulated doublet scores"
    if threshold is None:
        threshold = float(np.quantile(scores, 1.0 - rate))
        how = f"top {rate:.1%} of observed scores (simulated scores not bimodal)"
        logger.warning("scrublet: no bimodal threshold; calling the top %.1f%% of cells", 100 * rate)
    calls = scores > threshold
    detectable = float(np.mean(sim > threshold))
    info = {
        "threshold": float(threshold),
        "threshold_rule": how,
        "detectable_fraction": detectable,
        "estimated_rate": float(np.clip(calls.mean() / detectable, 0.0, 1.0)) if detectable > 0 else rate,
        "n_prin_comps": int(n_prin_comps),
        "log_transform": bool(log_transform),
        "sim_doublet_ratio": float(sim_doublet_ratio),
    }
    return scores, calls, info


def _batch_size(n_obs: int, *, train_size: float = 0.9, batch_size: int = 128) -> int:
    """scvi-tools' batch size, lowered until the last training batch is not 1-2 cells.

    scvi-tools otherwise moves those cells to the validation set with a warning (a tiny last batch breaks
    batch normalisation); which sample sizes trigger it is arbitrary (e.g. 427 cells).
    """
    n_train = int(np.ceil(train_size * n_obs))
    while batch_size > 16 and n_train % batch_size in (1, 2):
        batch_size -= 1
    return batch_size


def _run_solo(adata: ad.AnnData, *, max_epochs: int, seed: int) -> tuple[np.ndarray, np.ndarray, dict]:
    """SOLO (scvi-tools) on raw counts: an scVI model, then the SOLO classifier on its latent space."""
    import scanpy as sc
    import scvi

    scvi.settings.seed = seed
    tmp = ad.AnnData(
        X=_as_csr(adata.X).astype(np.float32),
        obs=pd.DataFrame(index=adata.obs_names),
        var=pd.DataFrame(index=adata.var_names),
    )
    sc.pp.filter_genes(tmp, min_cells=3)
    n_top = min(2000, tmp.n_vars)
    if n_top < tmp.n_vars:
        sc.pp.highly_variable_genes(tmp, n_top_genes=n_top, flavor="seurat_v3")
        tmp = tmp[:, tmp.var["highly_variable"].to_numpy()].copy()
    scvi.model.SCVI.setup_anndata(tmp)
    vae = scvi.model.SCVI(tmp, n_latent=10)
    vae.train(
        max_epochs=max_epochs,
        enable_progress_bar=False,
        accelerator="cpu",
        batch_size=_batch_size(tmp.n_obs),
    )
    solo = scvi.external.SOLO.from_scvi_model(vae, doublet_ratio=SOLO_DOUBLET_RATIO)
    solo.train(
        max_epochs=max_epochs,
        enable_progress_bar=False,
        accelerator="cpu",
        batch_size=_batch_size(solo.adata.n_obs),
    )
    import warnings

    with warnings.catch_warnings():
        # an informational note about scvi-tools < 1.1.3 returning logits; we rely on probabilities
        warnings.filterwarnings("ignore", message=r"Prior to scvi-tools 1\.1\.3", category=UserWarning)
        proba = solo.predict(soft=True)["doublet"].to_numpy(dtype=np.float64)
    # SOLO trains on `doublet_ratio` (2) simulated doublets per cell, so its probabilities carry prior odds
    # of 2:1 for "doublet"; rescale to even prior odds before calling at 0.5 (Bayes prior shift)
    odds = proba / np.maximum(1.0 - proba, 1e-12) / SOLO_DOUBLET_RATIO
    proba = odds / (1.0 + odds)
    calls = proba > 0.5
    return (
        proba,
        calls,
        {
            "threshold": 0.5,
            "threshold_rule": "SOLO doublet probability > 0.5 after removing its 2:1 training prior",
            "max_epochs": int(max_epochs),
            "n_genes": int(tmp.n_vars),
        },
    )


def detect_doublets(
    adata: ad.AnnData,
    *,
    methods: Sequence[str] = ("scrublet", "solo"),
    rule: str = "rank",
    expected_rate: float | None = None,
    rate_per_1000_cells: float = 0.008,
    solo_max_epochs: int = 100,
    scrublet_n_prin_comps: int = 10,
    scrublet_log_transform: bool = True,
    scrublet_sim_doublet_ratio: float = 4.0,
    threads: int = 1,
    random_state: int = 0,
    key_added: str = "doublets",
    copy: bool = False,
) -> ad.AnnData | None:
    """Doublets of one sample (one droplet run) with Scrublet and SOLO, combined by ``rule``.

    Scrublet (``scanpy.pp.scrublet``) simulates doublets from the sample's own cells and scores each cell
    by the share of simulated doublets among its neighbours; the call threshold separates the two groups
    of simulated-doublet scores (:func:`otsu_threshold`; Scrublet's own histogram-minimum rule fails on the
    gappy score histograms of small samples). SOLO
    (``scvi.external.SOLO``) trains a classifier of simulated doublets vs. cells on an scVI latent space;
    the call is a doublet probability > 0.5 once its 2:1 training prior is removed. The two are
    independent (kNN on PCA vs. a neural classifier on
    a generative model). ``expected_rate`` (default: from the number of cells, see
    :func:`expected_doublet_rate`) sets Scrublet's prior.

    Scrublet's defaults for small samples: 10 principal components (not 30; a sample of a few hundred
    to a few thousand blood cells has about ten cell states, and extra components add noise to the kNN),
    log-transformed normalised counts and 4 simulated doublets per cell (a denser reference of simulated
    doublets for small samples). On the simulator (demo at half scale, 3 seeds) this raised Scrublet's
    AUC of planted doublets from ~0.91 to ~0.95.

    Combination rules. ``"rank"`` (default): each cell's combined score is the mean of its percentile
    ranks in the methods' scores (:func:`rank_doublet_score`), and the cells called are the top
    ``n`` by that score, with ``n`` from the sample's own data (:func:`rank_call_count`): midway between
    Scrublet's call count at its threshold and its estimate of all doublets; without Scrublet,
    ``expected_rate`` times the cells. The
    two methods err on different singlets, so the mean rank separates doublets better than either
    (simulator AUC ~0.98 vs ~0.93-0.95) while the count stays anchored on Scrublet's calibrated threshold
    rather than on SOLO's probabilities, which over-call on small samples. The other rules combine the
    per-method boolean calls (:func:`combine_doublet_calls`).

    Adds to ``obs``: ``doublet_score`` (the mean-rank score for ``rule="rank"``, also in
    ``doublet_rank_score``; else the score of the first method run), ``<method>_score`` and
    ``<method>_doublet`` per method, ``predicted_doublet`` (combined); to ``uns[key_added]``: thresholds,
    rates per method and combined, and ``params``.

    Parameters
    ----------
    adata
        Raw counts of ONE sample in ``X`` (doublets only form within a droplet run).
    methods
        ``"scrublet"`` and/or ``"solo"``.
    rule
        How calls are combined: ``"rank"``, ``"union"``, ``"intersection"``, ``"scrublet"`` or ``"solo"``.
    expected_rate
        Expected doublet rate; ``None`` derives it from the number of cells.
    rate_per_1000_cells
        Multiplet rate per 1,000 cells recovered (used when ``expected_rate`` is ``None``).
    solo_max_epochs
        Epochs of the scVI model and of the SOLO classifier.
    scrublet_n_prin_comps
        Principal components of Scrublet's kNN graph (capped by the sample size).
    scrublet_log_transform
        Log-transform the normalised counts before Scrublet's PCA.
    scrublet_sim_doublet_ratio
        Simulated doublets per cell in Scrublet.
    threads
        CPU threads for torch (SOLO).
    random_state
        Seed of Scrublet and scvi-tools.
    key_added
        ``uns`` key of the results.
    copy
        Return a modified copy instead of writing in place.

    Returns
    -------
    The modified copy if ``copy=True``, else ``None``.
    """
    unknown = [m for m in methods if m not in ("scrublet", "solo")]
    if unknown or not methods:
        raise input_error(
            f"unknown doublet method(s) {unknown or methods!r}.",
            fix="use 'scrublet' and/or 'solo' in qc.doublet_methods.",
        )
    if rule not in DOUBLET_RULES:
        raise input_error(f"unknown doublet rule {rule!r}.", fix=f"use one of {list(DOUBLET_RULES)}.")
    adata = adata.copy() if copy else adata
    rate = (
        expected_rate
        if expected_rate is not None
        else expected_doublet_rate(adata.n_obs, rate_per_1000_cells=rate_per_1000_cells)
    )
    calls: dict[str, np.ndarray] = {}
    info: dict[str, dict] = {}
    first_score = None
    for method in dict.fromkeys(methods):
        if method == "scrublet":
            scores, called, meta = _run_scrublet(
                adata,
                rate=rate,
                seed=random_state,
                n_prin_comps=scrublet_n_prin_comps,
                log_transform=scrublet_log_transform,
                sim_doublet_ratio=scrublet_sim_doublet_ratio,
            )
        else:
            scores, called, meta = _with_torch_threads(
                threads, _run_solo, adata, max_epochs=solo_max_epochs, seed=random_state
            )
        adata.obs[f"{method}_score"] = scores
        adata.obs[f"{method}_doublet"] = called
        calls[method] = called
        meta["n_called"] = int(called.sum())
        meta["rate"] = float(called.mean()) if called.size else 0.0
        info[method] = meta
        first_score = scores if first_score is None else first_score
        logger.info(
            "%s: %d doublets (%.2f%%), threshold %.3g",
            method,
            meta["n_called"],
            100 * meta["rate"],
            meta["threshold"],
        )
    if rule == "rank":
        combined_score = rank_doublet_score({m: adata.obs[f"{m}_score"].to_numpy() for m in calls})
        n_call = rank_call_count(adata.n_obs, info.get("scrublet"), expected_rate=rate)
        combined = top_calls(combined_score, n_call)
        adata.obs["doublet_rank_score"] = combined_score
        first_score = combined_score
    else:
        combined = combine_doublet_calls(calls, rule=rule)
    adata.obs["doublet_score"] = first_score
    adata.obs["predicted_doublet"] = combined
    agree = float(np.mean(calls["scrublet"] == calls["solo"])) if len(calls) == 2 else float("nan")
    adata.uns[key_added] = {
        "methods": info,
        "n_called": int(combined.sum()),
        "rate": float(combined.mean()) if combined.size else 0.0,
        "expected_rate": float(rate),
        "agreement": agree,
        "params": {
            "methods": list(dict.fromkeys(methods)),
            "rule": rule,
            "expected_rate": float(rate),
            "rate_per_1000_cells": float(rate_per_1000_cells),
            "solo_max_epochs": int(solo_max_epochs),
            "scrublet_n_prin_comps": int(scrublet_n_prin_comps),
            "scrublet_log_transform": bool(scrublet_log_transform),
            "scrublet_sim_doublet_ratio": float(scrublet_sim_doublet_ratio),
            "random_state": int(random_state),
        },
    }
    logger.info(
        "doublets (%s of %s): %d of %d cells (%.2f%%; expected %.2f%%)",
        rule,
        "+".join(calls),
        combined.sum(),
        adata.n_obs,
        100 * adata.uns[key_added]["rate"],
        100 * rate,
    )
    return adata if copy else None


def _with_torch_threads(threads: int, func, *args, **kwargs):
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(max(1, int(threads)))
    try:
        return func(*args, **kwargs)
    finally:
        torch.set_num_threads(before)


# --------------------------------------------------------------------------------------------------------
# cell cycle


def cell_cycle_genes(species: str) -> tuple[list[str], list[str]]:
    """Tirosh et al. 2016 S-phase and G2/M genes in ``species`` symbols.

    Human: ``cell_cycle_tirosh2016.yaml`` plus the current symbols of the renamed genes (through the mouse
    list and one-to-one orthologs, e.g. MLF1IP -> CENPU); mouse: ``cell_cycle_mouse_hemascoper.tsv`` plus
    one-to-one orthologs of the human list.

    Parameters
    ----------
    species
        ``"mouse"`` or ``"human"``.

    Returns
    -------
    S-phase genes and G2/M genes.
    """
    import yaml

    from hscseq.genes import ortholog_map

    if species not in GENE_PATTERNS:
        raise input_error(
            f"unknown species {species!r} for cell-cycle genes.",
            fix=f"set species to one of {sorted(GENE_PATTERNS)} in the sample sheet.",
        )
    with open(resource_path("genesets", "cell_cycle_tirosh2016.yaml")) as fh:
        human = yaml.safe_load(fh)
    mouse = pd.read_csv(resource_path("genesets", "cell_cycle_mouse_hemascoper.tsv"), sep="\t", comment="#")
    mouse_s = mouse.loc[mouse["Phase"] == "G1-S", "Gene"].tolist()
    mouse_g2m = mouse.loc[mouse["Phase"] == "G2-M", "Gene"].tolist()
    if species == "human":
        m2h = ortholog_map("mouse", "human")
        s = list(human["s_genes"]) + [m2h[g] for g in mouse_s if g in m2h]
        g2m = list(human["g2m_genes"]) + [m2h[g] for g in mouse_g2m if g in m2h]
    else:
        h2m = ortholog_map("human", "mouse")
        s = mouse_s + [h2m[g] for g in human["s_genes"] if g in h2m]
        g2m = mouse_g2m + [h2m[g] for g in human["g2m_genes"] if g in h2m]
    s = list(dict.fromkeys(s))
    g2m = [g for g in dict.fromkeys(g2m) if g not in set(s)]
    return s, g2m


def score_cell_cycle(
    adata: ad.AnnData,
    *,
    species: str,
    layer: str | None = None,
    min_genes: int = 10,
    phase_rule: str = "otsu",
    random_state: int = 0,
    key_added: str = "cell_cycle",
    copy: bool = False,
) -> ad.AnnData | None:
    """S and G2/M scores and phase (Tirosh et al. 2016 genes) on library-size-normalised log counts.

    Uses ``scanpy.tl.score_genes_cell_cycle`` on a normalised copy of the counts (sparse; ``X`` itself is not
    changed). With fewer than ``min_genes`` S or G2/M genes measured, scores are NaN and phase is
    ``"unknown"`` (logged and recorded).

    Parameters
    ----------
    adata
        Raw counts in ``X`` (or in ``layer``).
    species
        ``"mouse"`` or ``"human"``.
    layer
        Layer holding the counts; ``None`` uses ``X``.
    min_genes
        Minimum number of measured genes of each phase list.
    phase_rule
        ``"otsu"`` (per-sample score cut-offs, :func:`assign_phase`) or ``"scanpy"`` (scores above 0).
    random_state
        Seed of the control-gene sampling.
    key_added
        ``uns`` key receiving ``params`` and the genes used.
    copy
        Return a modified copy instead of writing in place.

    Returns
    -------
    The modified copy if ``copy=True``, else ``None``.
    """
    import scanpy as sc

    adata = adata.copy() if copy else adata
    s_all, g2m_all = cell_cycle_genes(species)
    present = set(adata.var_names)
    s_genes = [g for g in s_all if g in present]
    g2m_genes = [g for g in g2m_all if g in present]
    if phase_rule not in ("otsu", "scanpy"):
        raise input_error(f"unknown phase rule {phase_rule!r}.", fix="use 'otsu' or 'scanpy'.")
    uns: dict[str, Any] = {
        "params": {
            "phase_rule": phase_rule,
            "species": species,
            "min_genes": int(min_genes),
            "random_state": int(random_state),
            "layer": layer or "X",
        },
        "s_genes": s_genes,
        "g2m_genes": g2m_genes,
    }
    if len(s_genes) < min_genes or len(g2m_genes) < min_genes:
        msg = (
            f"only {len(s_genes)} S and {len(g2m_genes)} G2/M genes measured (minimum {min_genes}); "
            "cell-cycle phase not assigned"
        )
        logger.warning(msg)
        adata.obs["S_score"] = np.nan
        adata.obs["G2M_score"] = np.nan
        adata.obs["phase"] = pd.Categorical(["unknown"] * adata.n_obs)
        uns["warning"] = msg
        adata.uns[key_added] = uns
        return adata if copy else None
    counts = _as_csr(adata.layers[layer] if layer is not None else adata.X).astype(np.float32)
    lib = np.asarray(counts.sum(axis=1)).ravel()
    norm = sp.csr_matrix(sp.diags((1e4 / np.maximum(lib, 1)).astype(np.float32)) @ counts)
    norm.data = np.log1p(norm.data)
    tmp = ad.AnnData(X=norm, obs=pd.DataFrame(index=adata.obs_names), var=pd.DataFrame(index=adata.var_names))
    sc.tl.score_genes_cell_cycle(tmp, s_genes=s_genes, g2m_genes=g2m_genes, random_state=random_state)
    adata.obs["S_score"] = tmp.obs["S_score"].to_numpy()
    adata.obs["G2M_score"] = tmp.obs["G2M_score"].to_numpy()
    if phase_rule == "scanpy":
        phase = tmp.obs["phase"].astype(str).to_numpy()
    else:
        phase, cuts = assign_phase(tmp.obs["S_score"].to_numpy(), tmp.obs["G2M_score"].to_numpy())
        uns["thresholds"] = cuts
    adata.obs["phase"] = pd.Categorical(phase, categories=["G1", "S", "G2M"])
    adata.uns[key_added] = uns
    counts_by_phase = adata.obs["phase"].value_counts()
    logger.info(
        "cell cycle (%d S, %d G2/M genes): %s",
        len(s_genes),
        len(g2m_genes),
        ", ".join(f"{k} {v}" for k, v in counts_by_phase.items()),
    )
    return adata if copy else None


def assign_phase(s_score: np.ndarray, g2m_score: np.ndarray) -> tuple[np.ndarray, dict[str, float]]:
    """Cell-cycle phase from S and G2/M scores with per-sample score cut-offs.

    scanpy calls a cell cycling when a score is above 0, i.e. above its control genes; on real and simulated
    data G1 cells often score slightly above 0, which calls many of them S. Here a score counts only above
    ``max(0, Otsu threshold of that score)`` (:func:`otsu_threshold`), which separates the cycling cells'
    high scores from the G1 bulk; a cell above a cut-off takes the phase of its higher score (as in scanpy),
    others are G1.

    Parameters
    ----------
    s_score
        S-phase score per cell.
    g2m_score
        G2/M score per cell.

    Returns
    -------
    Phase per cell (``"G1"``, ``"S"``, ``"G2M"``) and the two cut-offs used.
    """
    s = np.asarray(s_score, dtype=np.float64)
    g = np.asarray(g2m_score, dtype=np.float64)
    cut_s = max(0.0, otsu_threshold(s) or 0.0)
    cut_g = max(0.0, otsu_threshold(g) or 0.0)
    phase = np.full(s.shape, "G1", dtype=object)
    cycling = (s > cut_s) | (g > cut_g)
    phase[cycling & (s >= g)] = "S"
    phase[cycling & (g > s)] = "G2M"
    return phase.astype(str), {"S": float(cut_s), "G2M": float(cut_g)}


# --------------------------------------------------------------------------------------------------------
# filtering and its account


def qc_account(obs: pd.DataFrame, *, remove_doublets: bool = True) -> pd.DataFrame:
    """Per-cell QC account: one boolean column per criterion, the first failed criterion, and ``kept``.

    Parameters
    ----------
    obs
        ``obs`` annotated by :func:`adaptive_thresholds` and :func:`detect_doublets`.
    remove_doublets
        Whether predicted doublets are removed.

    Returns
    -------
    DataFrame indexed like ``obs`` with ``fail_<criterion>`` columns (see :data:`CRITERIA`), ``reason``
    (first failed criterion in :data:`CRITERIA` order, ``""`` if kept) and ``kept``.
    """
    cols = {
        "high_pct_mt": "qc_high_pct_mt",
        "low_counts": "qc_low_counts",
        "low_genes": "qc_low_genes",
        "high_counts": "qc_high_counts",
        "high_genes": "qc_high_genes",
        "doublet": "predicted_doublet",
    }
    out = pd.DataFrame(index=obs.index)
    for crit in CRITERIA:
        col = cols[crit]
        active = crit != "doublet" or remove_doublets
        out[f"fail_{crit}"] = obs[col].to_numpy(dtype=bool) if (col in obs and active) else False
    fails = out[[f"fail_{c}" for c in CRITERIA]].to_numpy()
    first = np.where(fails.any(axis=1), np.array(CRITERIA, dtype=object)[fails.argmax(axis=1)], "")
    out["reason"] = first.astype(str)
    out["kept"] = ~fails.any(axis=1)
    return out


def filter_cells(
    adata: ad.AnnData,
    *,
    sample: str | None = None,
    remove_doublets: bool = True,
    max_removed_fraction: float = 0.5,
    continue_on_excess_removal: bool = False,
    key_added: str = "qc_filter",
    copy: bool = False,
) -> ad.AnnData | None:
    """Remove cells failing any QC criterion; refuse to lose a sample silently.

    Criteria (:data:`CRITERIA`): the flags of :func:`adaptive_thresholds` and, if ``remove_doublets``,
    ``predicted_doublet`` of :func:`detect_doublets`. If more than ``max_removed_fraction`` of the cells
    would go, raises :class:`~hscseq.HscseqInputError` naming the sample and the criteria that removed them,
    unless ``continue_on_excess_removal`` (then a warning is logged and recorded in ``uns[key_added]``).

    Records in ``uns[key_added]``: ``n_cells_in``, ``n_cells_out``, ``removed`` (cells failing each
    criterion; a cell can fail several), ``removed_first`` (each removed cell counted once, under its
    first criterion), ``warnings`` and ``params``.

    Parameters
    ----------
    adata
        Annotated by :func:`adaptive_thresholds` (and :func:`detect_doublets`).
    sample
        Sample name for messages.
    remove_doublets
        Remove predicted doublets.
    max_removed_fraction
        Largest share of cells a sample may lose.
    continue_on_excess_removal
        Warn instead of stopping when more are removed.
    key_added
        ``uns`` key of the account.
    copy
        Return a filtered copy instead of filtering in place.

    Returns
    -------
    The filtered copy if ``copy=True``, else ``None``.
    """
    account = qc_account(adata.obs, remove_doublets=remove_doublets)
    n_in = adata.n_obs
    keep = account["kept"].to_numpy()
    removed = {c: int(account[f"fail_{c}"].sum()) for c in CRITERIA}
    first = {c: int((account["reason"] == c).sum()) for c in CRITERIA}
    n_removed = int((~keep).sum())
    fraction = n_removed / n_in if n_in else 1.0
    name = sample or "(unnamed)"
    warnings: list[str] = []
    if n_in == 0 or fraction > max_removed_fraction:
        worst = sorted(removed.items(), key=lambda kv: -kv[1])
        detail = ", ".join(f"{c}: {n}" for c, n in worst if n)
        msg = (
            f"QC would remove {n_removed} of {n_in} cells ({fraction:.0%}, more than the allowed "
            f"{max_removed_fraction:.0%}); the criterion removing most is {worst[0][0]!r} "
            f"(cells failing each criterion: {detail or 'none'})."
        )
        if not continue_on_excess_removal or n_removed == n_in:
            raise input_error(
                msg,
                sample=name,
                fix=f"inspect results/qc/{name}.png; if the sample is truly poor, drop it from the "
                "sample sheet; if a threshold is wrong for it, override it in "
                f"config qc.per_sample.{name}; or set qc.continue_on_excess_removal: true.",
            )
        logger.warning("!!! sample %r: %s Continuing because continue_on_excess_removal is set.", name, msg)
        warnings.append(msg)
    result = adata[keep].copy() if copy else adata
    if not copy:
        adata._inplace_subset_obs(keep)
    result.uns[key_added] = {
        "n_cells_in": int(n_in),
        "n_cells_out": int(keep.sum()),
        "n_removed": n_removed,
        "removed_fraction": float(fraction),
        "removed": removed,
        "removed_first": first,
        "warnings": warnings,
        "params": {
            "remove_doublets": bool(remove_doublets),
            "max_removed_fraction": float(max_removed_fraction),
            "continue_on_excess_removal": bool(continue_on_excess_removal),
        },
    }
    logger.info(
        "sample %r: kept %d of %d cells (removed %d: %s)",
        name,
        keep.sum(),
        n_in,
        n_removed,
        ", ".join(f"{c} {n}" for c, n in first.items() if n) or "none",
    )
    return result if copy else None


# --------------------------------------------------------------------------------------------------------
# stage functions


def resolve_settings(settings: Mapping[str, Any], sample: str) -> dict[str, Any]:
    """Global ``qc`` settings with the sample's overrides (``settings["per_sample"][sample]``) applied.

    Parameters
    ----------
    settings
        The ``qc`` config section.
    sample
        Sample name.

    Returns
    -------
    Complete settings (defaults of :data:`DEFAULTS` for missing keys), without ``per_sample``.
    """
    merged = {**DEFAULTS, **{k: v for k, v in settings.items() if k != "per_sample"}}
    per_sample = dict(settings.get("per_sample") or {})
    override = dict(per_sample.get(sample) or {})
    unknown = sorted(set(override) - (set(DEFAULTS) - {"per_sample"}))
    if unknown:
        raise input_error(
            f"unknown key(s) {unknown} in config qc.per_sample.{sample}.",
            sample=sample,
            fix=f"use only {sorted(set(DEFAULTS) - {'per_sample'})}.",
        )
    merged.update(override)
    merged.pop("per_sample", None)
    return merged


def _check_counts(adata: ad.AnnData, name: str, path: str) -> None:
    if adata.n_obs == 0 or adata.n_vars == 0:
        raise input_error(
            f"the ingested matrix is empty ({adata.n_obs} cells x {adata.n_vars} genes).",
            sample=name,
            path=path,
            fix="check the count matrix given in the sample sheet.",
        )
    x = _as_csr(adata.X)
    data = x.data[:1_000_000]
    if data.size and (np.any(data < 0) or np.any(np.abs(data - np.round(data)) > 1e-3)):
        raise input_error(
            "X does not hold raw counts (negative or non-integer values).",
            sample=name,
            path=path,
            fix="QC needs raw UMI counts; rerun ingest on the raw count matrix.",
        )


def run_qc(
    *,
    h5ad: str,
    filtered: str,
    summary: str,
    figure: str,
    sample: Mapping[str, Any],
    settings: Mapping[str, Any],
    cells: str | None = None,
    threads: int = 1,
) -> None:
    """QC of one sample: metrics, adaptive thresholds, doublets, cell cycle, filtering, outputs.

    Parameters
    ----------
    h5ad
        Ingested sample (raw counts in ``X``).
    filtered
        Output h5ad of the cells kept (QC columns in ``obs``, account in ``uns["hscseq"]["qc"]``).
    summary
        Output one-row TSV (cells in, removed by each criterion, doublets, cells out, thresholds, warnings).
    figure
        Output PNG: distributions with threshold lines, counts vs. genes coloured by % mito, doublet scores,
        cell cycle.
    sample
        The sample-sheet row (``sample``, ``species``, ...).
    settings
        The ``qc`` config section (per-sample overrides in ``settings["per_sample"]``).
    cells
        Optional output TSV (gzip if ``.gz``): the per-cell account of every cell in (metrics, scores,
        criteria failed, kept).
    threads
        CPU threads (SOLO).
    """
    name = str(sample["sample"])
    species = str(sample["species"])
    opts = resolve_settings(settings, name)
    if species not in GENE_PATTERNS:
        raise input_error(
            f"unknown species {species!r}.",
            sample=name,
            fix=f"use one of {sorted(GENE_PATTERNS)} in the sample sheet.",
        )
    adata = ad.read_h5ad(h5ad)
    _check_counts(adata, name, h5ad)
    if not sp.issparse(adata.X):
        adata.X = sp.csr_matrix(adata.X)
    warnings: list[str] = []

    qc_metrics(adata, species=species)
    if adata.uns["qc_metrics"]["n_genes"]["mt"] == 0:
        warnings.append(f"no mitochondrial genes ({GENE_PATTERNS[species]['mt']}) found: % mito not used")
    adaptive_thresholds(
        adata,
        n_mads=opts["n_mads"],
        mito_n_mads=opts["mito_n_mads"],
        mito_max_pct=opts["mito_max_pct"],
        mito_scale=str(opts["mito_scale"]),
        min_counts=opts["min_counts"],
        max_counts=opts["max_counts"],
        min_genes=opts["min_genes"],
        max_genes=opts["max_genes"],
        max_pct_mt=opts["max_pct_mt"],
    )
    # doublets are called among the cells that pass the metric thresholds: empty or broken droplets
    # would otherwise enter Scrublet's simulated doublets and SOLO's training set
    passing = ~adata.obs[
        ["qc_low_counts", "qc_high_counts", "qc_low_genes", "qc_high_genes", "qc_high_pct_mt"]
    ].to_numpy().any(axis=1)
    methods = list(opts["doublet_methods"])
    technology = str(sample.get("technology") or "droplet")
    if technology == "plate" and opts["expected_doublet_rate"] is None and methods:
        # one cell per well: a droplet loading rate does not apply (issue #13); set a rate to call doublets
        warnings.append(
            "plate-based sample: doublet calling off (set qc.per_sample.<sample>.expected_doublet_rate "
            "to call doublets); QC thresholds apply to read depth"
        )
        logger.info("sample %r: %s", name, warnings[-1])
        methods = []
    adata.obs["doublet_score"] = np.nan
    adata.obs["predicted_doublet"] = False
    if methods and passing.sum() >= 50:
        sub = adata[passing].copy()
        rate = opts["expected_doublet_rate"]
        if rate is None:
            # the rate follows the number of cells in the droplet run, not the cells passing QC
            rate = expected_doublet_rate(adata.n_obs, rate_per_1000_cells=opts["doublet_rate_per_1000_cells"])
        detect_doublets(
            sub,
            methods=methods,
            rule=opts["doublet_rule"],
            expected_rate=rate,
            solo_max_epochs=int(opts["solo_max_epochs"]),
            scrublet_n_prin_comps=int(opts["scrublet_n_prin_comps"]),
            scrublet_log_transform=bool(opts["scrublet_log_transform"]),
            scrublet_sim_doublet_ratio=float(opts["scrublet_sim_doublet_ratio"]),
            threads=threads,
            random_state=int(opts["seed"]),
        )
        extra = ["doublet_rank_score"] if "doublet_rank_score" in sub.obs else []
        for col in ["doublet_score", "predicted_doublet", *extra] + [
            f"{m}_{k}" for m in methods for k in ("score", "doublet")
        ]:
            values = sub.obs[col].to_numpy()
            full = np.full(adata.n_obs, False if values.dtype == bool else np.nan, dtype=values.dtype)
            full[passing] = values
            adata.obs[col] = full
        adata.uns["doublets"] = sub.uns["doublets"]
    elif methods:
        warnings.append(f"only {int(passing.sum())} cells pass the thresholds: doublet detection skipped")
        logger.warning("sample %r: %s", name, warnings[-1])
    score_cell_cycle(
        adata,
        species=species,
        min_genes=int(opts["min_cell_cycle_genes"]),
        phase_rule=str(opts["cell_cycle_phase_rule"]),
        random_state=int(opts["seed"]),
    )
    if "warning" in adata.uns["cell_cycle"]:
        warnings.append(adata.uns["cell_cycle"]["warning"])

    account = qc_account(adata.obs, remove_doublets=bool(opts["remove_doublets"]))
    before = adata.obs.copy()
    try:
        filter_cells(
            adata,
            sample=name,
            remove_doublets=bool(opts["remove_doublets"]),
            max_removed_fraction=float(opts["max_removed_fraction"]),
            continue_on_excess_removal=bool(opts["continue_on_excess_removal"]),
        )
    except HscseqInputError:
        _save_figure(before, account, adata.uns["qc_thresholds"]["thresholds"], name, figure)
        raise
    warnings.extend(adata.uns["qc_filter"]["warnings"])

    record = _qc_record(adata, opts, warnings)
    record["technology"] = technology
    uns_hscseq = dict(adata.uns.get("hscseq", {}))
    uns_hscseq["qc"] = record
    adata.uns["hscseq"] = uns_hscseq
    for key in ("qc_metrics", "qc_thresholds", "doublets", "cell_cycle", "qc_filter"):
        adata.uns.pop(key, None)
    drop = [c for c in adata.obs if c.startswith("qc_")]
    adata.obs = adata.obs.drop(columns=drop)
    adata.obs["predicted_doublet"] = adata.obs["predicted_doublet"].astype(bool)

    row = _summary_row(name, sample, record, before, account)
    write_h5ad(adata, filtered)
    write_table(pd.DataFrame([row]), summary, index=False)
    _save_figure(before, account, record["thresholds"], name, figure)
    if cells:
        table = pd.concat([before[[c for c in _CELL_COLUMNS if c in before]], account], axis=1)
        write_table(table.rename_axis("cell").reset_index(), cells, index=False)
    logger.info("sample %r: QC done, %d of %d cells kept", name, adata.n_obs, record["n_cells_in"])


_CELL_COLUMNS = (
    "total_counts",
    "n_genes_by_counts",
    "pct_counts_mt",
    "pct_counts_ribo",
    "pct_counts_hb",
    "complexity",
    "doublet_score",
    "doublet_rank_score",
    "scrublet_score",
    "solo_score",
    "scrublet_doublet",
    "solo_doublet",
    "predicted_doublet",
    "S_score",
    "G2M_score",
    "phase",
)


def _clean(obj):
    """Make a nested record storable in h5ad ``uns`` (no None, plain types)."""
    if isinstance(obj, Mapping):
        return {str(k): _clean(v) for k, v in obj.items() if v is not None}
    if isinstance(obj, list | tuple):
        return [_clean(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


def _qc_record(adata: ad.AnnData, opts: Mapping[str, Any], warnings: list[str]) -> dict:
    filt = adata.uns["qc_filter"]
    thr = adata.uns["qc_thresholds"]
    dbl = adata.uns.get("doublets", {})
    phases = adata.obs["phase"].value_counts(normalize=True)
    record = {
        "thresholds": dict(thr["thresholds"]),
        "threshold_source": dict(thr["source"]),
        "n_cells_in": filt["n_cells_in"],
        "n_cells_out": filt["n_cells_out"],
        "removed": dict(filt["removed"]),
        "removed_first": dict(filt["removed_first"]),
        "removed_fraction": filt["removed_fraction"],
        "doublets": {
            "rule": opts["doublet_rule"],
            "expected_rate": dbl.get("expected_rate", float("nan")),
            "rate": dbl.get("rate", 0.0),
            "agreement": dbl.get("agreement", float("nan")),
            "methods": {m: dict(v) for m, v in dbl.get("methods", {}).items()},
        },
        "cell_cycle": {
            "s_genes": len(adata.uns["cell_cycle"]["s_genes"]),
            "g2m_genes": len(adata.uns["cell_cycle"]["g2m_genes"]),
            "phase_fraction": {str(k): float(v) for k, v in phases.items()},
        },
        "metric_genes": dict(adata.uns["qc_metrics"]["n_genes"]),
        "warnings": list(warnings),
        "params": {k: (list(v) if isinstance(v, list | tuple) else v) for k, v in opts.items()},
    }
    return _clean(record)


def _summary_row(
    name: str, sample: Mapping[str, Any], record: dict, before: pd.DataFrame, account: pd.DataFrame
) -> dict:
    thr = record["thresholds"]
    dbl = record["doublets"]
    row: dict[str, Any] = {
        "sample": name,
        "species": sample.get("species", ""),
        "condition": sample.get("condition", ""),
        "cells_in": record["n_cells_in"],
    }
    for crit in CRITERIA:
        row[f"removed_{crit}"] = record["removed"][crit]
    row["removed_total"] = record["n_cells_in"] - record["n_cells_out"]
    row["removed_fraction"] = round(record["removed_fraction"], 4)
    row["cells_out"] = record["n_cells_out"]
    row["doublets_expected_rate"] = round(dbl["expected_rate"], 4)
    for method, meta in dbl["methods"].items():
        row[f"doublets_{method}"] = meta["n_called"]
        row[f"doublet_rate_{method}"] = round(meta["rate"], 4)
    row["doublets_combined"] = int(before["predicted_doublet"].sum())
    row["doublet_rate_combined"] = round(dbl["rate"], 4)
    row["doublet_rule"] = dbl["rule"]
    for key in ("min_counts", "max_counts", "min_genes", "max_genes", "max_pct_mt"):
        row[f"threshold_{key}"] = round(thr[key], 2)
        row[f"threshold_{key}_source"] = record["threshold_source"][key]
    row["median_counts_out"] = float(before.loc[account["kept"].to_numpy(), "total_counts"].median())
    row["median_genes_out"] = float(before.loc[account["kept"].to_numpy(), "n_genes_by_counts"].median())
    for phase in ("G1", "S", "G2M"):
        row[f"fraction_{phase}"] = round(record["cell_cycle"]["phase_fraction"].get(phase, 0.0), 4)
    row["warnings"] = " | ".join(record["warnings"])
    return row


def _save_figure(
    obs: pd.DataFrame, account: pd.DataFrame, thresholds: Mapping[str, float], name: str, path: str
) -> None:
    """Per-sample QC figure: distributions with thresholds, counts vs genes by % mito, doublets, cycle."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 3, figsize=(13, 7.5))
    kept = account["kept"].to_numpy()
    panels = [
        ("total_counts", "total counts (log10)", True, ("min_counts", "max_counts")),
        ("n_genes_by_counts", "detected genes (log10)", True, ("min_genes", "max_genes")),
        ("pct_counts_mt", "% mitochondrial counts", False, ("max_pct_mt",)),
    ]
    for ax, (col, label, log, keys) in zip(axes[0], panels, strict=True):
        values = obs[col].to_numpy(dtype=np.float64)
        values = np.log10(np.maximum(values, 1)) if log else values
        ax.hist(values, bins=60, color="0.6")
        for key in keys:
            t = thresholds[key]
            ax.axvline(np.log10(max(t, 1)) if log else t, color="crimson", ls="--", lw=1.2)
        ax.set_xlabel(label)
        ax.set_ylabel("cells")
    ax = axes[1, 0]
    sc_ = ax.scatter(
        obs["total_counts"],
        obs["n_genes_by_counts"],
        c=obs["pct_counts_mt"],
        s=4,
        cmap="viridis",
        rasterized=True,
    )
    ax.scatter(
        obs["total_counts"][~kept],
        obs["n_genes_by_counts"][~kept],
        s=14,
        facecolors="none",
        edgecolors="crimson",
        lw=0.5,
        label="removed",
    )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("total counts")
    ax.set_ylabel("detected genes")
    ax.legend(loc="lower right", fontsize=8)
    fig.colorbar(sc_, ax=ax, label="% mito")
    ax = axes[1, 1]
    score = obs["doublet_score"].to_numpy(dtype=np.float64)
    ok = np.isfinite(score)
    if ok.any():
        called = obs["predicted_doublet"].to_numpy(dtype=bool)
        ax.hist(
            [score[ok & ~called], score[ok & called]],
            bins=50,
            stacked=True,
            color=["0.6", "crimson"],
            label=["singlet", "doublet (combined call)"],
        )
        ax.legend(fontsize=8)
    ax.set_xlabel("doublet score (mean rank of the methods, or the first method's score)")
    ax.set_ylabel("cells")
    ax = axes[1, 2]
    if obs["S_score"].notna().any():
        for phase, colour in (("G1", "0.6"), ("S", "tab:blue"), ("G2M", "tab:orange")):
            m = (obs["phase"] == phase).to_numpy()
            ax.scatter(obs["S_score"][m], obs["G2M_score"][m], s=4, c=colour, label=phase, rasterized=True)
        ax.legend(fontsize=8, markerscale=3)
    ax.set_xlabel("S score")
    ax.set_ylabel("G2/M score")
    n_out = int(kept.sum())
    fig.suptitle(f"{name}: {n_out} of {len(kept)} cells kept", fontsize=12)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


def run_qc_summary(*, summaries: Sequence[str], table: str) -> None:
    """Concatenate the per-sample QC summaries into one table (one row per sample).

    Parameters
    ----------
    summaries
        Per-sample one-row TSVs written by :func:`run_qc`.
    table
        Output TSV (``results/tables/qc_summary.tsv``).
    """
    frames = []
    for path in summaries:
        if not Path(path).is_file():
            raise input_error(
                "the per-sample QC summary does not exist.",
                path=path,
                fix="rerun the qc rule for this sample.",
            )
        frames.append(pd.read_csv(path, sep="\t", keep_default_na=False, na_values=[""]))
    df = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    if "warnings" in df:
        df["warnings"] = df["warnings"].fillna("")
        for row in df.itertuples():
            if row.warnings:
                logger.warning("sample %r: %s", row.sample, row.warnings)
    write_table(df, table, index=False)
    logger.info("QC summary of %d samples written to %s", len(df), table)
