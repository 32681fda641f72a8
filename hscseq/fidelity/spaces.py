"""Spaces in which distances to the reference are measured."""

from __future__ import annotations

import logging

import anndata as ad
import numpy as np
import scipy.sparse as sp

logger = logging.getLogger(__name__)


def uncorrected_pca(
    adata: ad.AnnData,
    *,
    n_comps: int = 20,
    key_added: str = "X_pca_uncorrected",
    random_state: int = 0,
    copy: bool = False,
) -> ad.AnnData | None:
    """PCA of the scaled log-normalised highly variable genes, without any batch correction.

    The space in which :func:`run_fidelity` measures how far query cells are from the reference: a query-only
    state cannot be aligned away here, and the held-out-donor null measures donor-to-donor shifts in the same
    space. X stays sparse (implicitly centred PCA).

    Parameters
    ----------
    adata
        Log-normalised X; ``var["highly_variable"]`` (all genes when absent) and ``var["hscseq_excluded"]``
        (dropped when present).
    n_comps
        Number of principal components.
    key_added
        ``obsm`` key of the result; parameters in ``uns[key_added]["params"]``.
    random_state
        Seed of the solver.
    copy
        Return a modified copy instead of working in place.

    Returns
    -------
    ``None``, or the modified copy when ``copy=True``.
    """
    import scanpy as sc

    adata = adata.copy() if copy else adata
    keep = np.ones(adata.n_vars, dtype=bool)
    if "highly_variable" in adata.var:
        keep &= adata.var["highly_variable"].to_numpy(dtype=bool)
    if "hscseq_excluded" in adata.var:
        keep &= ~adata.var["hscseq_excluded"].to_numpy(dtype=bool)
    x = sp.csr_matrix(adata.X[:, keep], dtype=np.float32)
    # unit variance per gene (as sc.pp.scale) while X stays sparse: divide by the std; the PCA centres
    # implicitly. Without it a few highly expressed genes dominate and small query-only programmes vanish.
    mean = np.asarray(x.mean(axis=0)).ravel()
    sq = np.asarray(x.multiply(x).mean(axis=0)).ravel()
    std = np.sqrt(np.maximum(sq - mean**2, 0.0))
    x = x @ sp.diags((1.0 / np.where(std > 0, std, 1.0)).astype(np.float32))
    sub = ad.AnnData(X=sp.csr_matrix(x))
    n_comps = int(min(n_comps, keep.sum() - 1, adata.n_obs - 1))
    sc.pp.pca(sub, n_comps=n_comps, random_state=random_state)
    adata.obsm[key_added] = np.asarray(sub.obsm["X_pca"], dtype=np.float32)
    adata.uns[key_added] = {
        "params": {"n_comps": n_comps, "n_genes": int(keep.sum()), "random_state": random_state}
    }
    return adata if copy else None


def novelty_rep(adata: ad.AnnData, settings, *, random_state: int | None = None) -> str | None:
    """The ``obsm`` key where distances to the reference are measured, from ``settings.novelty_space``.

    ``uncorrected``: :func:`uncorrected_pca` (computed when ``obsm["X_pca_uncorrected"]`` is missing, so a
    subset of cells, e.g. a control, keeps the space of the full object); ``integrated``: ``None`` (the latent
    the labels are voted in).
    """
    if settings.novelty_space == "integrated":
        return None
    key = "X_pca_uncorrected"
    if key not in adata.obsm:
        uncorrected_pca(
            adata, key_added=key, random_state=settings.seed if random_state is None else random_state
        )
    return key
