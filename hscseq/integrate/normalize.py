"""Normalisation: raw counts kept in a layer, X log-normalised (sparse throughout)."""

from __future__ import annotations

import anndata as ad
import numpy as np
import scipy.sparse as sp

from hscseq.integrate._common import _check_counts


def normalize(
    adata: ad.AnnData, *, target_sum: float = 1e4, counts_layer: str = "counts", copy: bool = False
) -> ad.AnnData | None:
    """Keep raw counts in a layer and log-normalise X.

    Parameters
    ----------
    adata
        Cells x genes with raw counts in X (sparse CSR is kept sparse).
    target_sum
        Counts per cell after normalisation, before ``log1p``.
    counts_layer
        Layer that receives a copy of the raw counts.
    copy
        Return a modified copy instead of working in place.

    Returns
    -------
    ``None``, or the modified copy when ``copy=True``. Sets ``layers[counts_layer]``, X (log1p of normalised
    counts, float32) and ``uns["normalize"]["params"]``.
    """
    import scanpy as sc

    adata = adata.copy() if copy else adata
    _check_counts(adata.X, what="X")
    if sp.issparse(adata.X) and not sp.isspmatrix_csr(adata.X):
        adata.X = sp.csr_matrix(adata.X)
    adata.X = adata.X.astype(np.float32)
    adata.layers[counts_layer] = adata.X.copy()
    sc.pp.normalize_total(adata, target_sum=target_sum)
    sc.pp.log1p(adata)
    adata.uns.pop("log1p", None)
    adata.uns["normalize"] = {
        "params": {"target_sum": float(target_sum), "counts_layer": counts_layer, "log1p": True}
    }
    return adata if copy else None
