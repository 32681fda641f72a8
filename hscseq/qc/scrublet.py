"""Scrublet (through scanpy) on one sample's raw counts, with Otsu's threshold on the simulated doublets.

Scrublet's defaults for small samples (``qc.scrublet_*`` in the config): 10 principal components (not 30; a
sample of a few hundred to a few thousand blood cells has about ten cell states, and extra components add
noise to the kNN), log-transformed normalised counts and 4 simulated doublets per cell (a denser reference of
simulated doublets for small samples). On the simulator (demo at half scale, 3 seeds) this raised Scrublet's
AUC of planted doublets from ~0.91 to ~0.95.
"""

from __future__ import annotations

import logging

import anndata as ad
import numpy as np
import pandas as pd

from hscseq.qc.metrics import _as_csr
from hscseq.qc.settings import DEFAULT_SETTINGS as _D
from hscseq.qc.thresholds import otsu_threshold

logger = logging.getLogger(__name__)


def _run_scrublet(
    adata: ad.AnnData,
    *,
    rate: float,
    seed: int,
    n_prin_comps: int = _D.scrublet_n_prin_comps,
    log_transform: bool = _D.scrublet_log_transform,
    sim_doublet_ratio: float = _D.scrublet_sim_doublet_ratio,
    approx_neighbors: bool = False,
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
    # approx_neighbors=False (exact scikit-learn kNN) by default: pynndescent >= 0.6 returned a scipy
    # csr_array that scanpy 1.11.5 cannot read (fails from ~4k cells on); constraints.txt now pins 0.5.13,
    # with which the approximate path works too (`tests/benchmarks/levers.py scrublet` compares the two).
    # The placeholder threshold makes Scrublet divide by a zero detectable fraction: silenced here.
    with np.errstate(divide="ignore", invalid="ignore"):
        sc.pp.scrublet(
            tmp,
            expected_doublet_rate=rate,
            threshold=1.0,
            n_prin_comps=int(max(2, min(n_prin_comps, tmp.n_obs - 1, tmp.n_vars - 1))),
            log_transform=bool(log_transform),
            sim_doublet_ratio=float(sim_doublet_ratio),
            use_approx_neighbors=approx_neighbors,
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
