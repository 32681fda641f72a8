"""Scrublet (through scanpy) on one sample's raw counts, with Otsu's threshold on the simulated doublets.

Scrublet's defaults for small samples (``qc.scrublet_*`` in the config): 10 principal components (not 30; a
sample of a few hundred to a few thousand blood cells has about ten cell states, and extra components add
noise to the kNN), log-transformed normalised counts and 4 simulated doublets per cell (a denser reference of
simulated doublets for small samples). On the simulator (demo at half scale, 3 seeds) this raised Scrublet's
AUC of planted doublets from ~0.91 to ~0.95.

Memory: ``scanpy.pp.scrublet`` z-scores the observed and simulated cells' HVG matrix densely (float64,
held several times: the centred copy, a dense-as-sparse copy, the array handed to PCA), so its peak grows
with (1 + ``sim_doublet_ratio``) x cells x HVGs: 17.6 GB for a 25,000-cell sample with 4 simulated
doublets per cell (3.0 GB this way). :func:`_run_scrublet` runs the same steps (scanpy's preprocessing
functions, scanpy's ``Scrublet`` kNN classifier) but z-scores implicitly: the HVG matrices are scaled by
the observed genes' standard deviations (sparse) and scikit-learn's ARPACK PCA centres them without
densifying (:func:`zscore_pca`, the same decomposition as scanpy's dense PCA, same start vector). Scores
agree with ``scanpy.pp.scrublet`` to numerical precision (tested).
"""

from __future__ import annotations

import logging

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from hscseq.qc.metrics import _as_csr
from hscseq.qc.settings import DEFAULT_SETTINGS as _D
from hscseq.qc.thresholds import otsu_threshold

logger = logging.getLogger(__name__)


def zscore_pca(
    obs: sp.spmatrix, sim: sp.spmatrix, *, n_comps: int, random_state: np.random.RandomState
) -> tuple[np.ndarray, np.ndarray]:
    """PCA of the observed cells' z-scored genes; both matrices projected on it. Nothing densified.

    z = (x - mean_obs) / sd_obs (sd with ddof 1, as scanpy's); the scaling is applied to the sparse
    matrices and scikit-learn's ARPACK PCA centres implicitly, so the components are those of
    ``scanpy.pp.scrublet``'s dense z-scored PCA (same ARPACK start vector from ``random_state``).
    """
    from sklearn.decomposition import PCA

    obs = sp.csr_matrix(obs, dtype=np.float64)
    n = obs.shape[0]
    mean = np.asarray(obs.mean(axis=0)).ravel()
    var = (np.asarray(obs.multiply(obs).mean(axis=0)).ravel() - mean**2) * n / max(n - 1, 1)
    scale = sp.diags(1.0 / np.sqrt(np.clip(var, np.finfo(float).tiny, None)))
    obs_s = obs @ scale
    sim_s = sp.csr_matrix(sim, dtype=np.float64) @ scale
    pca = PCA(n_components=n_comps, svd_solver="arpack", random_state=random_state).fit(obs_s)
    return pca.transform(obs_s), pca.transform(sim_s)


def knn_doublet_scores(
    manifold_obs: np.ndarray,
    manifold_sim: np.ndarray,
    *,
    n_neighbors: int,
    expected_rate: float,
    max_sim_scored: int | None = None,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Scrublet's kNN doublet classifier (Wolock et al. 2019), scoring only the cells asked for.

    Every observed and simulated cell is a neighbour candidate; ``k = round(n_neighbors * (1 + n_sim /
    n_obs))`` neighbours (the cell itself first, not counted) are searched for every observed cell and
    for every simulated cell, or a seeded subsample of ``max_sim_scored`` of them (their scores only set
    Scrublet's threshold); with every cell scored the scores are scanpy's exact path's (tested). With ``q =
    (simulated neighbours + 1) / (k + 2)``, ``r = n_sim / n_obs`` and ``rho = expected_rate``, the score is
    ``q rho / r / (1 - rho - q (1 - rho - rho / r))``.
    Returns the observed cells' scores and the scored simulated cells' scores.
    """
    from sklearn.neighbors import NearestNeighbors

    n_obs, n_sim = len(manifold_obs), len(manifold_sim)
    points = np.vstack([manifold_obs, manifold_sim])
    is_sim = np.r_[np.zeros(n_obs, bool), np.ones(n_sim, bool)]
    sim_rows = np.arange(n_sim)
    if max_sim_scored is not None and n_sim > max_sim_scored:
        sim_rows = np.sort(
            np.random.default_rng([seed, 31]).choice(n_sim, int(max_sim_scored), replace=False)
        )
    queries = np.r_[np.arange(n_obs), n_obs + sim_rows]
    k = round(n_neighbors * (1 + n_sim / float(n_obs)))
    neighbours = (
        NearestNeighbors(n_neighbors=k).fit(points).kneighbors(points[queries], return_distance=False)
    )
    # a simulated cell's own position (first among its neighbours) is not one of its simulated neighbours
    q = (is_sim[neighbours].sum(axis=1) - is_sim[queries] + 1.0) / (k + 2.0)
    rho, r = float(expected_rate), n_sim / float(n_obs)
    scores = q * rho / r / (1.0 - rho - q * (1.0 - rho - rho / r))
    return scores[:n_obs], scores[n_obs:]


def _scrublet_inputs(
    counts: sp.spmatrix, names: pd.Index, *, log_transform: bool, sim_doublet_ratio: float, seed: int
) -> tuple[ad.AnnData, ad.AnnData]:
    """scanpy.pp.scrublet's preprocessing: observed and simulated cells, normalised, on the HVGs."""
    import scanpy as sc

    obs = ad.AnnData(X=_as_csr(counts).astype(np.float32), obs=pd.DataFrame(index=names))
    sc.pp.filter_genes(obs, min_cells=3)
    sc.pp.filter_cells(obs, min_genes=3)
    obs.layers["raw"] = obs.X.copy()
    sc.pp.normalize_total(obs)
    obs.layers["log1p"] = obs.X.copy()
    sc.pp.log1p(obs, layer="log1p")
    sc.pp.highly_variable_genes(obs, layer="log1p")
    del obs.layers["log1p"]
    del obs.uns["log1p"]  # X is not logged yet: scanpy's log1p below would warn it "already log-transformed"
    obs = obs[:, obs.var["highly_variable"].to_numpy()].copy()
    sim = sc.pp.scrublet_simulate_doublets(
        obs, layer="raw", sim_doublet_ratio=sim_doublet_ratio, random_seed=seed
    )
    del obs.layers["raw"]
    for a in (obs, sim):
        if log_transform:
            sc.pp.log1p(a)
        sc.pp.normalize_total(a, target_sum=1e6)
    return obs, sim


def _run_scrublet(
    adata: ad.AnnData,
    *,
    rate: float,
    seed: int,
    n_prin_comps: int = _D.scrublet_n_prin_comps,
    log_transform: bool = _D.scrublet_log_transform,
    sim_doublet_ratio: float = _D.scrublet_sim_doublet_ratio,
    max_sim_scored: int | None = _D.scrublet_max_sim_scored,
    approx_neighbors: bool = False,
) -> tuple[np.ndarray, np.ndarray, dict]:
    """Scrublet (scanpy's steps, sparse z-scoring: module doc); threshold by :func:`otsu_threshold`.

    The kNN classifier is :func:`knn_doublet_scores` (exact; at most ``max_sim_scored`` simulated cells
    scored for the threshold), or scanpy's with ``approx_neighbors`` (pynndescent, every cell scored).

    Cells Scrublet filters out (fewer than 3 genes) get a NaN score. Besides the calls, returns Scrublet's
    own estimate of the sample's doublet rate: the share of cells called divided by the share of simulated
    doublets that are detectable (above the threshold).
    """
    # scanpy's Scrublet class (private module; scanpy is pinned in constraints.txt) scores the kNN graph
    from scanpy.preprocessing._scrublet.core import Scrublet

    obs, sim = _scrublet_inputs(
        adata.X, adata.obs_names, log_transform=log_transform, sim_doublet_ratio=sim_doublet_ratio, seed=seed
    )
    scrub = Scrublet(obs.X, expected_doublet_rate=rate, stdev_doublet_rate=0.02, random_state=seed)
    n_comps = int(max(2, min(n_prin_comps, obs.n_obs - 1, obs.n_vars - 1)))
    scrub.set_manifold(*zscore_pca(obs.X, sim.X, n_comps=n_comps, random_state=scrub._random_state))
    if approx_neighbors:  # pynndescent (0.5.13: constraints.txt); `levers.py scrublet` compares the two
        scrub.calculate_doublet_scores(use_approx_neighbors=True, distance_metric="euclidean")
        obs_scores, sim = scrub.doublet_scores_obs_, scrub.doublet_scores_sim_
    else:
        obs_scores, sim = knn_doublet_scores(
            scrub.manifold_obs_,
            scrub.manifold_sim_,
            n_neighbors=scrub._n_neighbors,
            expected_rate=rate,
            max_sim_scored=max_sim_scored,
            seed=seed,
        )
    scores = pd.Series(obs_scores, index=obs.obs_names).reindex(adata.obs_names).to_numpy(dtype=np.float64)
    sim = np.asarray(sim, dtype=np.float64)
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
        "sim_scored": len(sim),
    }
    return scores, calls, info
