"""Spaces in which distances to the reference are measured.

``uncorrected``: a PCA of the scaled highly variable genes, no batch correction (:func:`uncorrected_pca`).
``aligned``: the same PCA with one shift per batch removed (:func:`aligned_pca`). The shift of a batch is the
median over cell types of (mean of the batch's cells of that type - the type's mean over reference donors),
so a gene-wise donor or batch effect shared by the cell types of a batch (ComBat's location model, Johnson et
al. 2007; the batch vector MNN estimates from matched cells, Haghverdi et al. 2018) leaves the space, while a
state found in one batch only is not moved onto the reference: it has no type to be matched with, and its
cells are trimmed from the anchors. Reference batches use their labels; a query batch uses kNN labels from
the shared (integrated) latent and only types with enough anchor cells; a batch with fewer than
:data:`MIN_ANCHOR_TYPES` such types keeps its position (logged).
"""

from __future__ import annotations

import logging

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from hscseq.fidelity.ensemble import _labelled

logger = logging.getLogger(__name__)

#: Anchor cells a type needs in a batch to count towards that batch's shift.
MIN_ANCHOR_CELLS = 20
#: Types a batch needs to get a shift (the median over fewer types is not robust to one mislabelled type).
MIN_ANCHOR_TYPES = 3
#: Shift estimates per query batch (the first on every confident cell, each next one on the cells within
#: the reference cells' ``ANCHOR_QUANTILE`` distance of their type's mean after the previous shift).
ANCHOR_ROUNDS = 3
ANCHOR_QUANTILE = 0.9


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


def _type_means(x: np.ndarray, keys: np.ndarray, select: np.ndarray, min_cells: int) -> dict:
    """Mean of ``x`` per key (e.g. type) over the selected rows, for keys with at least ``min_cells`` rows."""
    out = {}
    for k in np.unique(keys[select]):
        rows = select & (keys == k)
        if rows.sum() >= min_cells:
            out[k] = x[rows].mean(axis=0)
    return out


def _median_shift(means: dict, grand: dict, min_types: int) -> np.ndarray | None:
    diffs = [means[t] - grand[t] for t in means if t in grand]
    return np.median(np.vstack(diffs), axis=0) if len(diffs) >= min_types else None


def batch_shifts(
    x: np.ndarray,
    batch: np.ndarray,
    labels: np.ndarray,
    is_reference: np.ndarray,
    usable: np.ndarray,
    *,
    min_cells: int = MIN_ANCHOR_CELLS,
    min_types: int = MIN_ANCHOR_TYPES,
    rounds: int = ANCHOR_ROUNDS,
    quantile: float = ANCHOR_QUANTILE,
) -> tuple[dict[str, np.ndarray], dict[str, int]]:
    """Per-batch shift of cells x dims ``x`` (numeric core of :func:`aligned_pca`; module doc).

    ``labels``: reference labels for reference cells, predicted labels for the others; ``usable``: query
    cells whose label may anchor (reference cells always do). A batch holding reference cells is shifted by
    its reference cells alone. Returns ``{batch: shift}`` (zeros where no shift could be estimated) and
    ``{batch: types used}`` (0 when not aligned).
    """
    batch = np.asarray(batch).astype(str)
    labels = np.asarray(labels).astype(str)
    is_reference = np.asarray(is_reference, dtype=bool)
    anchors = is_reference | np.asarray(usable, dtype=bool)
    ref_batches = [b for b in np.unique(batch[is_reference])]
    per_batch = {b: _type_means(x, labels, is_reference & (batch == b), min_cells) for b in ref_batches}
    types = sorted({t for m in per_batch.values() for t in m})
    grand = {t: np.mean([m[t] for m in per_batch.values() if t in m], axis=0) for t in types}
    zero = np.zeros(x.shape[1])
    shifts: dict[str, np.ndarray] = {}
    used: dict[str, int] = {}
    for b in ref_batches:
        shift = _median_shift(per_batch[b], grand, min_types)
        shifts[b], used[b] = (zero, 0) if shift is None else (shift, len(per_batch[b]))
    # how far reference cells lie from their type's mean once their batch is aligned: the anchor radius
    radius = {}
    for t in types:
        rows = np.flatnonzero(is_reference & (labels == t))
        aligned = x[rows] - np.vstack([shifts[b] for b in batch[rows]])
        radius[t] = float(np.quantile(np.linalg.norm(aligned - grand[t], axis=1), quantile))
    known = np.isin(labels, types)
    for b in np.unique(batch[~np.isin(batch, ref_batches)]):
        keep = anchors & known & (batch == b)
        shifts[b], used[b] = zero, 0
        for _ in range(rounds):
            means = _type_means(x, labels, keep, min_cells)
            shift = _median_shift(means, grand, min_types)
            if shift is None:
                break
            shifts[b], used[b] = shift, len(means)
            rows = np.flatnonzero(anchors & known & (batch == b))
            centre = np.vstack([grand[t] for t in labels[rows]])
            limit = np.array([radius[t] for t in labels[rows]])
            keep = np.zeros(len(x), dtype=bool)
            keep[rows[np.linalg.norm(x[rows] - shift - centre, axis=1) <= limit]] = True
    return shifts, used


def _vote_labels(
    latent: np.ndarray, ref_idx: np.ndarray, ref_labels: np.ndarray, query_idx: np.ndarray, k: int
):
    """Majority label of each query cell's ``k`` nearest reference cells in ``latent`` and its vote share."""
    from sklearn.neighbors import NearestNeighbors

    k = int(min(k, len(ref_idx)))
    nn = NearestNeighbors(n_neighbors=k).fit(latent[ref_idx])
    neigh = nn.kneighbors(latent[query_idx], return_distance=False)
    classes, codes = np.unique(ref_labels, return_inverse=True)
    counts = np.zeros((len(query_idx), len(classes)))
    np.add.at(counts, (np.repeat(np.arange(len(query_idx)), k), codes[neigh].ravel()), 1.0)
    return classes[counts.argmax(axis=1)], counts.max(axis=1) / k


def aligned_pca(
    adata: ad.AnnData,
    *,
    reference_key: str = "reference_label",
    use_rep: str = "X_integrated",
    batch_key: str = "batch",
    n_neighbors: int = 15,
    min_vote: float = 0.5,
    key_added: str = "X_pca_aligned",
    random_state: int = 0,
    copy: bool = False,
) -> ad.AnnData | None:
    """:func:`uncorrected_pca` with each batch's shared shift removed (module doc; :func:`batch_shifts`).

    Query cells anchor with the label most of their ``n_neighbors`` nearest reference cells in ``use_rep``
    (the shared latent) carry, when at least ``min_vote`` of them agree. Parameters, the types each batch was
    aligned on and the shift lengths go to ``uns[key_added]``.
    """
    adata = adata.copy() if copy else adata
    if "X_pca_uncorrected" not in adata.obsm:
        uncorrected_pca(adata, random_state=random_state)
    x = np.asarray(adata.obsm["X_pca_uncorrected"], dtype=float)
    ref = (
        _labelled(adata.obs[reference_key].astype(object))
        if reference_key in adata.obs
        else np.zeros(adata.n_obs, bool)
    )
    labels = np.where(ref, adata.obs[reference_key].astype(str).to_numpy(), "")
    usable = np.zeros(adata.n_obs, dtype=bool)
    query = np.flatnonzero(~ref)
    if use_rep in adata.obsm and ref.any() and len(query):
        voted, share = _vote_labels(
            np.asarray(adata.obsm[use_rep]), np.flatnonzero(ref), labels[ref], query, n_neighbors
        )
        labels[query], usable[query] = voted, share >= min_vote
    elif len(query):
        logger.warning("aligned novelty space: no shared latent %r; query batches are not aligned", use_rep)
    batch = (
        adata.obs[batch_key].astype(str).to_numpy() if batch_key in adata.obs else np.full(adata.n_obs, "b")
    )
    shifts, used = batch_shifts(x, batch, labels, ref, usable)
    adata.obsm[key_added] = (x - np.vstack([shifts[b] for b in batch])).astype(np.float32)
    for b in sorted(shifts):
        if used[b]:
            logger.info(
                "aligned novelty space: batch %s shifted by %.2f (%d types)",
                b,
                np.linalg.norm(shifts[b]),
                used[b],
            )
        else:
            logger.warning(
                "aligned novelty space: batch %s has fewer than %d types with %d anchor cells; not aligned",
                b, MIN_ANCHOR_TYPES, MIN_ANCHOR_CELLS,
            )  # fmt: skip
    adata.uns[key_added] = {
        "params": {
            "reference_key": reference_key, "use_rep": use_rep, "batch_key": batch_key,
            "n_neighbors": n_neighbors, "min_vote": min_vote, "min_anchor_cells": MIN_ANCHOR_CELLS,
            "min_anchor_types": MIN_ANCHOR_TYPES, "anchor_rounds": ANCHOR_ROUNDS,
            "anchor_quantile": ANCHOR_QUANTILE, "random_state": random_state,
        },
        "batches": pd.DataFrame(
            {
                "batch": sorted(shifts),
                "types": [used[b] for b in sorted(shifts)],
                "shift": [float(np.linalg.norm(shifts[b])) for b in sorted(shifts)],
            }
        ),
    }  # fmt: skip
    return adata if copy else None


def novelty_rep(
    adata: ad.AnnData,
    settings,
    *,
    random_state: int | None = None,
    reference_key: str = "reference_label",
    use_rep: str = "X_integrated",
    batch_key: str = "batch",
) -> str | None:
    """The ``obsm`` key where distances to the reference are measured, from ``settings.novelty_space``.

    ``uncorrected``: :func:`uncorrected_pca`; ``aligned``: :func:`aligned_pca` (each computed when its
    ``obsm`` key is missing, so a subset of cells, e.g. a control, keeps the space of the full object);
    ``integrated``: ``None`` (the latent the labels are voted in).
    """
    if settings.novelty_space == "integrated":
        return None
    seed = settings.seed if random_state is None else random_state
    if settings.novelty_space == "aligned":
        key = "X_pca_aligned"
        if key not in adata.obsm:
            aligned_pca(
                adata, reference_key=reference_key, use_rep=use_rep, batch_key=batch_key, random_state=seed
            )
        return key
    key = "X_pca_uncorrected"
    if key not in adata.obsm:
        uncorrected_pca(adata, key_added=key, random_state=seed)
    return key
