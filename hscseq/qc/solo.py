"""SOLO (scvi-tools) on one sample's raw counts: an scVI model, then the SOLO doublet classifier."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd

from hscseq.qc.metrics import _as_csr

#: Simulated doublets per cell in SOLO's training set (scvi-tools' default, used in :func:`_run_solo`).
SOLO_DOUBLET_RATIO = 2


def _run_solo(
    adata: ad.AnnData,
    *,
    max_epochs: int,
    seed: int,
    threads: int | None = None,
    max_steps: int | None = None,
) -> tuple[np.ndarray, np.ndarray, dict]:
    """SOLO (scvi-tools) on raw counts: an scVI model, then the SOLO classifier on its latent space.

    Both train through :func:`hscseq._scvi.train` (seed, torch threads, a GPU when present), each for
    ``max_epochs`` capped at ``max_steps`` optimiser steps (:func:`hscseq._scvi.epochs_for_steps`; the
    classifier sees the cells plus their simulated doublets); the classifier keeps SOLO's own early stopping.
    """
    import scanpy as sc
    import scvi

    from hscseq import _scvi

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
    vae_epochs = _scvi.epochs_for_steps(
        tmp.n_obs, max_epochs, max_steps=max_steps, batch_size=_scvi.batch_size(tmp.n_obs)
    )
    trained = _scvi.train(vae, max_epochs=vae_epochs, seed=seed, threads=threads)
    solo = scvi.external.SOLO.from_scvi_model(vae, doublet_ratio=SOLO_DOUBLET_RATIO)
    n_solo = int(solo.adata.n_obs)
    solo_epochs = _scvi.epochs_for_steps(
        n_solo, max_epochs, max_steps=max_steps, batch_size=_scvi.batch_size(n_solo)
    )
    _scvi.train(solo, max_epochs=solo_epochs, seed=seed, threads=threads, early_stopping=True)
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
            "max_steps": None if max_steps is None else int(max_steps),
            "epochs": {"scvi": int(vae_epochs), "classifier": int(solo_epochs)},
            "n_genes": int(tmp.n_vars),
            "device": trained["device"],
        },
    )
