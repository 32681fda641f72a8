"""Numeric cores of signature scoring: arrays in, arrays out (no AnnData).

Expression bins (:func:`expression_bins`), expression-matched random gene sets (:func:`matched_random_sets`),
AUCell ranks (:func:`aucell_rank_matrix`, :func:`aucell_top_n`), set scores (:func:`set_scores`), a
signature's score with its null (:func:`signature_with_null`) and the null statistics
(:func:`null_statistics`). :func:`hscseq.score.score_signatures` is the AnnData wrapper.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp


def expression_bins(mean_expression: np.ndarray, n_bins: int = 25) -> np.ndarray:
    """Bin genes into ``n_bins`` equally populated bins of mean expression (rank based, ties by order)."""
    mean_expression = np.asarray(mean_expression, dtype=float)
    order = np.argsort(mean_expression, kind="stable")
    bins = np.empty(len(order), dtype=int)
    bins[order] = np.floor(np.arange(len(order)) * n_bins / max(len(order), 1)).astype(int)
    return bins


def matched_random_sets(
    gene_idx: np.ndarray,
    bins: np.ndarray,
    *,
    n_sets: int,
    rng: np.random.Generator,
    eligible: np.ndarray | None = None,
) -> np.ndarray:
    """Random gene sets matched for expression: each gene is replaced by a random gene of its bin.

    Returns an ``(n_sets, len(gene_idx))`` array of gene indices (genes drawn without replacement within a
    set whenever the bin allows). ``eligible`` (bool per gene) restricts the pool; signature genes are never
    drawn.
    """
    gene_idx = np.asarray(gene_idx, dtype=int)
    pool_mask = (
        np.ones(len(bins), dtype=bool) if eligible is None else np.asarray(eligible, dtype=bool).copy()
    )
    pool_mask[gene_idx] = False
    out = np.empty((n_sets, len(gene_idx)), dtype=int)
    for b in np.unique(bins[gene_idx]):
        cols = np.flatnonzero(bins[gene_idx] == b)
        pool = np.flatnonzero(pool_mask & (bins == b))
        if len(pool) == 0:  # an extreme bin with only signature genes: widen to the neighbouring bins
            pool = np.flatnonzero(pool_mask & (np.abs(bins - b) <= 1))
        replace = len(pool) < len(cols)
        for s in range(n_sets):
            out[s, cols] = rng.choice(pool, size=len(cols), replace=replace)
    return out


def aucell_rank_matrix(
    X: sp.spmatrix | np.ndarray, *, max_rank: int, rng: np.random.Generator, block: int = 2_000_000
) -> sp.csr_matrix:
    """Per-cell gene ranks for AUCell as a sparse recovery-weight matrix.

    Genes of each cell are ranked by decreasing expression (ties broken at random, seeded); entry
    ``(cell, gene)`` holds ``max_rank - rank`` for the ``max_rank`` top genes (rank 0 = highest) and is
    empty otherwise. Undetected genes are never recovered (AUCell breaks ties among zeros at random; a
    zero carries no evidence, so they count as not recovered here). The matrix stays sparse and ``X`` is
    not modified. Cells are ranked in blocks of at most ``block`` detected values (at least one cell per
    block): the sort holds ~5 arrays of 8 bytes per detected value, so a block costs ~80 MB whatever the
    number or depth of the cells (blocks of 10,000 cells held ~1 GB at 9,171 cells of ~2,500 detected
    genes). The tie-breaking draws follow the cells, so the result does not depend on ``block``.
    """
    X = sp.csr_matrix(X)
    if X.nnz and not np.all(X.data):
        X = X.copy()  # eliminate_zeros works in place on arrays shared with the caller's matrix
        X.eliminate_zeros()
    parts, start, step = [], 0, max(1, int(block))
    while start < X.shape[0]:
        stop = int(np.searchsorted(X.indptr, X.indptr[start] + step, side="right")) - 1
        stop = min(max(stop, start + 1), X.shape[0])
        parts.append(_top_rank_weights(X[start:stop], max_rank=max_rank, rng=rng))
        start = stop
    return sp.vstack(parts, format="csr") if parts else sp.csr_matrix(X.shape, dtype=np.float32)


def _top_rank_weights(X: sp.csr_matrix, *, max_rank: int, rng: np.random.Generator) -> sp.csr_matrix:
    """:func:`aucell_rank_matrix` of one block of cells (``X`` without explicit zeros)."""
    n_cells, n_genes = X.shape
    rows = np.repeat(np.arange(n_cells), np.diff(X.indptr))
    jitter = rng.random(len(X.data))
    order = np.lexsort((jitter, -X.data, rows))
    starts = X.indptr[rows[order]]
    rank = np.arange(len(order)) - starts
    keep = rank < max_rank
    sel = order[keep]
    weights = (max_rank - rank[keep]).astype(np.float32)
    return sp.csr_matrix((weights, (rows[sel], X.indices[sel])), shape=(n_cells, n_genes))


def _set_matrix(
    sets: Sequence[np.ndarray], n_genes: int, *, normalise: str, max_rank: int = 0
) -> sp.csc_matrix:
    """Genes x sets weight matrix (mean weights, or AUCell's maximum-AUC normalisation)."""
    rows, cols, vals = [], [], []
    for j, s in enumerate(sets):
        s = np.unique(np.asarray(s, dtype=int))
        if normalise == "mean":
            w = 1.0 / len(s)
        else:
            k = min(len(s), max_rank)
            w = 1.0 / float(np.sum(max_rank - np.arange(k)))
        rows.append(s)
        cols.append(np.full(len(s), j))
        vals.append(np.full(len(s), w))
    return sp.csc_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n_genes, len(sets))
    )


def _apply(X: sp.spmatrix | np.ndarray, M: sp.spmatrix) -> np.ndarray:
    """Cells x sets: ``X @ M`` with the small genes x sets weights dense (a sparse x sparse product costs
    several times more here: its result is dense anyway)."""
    dtype = np.float32 if X.dtype == np.float32 else np.float64  # no float64 copy of a float32 X
    return np.asarray(X @ M.toarray().astype(dtype), dtype=np.float32)


def set_scores(
    X: sp.spmatrix | np.ndarray,
    sets: Sequence[np.ndarray],
    *,
    method: str = "control",
    bins: np.ndarray | None = None,
    n_ctrl: int = 50,
    rng: np.random.Generator | None = None,
    ranks: sp.csr_matrix | None = None,
    max_rank: int = 0,
    eligible: np.ndarray | None = None,
) -> np.ndarray:
    """Score every cell for every gene set; returns ``(n_cells, n_sets)``.

    ``method="aucell"``: area under the recovery curve of the set within each cell's ``max_rank`` top
    genes, normalised to [0, 1] (Aibar et al. 2017, doi:10.1038/nmeth.4463); needs ``ranks`` from
    :func:`aucell_rank_matrix`. ``method="control"``: mean log expression of the set minus the mean of
    ``n_ctrl`` random control genes drawn from the expression bin of each set gene (Tirosh et al. 2016,
    doi:10.1126/science.aad0501; scanpy's ``score_genes``); needs ``bins`` and ``rng``.
    """
    n_genes = X.shape[1]
    if method == "aucell":
        if ranks is None:
            raise ValueError("method='aucell' needs the rank matrix (aucell_rank_matrix)")
        M = _set_matrix(sets, n_genes, normalise="aucell", max_rank=max_rank)
        return _apply(ranks, M)
    if method == "control":
        if bins is None or rng is None:
            raise ValueError("method='control' needs expression bins and a random generator")
        pool = np.ones(n_genes, dtype=bool) if eligible is None else np.asarray(eligible, dtype=bool)
        controls = []
        for s in sets:
            s = np.unique(np.asarray(s, dtype=int))
            mask = pool.copy()
            mask[s] = False
            ctrl = []
            for b in np.unique(bins[s]):
                cand = np.flatnonzero(mask & (bins == b))
                if len(cand):
                    ctrl.append(rng.choice(cand, size=min(n_ctrl, len(cand)), replace=False))
            controls.append(np.unique(np.concatenate(ctrl)) if ctrl else s)
        M = _set_matrix(sets, n_genes, normalise="mean") - _set_matrix(controls, n_genes, normalise="mean")
        return _apply(X, M)
    raise ValueError(f"unknown scoring method {method!r} (use 'aucell' or 'control')")


def null_statistics(
    observed: np.ndarray, null: np.ndarray, *, prior_draws: float = 10.0
) -> tuple[np.ndarray, np.ndarray]:
    """Per-cell z-score and one-sided empirical p-value of ``observed`` against ``null`` (cells x draws).

    ``p = (1 + #{null >= observed}) / (1 + n_draws)``. ``z = (observed - mean(null)) / sd`` where the
    per-cell null variance is moderated towards the variance pooled over all cells with the weight of
    ``prior_draws`` draws (rank scores of small sets often have a null without spread in a cell; the
    pooled variance keeps their z finite). NaN only if the null has no spread at all.
    """
    observed = np.asarray(observed, dtype=float)
    null = np.asarray(null, dtype=float)
    k = null.shape[1]
    mu = null.mean(axis=1)
    var = null.var(axis=1, ddof=1) if k > 1 else np.zeros(len(mu))
    pooled = float(np.mean(var)) if len(var) else 0.0
    sd = np.sqrt(((k - 1) * var + prior_draws * pooled) / (k - 1 + prior_draws))
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(sd > 0, (observed - mu) / np.where(sd > 0, sd, 1.0), np.nan)
    p = (1.0 + (null >= observed[:, None]).sum(axis=1)) / (1.0 + k)
    return z, p


def aucell_top_n(X: sp.csr_matrix, max_rank: float) -> int:
    """AUCell's number of top-ranked genes per cell.

    ``max_rank`` >= 1 is a count; below 1 it is this share of all genes, but at least a quarter of the
    median number of genes detected per cell. Clipped to ``[1, n_genes]``.
    """
    if max_rank < 1:  # a share of the genes, but at least a quarter of the median genes detected per cell
        median_detected = float(np.median(np.diff(X.indptr))) if X.shape[0] else 0.0
        n_top = max(round(max_rank * X.shape[1]), round(0.25 * median_detected))
    else:
        n_top = int(max_rank)
    return max(1, min(n_top, X.shape[1]))


def signature_with_null(
    X: sp.csr_matrix,
    up: np.ndarray,
    down: np.ndarray,
    *,
    method: str,
    bins: np.ndarray,
    n_null: int,
    n_ctrl: int,
    rng: np.random.Generator,
    ranks: sp.csr_matrix | None,
    max_rank: int,
    eligible: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Per-cell score of a signature (``up`` genes count for it, ``down`` genes against) and its null.

    Each of ``up`` and ``down`` (gene indices; either may be empty) is scored with :func:`set_scores`
    together with ``n_null`` expression-matched random sets (:func:`matched_random_sets`); the signed sums
    give the observed score ``(n_cells,)`` and the null ``(n_cells, n_null)``.
    """
    total = np.zeros(X.shape[0])
    null_total = np.zeros((X.shape[0], n_null))
    for gidx, sign in ((up, 1.0), (down, -1.0)):
        if not len(gidx):
            continue
        null_sets = matched_random_sets(gidx, bins, n_sets=n_null, rng=rng, eligible=eligible)
        values = set_scores(
            X,
            [gidx, *list(null_sets)],
            method=method,
            bins=bins,
            n_ctrl=n_ctrl,
            rng=rng,
            ranks=ranks,
            max_rank=max_rank,
            eligible=eligible,
        )
        total += sign * values[:, 0]
        null_total += sign * values[:, 1:]
    return total, null_total
