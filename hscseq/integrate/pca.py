"""Numeric cores of the ``none`` and ``harmony`` methods: PCA scores, Harmony-corrected PCs (arrays out)."""

from __future__ import annotations

import numpy as np
import pandas as pd


def pca(x, *, n_comps: int = 50, seed: int = 0) -> np.ndarray:
    """PCA scores (cells x ``n_comps``) of a log-normalised matrix, sparse input never densified."""
    import scanpy as sc

    n_comps = int(min(n_comps, x.shape[0] - 1, x.shape[1] - 1))
    return np.asarray(sc.pp.pca(x, n_comps=n_comps, random_state=seed), dtype=np.float32)


def harmony(pcs: np.ndarray, batch: np.ndarray, *, seed: int = 0, max_iter: int = 20) -> np.ndarray:
    """Harmony-corrected PCs (cells x PCs) from ``harmonypy.run_harmony``; ``batch``: one label per cell."""
    import harmonypy

    meta = pd.DataFrame({"batch": pd.Categorical(np.asarray(batch).astype(str))})
    ho = harmonypy.run_harmony(
        np.asarray(pcs, dtype=np.float64),
        meta,
        ["batch"],
        random_state=seed,
        max_iter_harmony=max_iter,
        verbose=False,
    )
    z = np.asarray(ho.Z_corr)
    # harmonypy 2.x returns cells x PCs; 0.0.x returned PCs x cells
    if z.shape != pcs.shape:
        z = z.T
    if z.shape != pcs.shape:
        msg = f"harmonypy returned an embedding of shape {z.shape} for input {pcs.shape}"
        raise RuntimeError(msg)
    return z.astype(np.float32)
