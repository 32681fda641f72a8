"""Fidelity: map engineered / organoid cells onto an in vivo reference and score how close they are.

The stage answers "how close to the real thing?" with a calibrated, multi-part scorecard per engineered or
organoid sample. Every part is in [0, 1], carries a bootstrap 95% CI (cells resampled with replacement
within the sample), and is calibrated against the in vivo reference itself:

``identity`` (I)
    Share of the sample's cells confidently mapped to a reference cell type (not ``novel``, label probability
    of at least ``min_confidence``), divided by the same share among held-out (cross-validated) reference
    cells and capped at 1: ``I = 1`` means "as confidently mapped as a real donor's cells".
``similarity`` (S)
    Per matched type ``t``: ``S_t = min(1, d_null / d_query)`` with ``d = 1 - Pearson r`` of log-CPM
    pseudobulks over informative genes. ``d_query`` compares the sample's type-``t`` pseudobulk with each in
    vivo donor's type-``t`` pseudobulk (averaged); ``d_null`` compares as many cells of one real donor with
    another real donor (the donor-to-donor null, matched in cell number). ``S_t = 1`` means "as close as two
    real donors"; ``S_t = 0.5`` means twice as far. ``S`` is the cell-weighted mean of ``S_t``.
``programme`` (P)
    HSC programme completeness: ``hsc_programme_share`` of the score stage (``hsc_programme.tsv``) when it
    is given for the sample; otherwise the mean over the reference's top HSC genes (up in in vivo HSC
    against every other in vivo cell) of ``min(1, (CPM_sample + 1) / (CPM_in_vivo + 1))`` in the cells
    mapped to the HSC type (0 when no cell maps to HSC).
``composition`` (C)
    ``1 - JSD`` (Jensen-Shannon divergence, base 2) between the sample's type composition and the in vivo
    composition. The composition counts every non-novel cell for its predicted type (confident or not);
    novel cells are their own category in the composition table and are left out of the JSD (they already
    lower ``identity``). Per-type log2 fold changes with CIs are in the composition table.
``novel_share``
    Share of cells flagged ``novel`` (reported, not part of the index: it is already inside ``identity``).

Headline **fidelity index** ``F = (w_I I + w_S S + w_P P + w_C C) / (w_I + w_S + w_P + w_C)`` with equal
weights by default (``settings["index_weights"]``); a part that cannot be computed (no HSC type in the
reference, profile-level reference without composition) is left out and the weights are renormalised.
``F = 1``: indistinguishable from an in vivo donor; ``F = 0``: nothing in the sample resembles the
reference. The positive control (an in vivo donor held out and scored as a query) must give ``F >= 0.9``;
the negative control (a reference type held out of the reference and scored as a query) ``F <= 0.2``.

Novelty: the reference is split into folds (one per donor when there are at least two, otherwise random
folds). Every cell's position in the shared latent is first averaged with its 15 nearest cells of the same
sample (reference cells: of the same fold), which removes per-cell sampling noise; distances are measured
between these neighbourhood positions (mean distance to the k nearest reference positions). Two nulls come
from the held-out folds: the *held-out donor* null (reference cells against the other donors) and the
*held-out type* null (reference cells of type ``c`` against the other donors with type ``c`` removed: where a
whole cell type absent from the reference would sit). A query cell is ``novel`` when its distance exceeds
both the ``null_quantile`` of the donor null of its closest type and the ``absent_quantile`` (default 0.05)
of that type's held-out-type null (as far as the nearest 5% of the cells of a whole absent type); it then
gets the label ``"novel"`` (its nearest type stays in ``closest_label``). Labels are voted among the 15
nearest reference cells on damped neighbourhood positions ``x / sqrt(|x|)`` (direction kept, magnitude
compressed), so cells with a weaker or partial programme keep their type. Label uncertainty (``1 - kNN vote
share``) is reported per cell and decides "confidently mapped", but by default does not make a cell novel (an
intermediate between two reference types is uncertain without being absent).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from hscseq._utils import input_error, resource_path, write_h5ad, write_table

logger = logging.getLogger(__name__)

NOVEL = "novel"
PARTS = ("identity", "similarity", "programme", "composition")
DEFAULT_SETTINGS: dict[str, Any] = {
    "novelty_space": "uncorrected",
    "method": "auto",
    "n_neighbors": 15,
    "n_bootstrap": 200,
    "seed": 0,
    "null_quantile": 0.99,
    "absent_quantile": 0.05,
    "min_confidence": 0.5,
    "min_cells": 10,
    "n_informative_genes": 2000,
    "index_weights": {"identity": 1.0, "similarity": 1.0, "programme": 1.0, "composition": 1.0},
    "reference": None,
    "reference_label_key": "cell_type",
    "reference_stage_key": None,
    "reference_donor_key": None,
    "hsc_label": None,
    "negative_control_type": None,
    "max_epochs": 50,
    "de_top_n": 25,
    "de_min_cells": 10,
    "de_max_genes": 1000,
}


# --------------------------------------------------------------------------------------------------------
# numeric cores (numpy in, arrays out)


def knn_vote(neighbor_codes: np.ndarray, n_classes: int) -> np.ndarray:
    """Label probabilities from the label codes of each cell's k nearest reference neighbours.

    Parameters
    ----------
    neighbor_codes
        Integer label codes, cells x k.
    n_classes
        Number of labels.

    Returns
    -------
    Cells x labels array of vote shares (rows sum to 1).
    """
    n, k = neighbor_codes.shape
    probs = np.zeros((n, n_classes))
    rows = np.repeat(np.arange(n), k)
    np.add.at(probs, (rows, neighbor_codes.ravel()), 1.0)
    return probs / k


def label_uncertainty(probs: np.ndarray) -> np.ndarray:
    """``1 - max probability`` per cell."""
    return 1.0 - probs.max(axis=1)


def novelty_thresholds(
    null_distance: np.ndarray,
    null_codes: np.ndarray,
    null_uncertainty: np.ndarray,
    n_classes: int,
    *,
    quantile: float = 0.99,
    min_cells: int = 20,
    absent_distance: np.ndarray | None = None,
    absent_codes: np.ndarray | None = None,
    absent_quantile: float = 0.05,
) -> tuple[np.ndarray, float]:
    """Per-label distance thresholds and one uncertainty threshold from held-out reference cells.

    Two nulls calibrate the threshold of label ``c``. The *held-out donor* null (``null_distance``: reference
    cells of held-out donors, against the other donors) gives the ``quantile`` of distances of real type-``c``
    cells, batch shift included. The *held-out type* null (``absent_distance``: held-out cells of type ``c``
    against the other donors with type ``c`` removed) gives the distance at which a type-``c`` cell would sit
    if its type were absent from the reference. The threshold is the larger of the donor-null quantile and the
    ``absent_quantile`` of the held-out-type null: a cell is novel only when it is farther from its closest
    reference type than a real donor's cells are, *and* at least as far as the nearer cells of a whole cell
    type absent from the reference. Labels with fewer than ``min_cells`` null cells use the pooled quantiles.
    """
    pooled = float(np.quantile(null_distance, quantile))
    thr = np.full(n_classes, pooled)
    for c in range(n_classes):
        d = null_distance[null_codes == c]
        if len(d) >= min_cells:
            thr[c] = float(np.quantile(d, quantile))
    if absent_distance is not None and absent_codes is not None and len(absent_distance):
        pooled_absent = float(np.quantile(absent_distance, absent_quantile))
        for c in range(n_classes):
            d = absent_distance[absent_codes == c]
            low = float(np.quantile(d, absent_quantile)) if len(d) >= min_cells else pooled_absent
            thr[c] = max(thr[c], low)
    unc = float(np.quantile(null_uncertainty, quantile))
    return thr, unc


def flag_novel(
    distance: np.ndarray,
    codes: np.ndarray,
    uncertainty: np.ndarray,
    distance_thresholds: np.ndarray,
    uncertainty_threshold: float,
) -> np.ndarray:
    """Cells farther from the reference, or more uncertain, than the held-out null allows."""
    return (distance > distance_thresholds[codes]) | (uncertainty > uncertainty_threshold + 1e-12)


def jensen_shannon(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Jensen-Shannon divergence (base 2, in [0, 1]) between distributions along the last axis."""
    p = np.asarray(p, dtype=float)
    q = np.asarray(q, dtype=float)
    p = p / np.clip(p.sum(axis=-1, keepdims=True), 1e-300, None)
    q = q / np.clip(q.sum(axis=-1, keepdims=True), 1e-300, None)
    m = 0.5 * (p + q)

    def kl(a, b):
        with np.errstate(divide="ignore", invalid="ignore"):
            t = np.where(a > 0, a * np.log2(a / np.where(b > 0, b, 1.0)), 0.0)
        return t.sum(axis=-1)

    return np.clip(0.5 * kl(p, m) + 0.5 * kl(q, m), 0.0, 1.0)


def bootstrap_weights(n: int, n_bootstrap: int, seed: int) -> np.ndarray:
    """Multinomial resampling counts (bootstrap replicates x n): row b says how often each cell is drawn."""
    rng = np.random.default_rng(seed)
    if n == 0:
        return np.zeros((n_bootstrap, 0))
    return rng.multinomial(n, np.full(n, 1.0 / n), size=n_bootstrap).astype(float)


def percentile_ci(
    values: np.ndarray,
    *,
    level: float = 0.95,
    estimate: float | None = None,
    bounds: tuple[float, float] = (-np.inf, np.inf),
) -> tuple[float, float]:
    """Percentile interval of bootstrap replicates (NaNs ignored; NaN when all are NaN).

    With ``estimate``, the interval is shifted by the bootstrap bias (``mean(replicates) - estimate``), which
    matters for pseudobulk correlations (resampled pseudobulks hold fewer distinct cells), then clipped to
    ``bounds``.
    """
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return float("nan"), float("nan")
    a = (1 - level) / 2
    lo, hi = float(np.quantile(v, a)), float(np.quantile(v, 1 - a))
    if estimate is not None and np.isfinite(estimate):
        bias = float(v.mean()) - float(estimate)
        lo, hi = lo - bias, hi - bias
    return float(np.clip(lo, *bounds)), float(np.clip(hi, *bounds))


def log_cpm(pseudobulk: np.ndarray) -> np.ndarray:
    """log1p counts per million of pseudobulks (rows)."""
    pb = np.asarray(pseudobulk, dtype=float)
    return np.log1p(pb / np.clip(pb.sum(axis=-1, keepdims=True), 1e-12, None) * 1e6)


def row_corr(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson correlation of each row of ``a`` with ``b`` (1-d) or the matching row of ``b``."""
    a = a - a.mean(axis=-1, keepdims=True)
    b = b - b.mean(axis=-1, keepdims=True)
    num = (a * b).sum(axis=-1)
    den = np.sqrt((a * a).sum(axis=-1) * (b * b).sum(axis=-1))
    return num / np.clip(den, 1e-300, None)


def similarity_ratio(r_query: np.ndarray, r_null: float) -> np.ndarray:
    """``min(1, (1 - r_null) / (1 - r_query))``: 1 = as close as two real donors."""
    d_q = np.clip(1.0 - np.asarray(r_query, dtype=float), 1e-9, None)
    d_n = max(1.0 - float(r_null), 1e-9)
    return np.minimum(1.0, d_n / d_q)


def correct_composition(observed: np.ndarray, confusion: np.ndarray) -> np.ndarray:
    """Adjusted classify-and-count: solve ``confusion.T @ p = observed`` for ``p >= 0``, ``sum(p) = 1``.

    ``confusion[i, j]`` is P(predicted j | true i), estimated on held-out reference cells.
    """
    from scipy.optimize import nnls

    obs = np.asarray(observed, dtype=float)
    a = np.vstack([confusion.T, np.full(confusion.shape[0], 10.0)])
    b = np.concatenate([obs, [10.0 * obs.sum()]])
    p, _ = nnls(a, b)
    return p / p.sum() if p.sum() > 0 else obs


def weighted_fidelity_index(
    parts: Mapping[str, np.ndarray | float], weights: Mapping[str, float]
) -> np.ndarray:
    """Weighted mean of the available (finite) parts; weights are renormalised per value."""
    num = 0.0
    den = 0.0
    for name, w in weights.items():
        v = np.asarray(parts.get(name, np.nan), dtype=float)
        ok = np.isfinite(v)
        num = num + np.where(ok, w * np.nan_to_num(v), 0.0)
        den = den + np.where(ok, w, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)


# --------------------------------------------------------------------------------------------------------
# mapping


def _folds(groups: np.ndarray, *, n_random: int = 5, seed: int = 0) -> np.ndarray:
    """One fold per group when there are at least two groups, else random folds."""
    values = pd.Series(groups).fillna("").astype(str).to_numpy()
    uniq = [g for g in pd.unique(values) if g != ""]
    if len(uniq) >= 2 and all(v != "" for v in values):
        return pd.Categorical(values, categories=sorted(uniq)).codes.astype(int)
    rng = np.random.default_rng(seed)
    return rng.integers(0, n_random, size=len(values))


def _knn(ref_latent: np.ndarray, query_latent: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.neighbors import NearestNeighbors

    k = min(k, len(ref_latent))
    nn = NearestNeighbors(n_neighbors=k).fit(ref_latent)
    dist, idx = nn.kneighbors(query_latent)
    return dist, idx


def knn_map_core(
    latent: np.ndarray,
    ref_idx: np.ndarray,
    ref_codes: np.ndarray,
    ref_folds: np.ndarray,
    query_idx: np.ndarray,
    n_classes: int,
    *,
    n_neighbors: int = 15,
    ref_stage_codes: np.ndarray | None = None,
    n_stages: int = 0,
    query_full_reference: bool = False,
    distance_latent: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """kNN label transfer with held-out-donor and held-out-type nulls.

    Reference cells are predicted with their own fold held out; query cells from the whole reference.
    Distances are measured in ``distance_latent`` (default ``latent``; :func:`map_to_reference` passes
    neighbourhood-averaged positions): a query cell's distance is the mean over folds of its distance to the
    reference without that fold, so query and null distances are measured against equally large references.
    ``ref_absent_distance`` is the distance of each held-out reference cell to the other folds *without its
    own type* (the held-out-type null).

    Returns
    -------
    Dict with ``ref_probs``, ``ref_distance``, ``ref_absent_distance``, ``query_probs``, ``query_distance``
    (and ``*_stage_probs``).
    """
    out: dict[str, np.ndarray] = {}
    dlat = latent if distance_latent is None else distance_latent
    folds = np.unique(ref_folds)
    ref_lat = latent[ref_idx]
    ref_d = dlat[ref_idx]
    q_d = dlat[query_idx]
    ref_probs = np.zeros((len(ref_idx), n_classes))
    ref_dist = np.zeros(len(ref_idx))
    ref_absent = np.full(len(ref_idx), np.nan)
    q_dist = np.zeros(len(query_idx))
    ref_stage = np.zeros((len(ref_idx), n_stages))
    for f in folds:
        held = ref_folds == f
        keep = ~held
        _, i = _knn(ref_lat[keep], ref_lat[held], n_neighbors)
        ref_probs[held] = knn_vote(ref_codes[keep][i], n_classes)
        ref_dist[held] = _knn(ref_d[keep], ref_d[held], n_neighbors)[0].mean(axis=1)
        for c in np.unique(ref_codes[held]):
            other = keep & (ref_codes != c)
            if other.sum() >= n_neighbors:
                sel = held & (ref_codes == c)
                ref_absent[sel] = _knn(ref_d[other], ref_d[sel], n_neighbors)[0].mean(axis=1)
        if n_stages:
            ref_stage[held] = knn_vote(ref_stage_codes[keep][i], n_stages)
        if len(query_idx) and not query_full_reference:
            q_dist += _knn(ref_d[keep], q_d, n_neighbors)[0].mean(axis=1) / len(folds)
    out["ref_probs"] = ref_probs
    out["ref_distance"] = ref_dist
    out["ref_absent_distance"] = ref_absent
    if len(query_idx):
        _, i = _knn(ref_lat, latent[query_idx], n_neighbors)
        out["query_probs"] = knn_vote(ref_codes[i], n_classes)
        if query_full_reference:
            q_dist = _knn(ref_d, q_d, n_neighbors)[0].mean(axis=1)
        if n_stages:
            out["query_stage_probs"] = knn_vote(ref_stage_codes[i], n_stages)
    else:
        out["query_probs"] = np.zeros((0, n_classes))
        out["query_stage_probs"] = np.zeros((0, n_stages))
    out["query_distance"] = q_dist
    if n_stages:
        out["ref_stage_probs"] = ref_stage
    return out


def smooth_latent(latent: np.ndarray, groups: np.ndarray, *, n_neighbors: int = 15) -> np.ndarray:
    """Each cell's position averaged with its ``n_neighbors`` nearest cells (itself included) of its group.

    Averaging positions (not distances) removes most of the per-cell sampling noise, which otherwise sets a
    floor under every distance and hides the systematic shift of a whole state.
    """
    latent = np.asarray(latent, dtype=float)
    out = latent.copy()
    for g in pd.unique(groups):
        idx = np.flatnonzero(groups == g)
        if len(idx) < 2:
            continue
        _, nb = _knn(latent[idx], latent[idx], min(n_neighbors, len(idx)))
        out[idx] = latent[idx][nb].mean(axis=1)
    return out


def _reference_mask(adata: ad.AnnData, reference_key: str) -> np.ndarray:
    if reference_key not in adata.obs:
        raise input_error(
            f"obs has no reference label column {reference_key!r}.",
            fix="label the in vivo samples (sample sheet 'label_column') or give a reference "
            "h5ad in config fidelity.reference.",
        )
    lab = adata.obs[reference_key].astype(object)
    empty = lab.astype(str).str.strip().isin(["", "nan", "NaN", "None"]).to_numpy()
    return lab.notna().to_numpy() & ~empty


def _scanvi_latent_and_probs(
    adata: ad.AnnData,
    ref_mask: np.ndarray,
    labels: np.ndarray,
    holdout: np.ndarray,
    batch: np.ndarray,
    *,
    layer: str | None,
    max_epochs: int,
    n_latent: int,
    seed: int,
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Train scVI -> scANVI on reference cells (minus ``holdout``), scArches surgery for everything else.

    Returns the latent of all cells, label probabilities of all cells and the label order.
    """
    import scvi
    import torch

    from hscseq import _scvi

    scvi.settings.seed = seed
    # seed, torch threads (restored after each training) and a GPU when present: hscseq._scvi.train
    trainer = {"seed": seed, "threads": max(1, min(2, torch.get_num_threads()))}
    counts = adata.layers[layer] if layer else adata.X
    counts = sp.csr_matrix(counts)
    train = ref_mask & ~holdout
    obs = pd.DataFrame(
        {"_batch": batch.astype(str), "_label": np.where(train, labels, "_unlabelled")}, index=adata.obs_names
    )
    ref = ad.AnnData(X=counts[train], obs=obs.loc[train].copy())
    ref.var_names = adata.var_names
    scvi.model.SCVI.setup_anndata(ref, batch_key="_batch", labels_key="_label")
    vae = scvi.model.SCVI(ref, n_latent=n_latent)
    _scvi.train(vae, max_epochs=max_epochs, **trainer)
    lvae = scvi.model.SCANVI.from_scvi_model(vae, unlabeled_category="_unlabelled")
    _scvi.train(lvae, max_epochs=max(1, max_epochs // 2), n_samples_per_label=100, **trainer)
    query = ad.AnnData(X=counts[~train], obs=obs.loc[~train].copy())
    query.var_names = adata.var_names
    query.obs["_label"] = "_unlabelled"
    scvi.model.SCANVI.prepare_query_anndata(query, lvae)
    qmodel = scvi.model.SCANVI.load_query_data(query, lvae)
    _scvi.train(qmodel, max_epochs=max_epochs, plan_kwargs={"weight_decay": 0.0}, **trainer)
    latent = np.zeros((adata.n_obs, n_latent), dtype=np.float32)
    latent[train] = lvae.get_latent_representation(ref)
    latent[~train] = qmodel.get_latent_representation(query)
    p_ref = lvae.predict(ref, soft=True)
    p_q = qmodel.predict(query, soft=True)
    order = [c for c in p_ref.columns if c != "_unlabelled"]
    probs = np.zeros((adata.n_obs, len(order)))
    probs[train] = p_ref[order].to_numpy()
    probs[~train] = p_q[order].to_numpy()
    probs /= np.clip(probs.sum(axis=1, keepdims=True), 1e-12, None)
    return latent, probs, order


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


def map_to_reference(
    adata: ad.AnnData,
    *,
    reference_key: str = "reference_label",
    method: str = "knn",
    use_rep: str = "X_integrated",
    distance_rep: str | None = None,
    n_neighbors: int = 15,
    donor_key: str | None = None,
    stage_key: str | None = None,
    null_quantile: float = 0.99,
    layer: str | None = "counts",
    batch_key: str = "batch",
    sample_key: str = "sample",
    smooth_neighbors: int = 15,
    max_epochs: int = 50,
    n_latent: int = 10,
    null: Mapping[str, Any] | None = None,
    uncertainty_novel: bool = False,
    absent_quantile: float = 0.05,
    label_metric: str = "damped",
    key_added: str = "fidelity",
    random_state: int = 0,
    copy: bool = False,
) -> ad.AnnData | None:
    """Map every cell onto the reference cells of ``adata`` with calibrated uncertainty and novelty.

    Parameters
    ----------
    adata
        Cells of the reference (non-empty ``obs[reference_key]``) and of the query (everything else).
    reference_key
        obs column with the reference labels (empty/NaN for query cells).
    method
        ``"knn"``: kNN label transfer in ``obsm[use_rep]``. ``"scanvi"``: scVI/scANVI trained on the
        reference counts (``layers[layer]``) with one donor held out, then scArches surgery for the query
        and the held-out donor; novelty in ``distance_rep`` (default: the scANVI latent).
    use_rep
        Shared latent used by ``"knn"``.
    distance_rep
        ``obsm`` key of the space where distances to the reference (and so novelty) are measured; default
        ``use_rep`` (``"knn"``) or the surgery latent (``"scanvi"``). :func:`run_fidelity` passes an
        uncorrected PCA (:func:`uncorrected_pca`): batch
        correction aligns a query batch onto the reference and can hide states that exist only in that
        batch, while the held-out-donor null already carries donor-to-donor batch shifts.
    n_neighbors
        Number of reference neighbours.
    donor_key
        obs column defining the held-out folds of the null (default: ``donor`` if it has two or more values
        among reference cells, else ``batch``, else random folds).
    stage_key
        Optional obs column of the reference with developmental stages; adds ``closest_stage``.
    null_quantile
        Quantile of the held-out null above which a cell is ``novel``.
    layer
        Layer with raw counts (``"scanvi"`` only; ``None`` = X).
    batch_key
        obs column with the batch of every cell (``"scanvi"`` only).
    sample_key
        obs column with samples: distances are smoothed within each query sample.
    smooth_neighbors
        Cells averaged for the neighbourhood-level distance (``<= 1``: per-cell distances).
    max_epochs
        scVI / scANVI / surgery epochs (``"scanvi"`` only).
    null
        Novelty thresholds to use instead of this reference's own (``labels``, ``distance_thresholds``,
        ``uncertainty_threshold``, as stored in ``uns[key_added]``); :func:`controls` passes the full
        reference's null when it maps a held-out donor against the remaining ones.
    n_latent
        Latent size of the scVI model (``"scanvi"`` only).
    uncertainty_novel
        Also call cells novel whose label uncertainty exceeds the held-out null's quantile. Off by default:
        a cell between two reference types (e.g. an HSC/MPP intermediate) is uncertain without being absent
        from the reference; uncertain cells are never forced into a label anyway, they are reported with a
        low ``label_confidence`` and do not count as confidently mapped.
    absent_quantile
        Quantile of the held-out-type null that a cell's distance must also exceed to be novel (see
        :func:`novelty_thresholds`). Lower values call states that share part of their programme with a
        reference type (e.g. primitive next to definitive erythroid cells) novel more readily.
    label_metric
        Space of the label vote over the (neighbourhood-averaged) latent positions ``x``. ``"damped"``
        (default): Euclidean kNN on ``x / sqrt(|x|)``, which keeps the direction and halves (on a log scale)
        differences in radial magnitude, so a cell with a weaker or partial programme (engineered HSC-like
        cells with part of the HSC programme missing) keeps its type instead of drifting to a neighbouring
        type; ``"cosine"``: direction only (loses central types such as MPP to their neighbours);
        ``"euclidean"``: plain kNN. Distances (novelty) are always Euclidean.
    key_added
        ``uns`` key for parameters and the null, ``obsm[key_added + "_probabilities"]`` for probabilities.
    random_state
        Seed of folds and models.
    copy
        Return a modified copy instead of writing in place.

    Returns
    -------
    ``None``, or the modified copy when ``copy=True``. Sets ``obs["predicted_label"]`` (``"novel"`` for
    novel cells), ``obs["closest_label"]``, ``obs["label_confidence"]``, ``obs["label_uncertainty"]``,
    ``obs["reference_distance"]``, ``obs["novel"]``, ``obs["is_reference"]`` (and ``obs["closest_stage"]``).
    Reference cells get their held-out (cross-validated) prediction.
    """
    if method not in ("knn", "scanvi"):
        raise input_error(f"unknown mapping method {method!r}.", fix="use 'knn' or 'scanvi'.")
    if label_metric not in ("damped", "cosine", "euclidean"):
        raise input_error(
            f"unknown label metric {label_metric!r}.", fix="use 'damped', 'cosine' or 'euclidean'."
        )
    adata = adata.copy() if copy else adata
    ref_mask = _reference_mask(adata, reference_key)
    if ref_mask.sum() < 2 * n_neighbors:
        raise input_error(
            f"only {int(ref_mask.sum())} labelled reference cells in obs[{reference_key!r}].",
            fix="give a reference with more labelled in vivo cells.",
        )
    labels_all = adata.obs[reference_key].astype(str).to_numpy()
    classes = sorted(pd.unique(labels_all[ref_mask]))
    code_of = {c: i for i, c in enumerate(classes)}
    ref_idx = np.flatnonzero(ref_mask)
    query_idx = np.flatnonzero(~ref_mask)
    ref_codes = np.array([code_of[x] for x in labels_all[ref_mask]])
    if donor_key is None:
        for cand in ("donor", batch_key):
            if (
                cand in adata.obs
                and adata.obs.loc[ref_mask, cand].astype(str).replace("", np.nan).nunique() >= 2
            ):
                donor_key = cand
                break
    groups = adata.obs[donor_key].astype(str).to_numpy()[ref_mask] if donor_key else np.full(len(ref_idx), "")
    folds = _folds(groups, seed=random_state)
    stages: list[str] = []
    stage_codes = None
    if stage_key:
        if stage_key not in adata.obs:
            raise input_error(
                f"obs has no stage column {stage_key!r}.", fix="fix fidelity.reference_stage_key."
            )
        st = adata.obs[stage_key].astype(str).to_numpy()[ref_mask]
        stages = sorted(pd.unique(st))
        stage_codes = np.array([stages.index(s) for s in st])

    samples = (
        adata.obs[sample_key].astype(str).to_numpy()
        if sample_key in adata.obs
        else np.full(adata.n_obs, "all")
    )
    # neighbourhood-level positions: each query cell averaged within its sample, each reference cell within
    # its held-out fold (so the null is denoised exactly like the query)
    groups_all = np.empty(adata.n_obs, dtype=object)
    groups_all[query_idx] = ["q:" + x for x in samples[query_idx]]
    groups_all[ref_idx] = ["r:" + str(f) for f in folds]

    def denoised(lat: np.ndarray) -> np.ndarray:
        return smooth_latent(lat, groups_all, n_neighbors=smooth_neighbors) if smooth_neighbors > 1 else lat

    def for_labels(lat: np.ndarray) -> np.ndarray:
        if label_metric == "euclidean":
            return lat
        norm = np.clip(np.linalg.norm(lat, axis=1, keepdims=True), 1e-12, None)
        return lat / (norm if label_metric == "cosine" else np.sqrt(norm))

    if distance_rep is not None and distance_rep not in adata.obsm:
        raise input_error(
            f"obsm has no {distance_rep!r} to measure distances in.",
            fix="compute it first (e.g. hscseq.fidelity.uncorrected_pca).",
        )
    if method == "knn":
        if use_rep not in adata.obsm:
            raise input_error(
                f"obsm has no shared latent {use_rep!r}.",
                fix="run the integrate stage first, or use method 'scanvi'.",
            )
        latent = np.asarray(adata.obsm[use_rep], dtype=float)
        smoothed = denoised(latent)
        distance_latent = (
            denoised(np.asarray(adata.obsm[distance_rep], dtype=float)) if distance_rep else smoothed
        )
        res = knn_map_core(
            for_labels(smoothed),
            ref_idx,
            ref_codes,
            folds,
            query_idx,
            len(classes),
            n_neighbors=n_neighbors,
            ref_stage_codes=stage_codes,
            n_stages=len(stages),
            query_full_reference=null is not None,
            distance_latent=distance_latent,
        )
    else:
        holdout = np.zeros(adata.n_obs, dtype=bool)
        held_fold = folds == np.max(folds) if len(np.unique(folds)) >= 2 else np.zeros(len(ref_idx), bool)
        holdout[ref_idx[held_fold]] = True
        batch = (
            adata.obs[batch_key].astype(str).to_numpy()
            if batch_key in adata.obs
            else np.full(adata.n_obs, "b")
        )
        latent, probs_all, order = _scanvi_latent_and_probs(
            adata,
            ref_mask,
            labels_all,
            holdout,
            batch,
            layer=layer,
            max_epochs=max_epochs,
            n_latent=n_latent,
            seed=random_state,
        )
        probs_all = pd.DataFrame(probs_all, columns=order).reindex(columns=classes, fill_value=0.0).to_numpy()
        dist_lat = denoised(np.asarray(adata.obsm[distance_rep], dtype=float) if distance_rep else latent)
        # null: held-out donor cells (mapped by surgery, like the query) against the training reference
        two_folds = np.where(held_fold, 1, 0)
        res = knn_map_core(
            for_labels(denoised(latent)),
            ref_idx,
            ref_codes,
            two_folds,
            query_idx,
            len(classes),
            n_neighbors=n_neighbors,
            ref_stage_codes=stage_codes,
            n_stages=len(stages),
            query_full_reference=True,
            distance_latent=dist_lat,
        )
        train_from = ref_idx[~held_fold]
        dq, _ = _knn(dist_lat[train_from], dist_lat[query_idx], n_neighbors)
        res["query_distance"] = dq.mean(axis=1)
        # labels: kNN vote in the surgery latent (calibrated on the held-out donor like the knn path); the
        # scANVI classifier's own probabilities are kept for inspection (few epochs leave it uncalibrated)
        adata.obsm[f"{key_added}_scanvi_probabilities"] = probs_all
        adata.obsm[f"X_{key_added}_scanvi"] = latent
        res["null_select"] = held_fold if held_fold.any() else np.ones(len(ref_idx), bool)

    null_sel = res.get("null_select", np.ones(len(ref_idx), bool))
    ref_pred = res["ref_probs"].argmax(axis=1)
    ref_unc = label_uncertainty(res["ref_probs"])
    absent = res["ref_absent_distance"]
    ok_absent = null_sel & np.isfinite(absent)
    thr, unc_thr = novelty_thresholds(
        res["ref_distance"][null_sel],
        ref_pred[null_sel],
        ref_unc[null_sel],
        len(classes),
        quantile=null_quantile,
        absent_distance=absent[ok_absent],
        absent_codes=ref_codes[ok_absent],
        absent_quantile=absent_quantile,
    )
    if null is not None:  # thresholds of a larger reference (controls reuse the full reference's null)
        given = dict(zip(null["labels"], np.asarray(null["distance_thresholds"], dtype=float), strict=True))
        thr = np.array([given.get(c, max(given.values())) for c in classes])
        unc_thr = float(null["uncertainty_threshold"])
    probs = np.zeros((adata.n_obs, len(classes)))
    probs[ref_idx] = res["ref_probs"]
    probs[query_idx] = res["query_probs"]
    dist = np.zeros(adata.n_obs)
    dist[ref_idx] = res["ref_distance"]
    dist[query_idx] = res["query_distance"]
    pred = probs.argmax(axis=1)
    unc = label_uncertainty(probs)
    novel = flag_novel(dist, pred, unc if uncertainty_novel else np.zeros_like(unc), thr, unc_thr)
    closest = np.array(classes, dtype=object)[pred]
    predicted = np.where(novel, NOVEL, closest)
    obs = adata.obs
    obs["predicted_label"] = pd.Categorical(predicted, categories=[*classes, NOVEL])
    obs["closest_label"] = pd.Categorical(closest, categories=classes)
    obs["label_confidence"] = probs.max(axis=1)
    obs["label_uncertainty"] = unc
    obs["reference_distance"] = dist
    obs["novel"] = novel
    obs["is_reference"] = ref_mask
    adata.obsm[f"{key_added}_probabilities"] = probs
    if stages:
        sprobs = np.zeros((adata.n_obs, len(stages)))
        sprobs[ref_idx] = res["ref_stage_probs"]
        sprobs[query_idx] = res["query_stage_probs"]
        obs["closest_stage"] = pd.Categorical(
            np.array(stages, dtype=object)[sprobs.argmax(axis=1)], categories=stages
        )
        adata.obsm[f"{key_added}_stage_probabilities"] = sprobs
    # held-out confusion matrix (true x predicted incl. novel) for composition correction and calibration
    ref_pred_lab = np.where(novel[ref_idx], len(classes), pred[ref_idx])
    confusion = np.zeros((len(classes), len(classes) + 1))
    np.add.at(confusion, (ref_codes, ref_pred_lab), 1.0)
    confusion /= np.clip(confusion.sum(axis=1, keepdims=True), 1, None)
    accuracy = float(np.mean(pred[ref_idx][null_sel] == ref_codes[null_sel]))
    fpr = float(np.mean(novel[ref_idx][null_sel]))
    adata.uns[key_added] = {
        "params": {
            "reference_key": reference_key,
            "method": method,
            "use_rep": use_rep,
            "distance_rep": distance_rep,
            "n_neighbors": n_neighbors,
            "donor_key": donor_key or "",
            "stage_key": stage_key or "",
            "null_quantile": null_quantile,
            "smooth_neighbors": smooth_neighbors,
            "uncertainty_novel": uncertainty_novel,
            "absent_quantile": absent_quantile,
            "label_metric": label_metric,
            "novel_rule": "distance of the neighbourhood-averaged position to the reference > max(donor-null "
            "quantile of the closest type, absent_quantile of the held-out-type distances of that type)",
            "random_state": random_state,
        },
        "labels": list(classes),
        "stages": list(stages),
        "distance_thresholds": thr,
        "uncertainty_threshold": unc_thr,
        "confusion": confusion,
        "heldout_accuracy": accuracy,
        "heldout_novel_rate": fpr,
    }
    logger.info(
        "mapped %d query cells onto %d reference cells (%d types, %s): %d novel (%.1f%%); "
        "held-out reference accuracy %.3f, novel rate %.3f",
        len(query_idx),
        len(ref_idx),
        len(classes),
        method,
        int(novel[query_idx].sum()),
        100 * novel[query_idx].mean() if len(query_idx) else 0.0,
        accuracy,
        fpr,
    )
    return adata if copy else None


# --------------------------------------------------------------------------------------------------------
# profile-level reference (HematoMap, human)


def load_hematomap() -> pd.DataFrame:
    """The built-in HematoMap human bone-marrow profiles (genes x 43 cell types; GPL-3, see PROVENANCE)."""
    path = resource_path("references", "hematomap_human_cell2location_signatures.csv")
    return pd.read_csv(path, index_col=0)


def profile_correlation_core(
    logcpm_cells: np.ndarray, log_profiles: np.ndarray, *, n_null: int = 20, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Pearson correlation of cells (rows) with profiles (rows), and a gene-permutation null of the best r.

    Returns the cells x profiles correlation matrix and, per cell, the best correlation reached against
    profiles with permuted genes (max over ``n_null`` permutations).
    """
    rng = np.random.default_rng(seed)
    a = logcpm_cells - logcpm_cells.mean(axis=1, keepdims=True)
    a /= np.clip(np.linalg.norm(a, axis=1, keepdims=True), 1e-12, None)

    def corr_with(profiles):
        b = profiles - profiles.mean(axis=1, keepdims=True)
        b /= np.clip(np.linalg.norm(b, axis=1, keepdims=True), 1e-12, None)
        return a @ b.T

    r = corr_with(log_profiles)
    null = np.full(len(a), -1.0)
    for _ in range(n_null):
        perm = rng.permutation(log_profiles.shape[1])
        null = np.maximum(null, corr_with(log_profiles[:, perm]).max(axis=1))
    return r, null


def map_to_profiles(
    adata: ad.AnnData,
    *,
    profiles: pd.DataFrame | None = None,
    layer: str | None = "counts",
    n_genes: int = 2000,
    margin: float = 0.05,
    n_null: int = 20,
    chunk_size: int = 2000,
    key_added: str = "fidelity",
    random_state: int = 0,
    copy: bool = False,
) -> ad.AnnData | None:
    """Profile-level mapping (no single-cell reference): correlate each cell with reference profiles.

    Limits: profiles carry no donor-to-donor variation, no composition and no cell-level null, so only
    ``identity`` and an uncalibrated correlation are available; ``novel`` cells are those whose best
    correlation does not beat the best correlation with gene-permuted profiles by ``margin``.

    Parameters
    ----------
    adata
        Query cells, human gene symbols, raw counts in ``layers[layer]``.
    profiles
        Genes x cell types, non-negative expression levels (default: :func:`load_hematomap`).
    layer
        Layer with raw counts (``None`` = X).
    n_genes
        Genes most variable across profiles (shared with ``adata``) used for the correlation.
    margin
        Correlation margin over the permutation null required for a confident match.
    n_null
        Gene permutations of the null.
    chunk_size
        Cells densified at a time (on the selected genes only).
    key_added
        ``uns`` key for parameters.
    random_state
        Seed of the permutations.
    copy
        Return a modified copy instead of writing in place.

    Returns
    -------
    ``None``, or the modified copy when ``copy=True``; sets the same obs columns as :func:`map_to_reference`.
    """
    adata = adata.copy() if copy else adata
    profiles = load_hematomap() if profiles is None else profiles
    shared = [g for g in profiles.index if g in set(adata.var_names)]
    if len(shared) < 200:
        raise input_error(
            f"only {len(shared)} genes shared with the profile reference.",
            fix="the built-in HematoMap profiles are human: use human gene symbols, or give a "
            "single-cell reference h5ad in config fidelity.reference.",
        )
    prof = profiles.loc[shared]
    log_prof = np.log1p(prof.to_numpy().T / prof.to_numpy().sum(axis=0)[:, None] * 1e6)
    var = log_prof.var(axis=0)
    top = np.argsort(-var)[: min(n_genes, len(shared))]
    genes = [shared[i] for i in top]
    log_prof = log_prof[:, top]
    counts = adata.layers[layer] if layer else adata.X
    counts = sp.csr_matrix(counts)
    lib = np.asarray(counts.sum(axis=1)).ravel()
    gidx = adata.var_names.get_indexer(genes)
    sub = counts[:, gidx]
    r = np.zeros((adata.n_obs, len(prof.columns)))
    null = np.zeros(adata.n_obs)
    for start in range(0, adata.n_obs, chunk_size):
        stop = min(start + chunk_size, adata.n_obs)
        block = sub[start:stop].toarray() / np.clip(lib[start:stop, None], 1, None) * 1e6
        r[start:stop], null[start:stop] = profile_correlation_core(
            np.log1p(block), log_prof, n_null=n_null, seed=random_state
        )
    best = r.argmax(axis=1)
    best_r = r.max(axis=1)
    novel = best_r < null + margin
    classes = list(prof.columns)
    closest = np.array(classes, dtype=object)[best]
    ex = np.exp((r - best_r[:, None]) / 0.02)
    conf = 1.0 / ex.sum(axis=1)
    adata.obs["predicted_label"] = pd.Categorical(
        np.where(novel, NOVEL, closest), categories=[*classes, NOVEL]
    )
    adata.obs["closest_label"] = pd.Categorical(closest, categories=classes)
    adata.obs["label_confidence"] = conf
    adata.obs["label_uncertainty"] = 1 - conf
    adata.obs["reference_distance"] = 1 - best_r
    adata.obs["novel"] = novel
    adata.obs["is_reference"] = False
    adata.uns[key_added] = {
        "params": {
            "method": "profiles",
            "n_genes": len(genes),
            "margin": margin,
            "n_null": n_null,
            "random_state": random_state,
        },
        "labels": classes,
        "stages": [],
    }
    logger.info(
        "profile-level mapping onto %d types with %d genes: %d of %d cells novel",
        len(classes),
        len(genes),
        int(novel.sum()),
        adata.n_obs,
    )
    return adata if copy else None


# --------------------------------------------------------------------------------------------------------
# scorecard


def _counts(adata: ad.AnnData, layer: str | None) -> sp.csr_matrix:
    if layer and layer in adata.layers:
        return sp.csr_matrix(adata.layers[layer])
    return sp.csr_matrix(adata.X)


def _sum_rows(x: sp.csr_matrix, idx: np.ndarray) -> np.ndarray:
    return np.asarray(x[idx].sum(axis=0)).ravel()


class _Reference:
    """In vivo comparators: per type and donor pseudobulks, composition, HSC genes, donor null."""

    def __init__(
        self,
        x: sp.csr_matrix,
        labels: np.ndarray,
        donors: np.ndarray,
        classes: Sequence[str],
        *,
        min_cells: int,
        hsc_label: str | None,
        seed: int,
        n_hsc_genes: int = 30,
    ):
        self.classes = list(classes)
        self.min_cells = min_cells
        self.x = x
        self.labels = labels
        self.donors = donors
        self.rng = np.random.default_rng([seed, 7])
        counts = pd.Series(labels).value_counts()
        comp = np.array([counts.get(c, 0) for c in self.classes], dtype=float)
        self.composition = comp / comp.sum()
        self.donor_list = sorted(pd.unique(donors))
        self.pb: dict[tuple[str, str], np.ndarray] = {}
        self.cells: dict[tuple[str, str], np.ndarray] = {}
        for c in self.classes:
            for d in self.donor_list:
                idx = np.flatnonzero((labels == c) & (donors == d))
                if len(idx) >= min_cells:
                    self.cells[(c, d)] = idx
                    self.pb[(c, d)] = _sum_rows(x, idx)
        self.hsc_label = hsc_label
        self.identity_null = 1.0
        self.hsc_genes = np.array([], dtype=int)
        self.hsc_null = 1.0
        if hsc_label in self.classes:
            hsc = np.flatnonzero(labels == hsc_label)
            rest = np.flatnonzero(labels != hsc_label)
            if len(hsc) >= min_cells and len(rest):
                cpm_h = _sum_rows(x, hsc) / max(x[hsc].sum(), 1) * 1e6
                cpm_r = _sum_rows(x, rest) / max(x[rest].sum(), 1) * 1e6
                lfc = np.log2((cpm_h + 1) / (cpm_r + 1))
                ok = cpm_h >= 20
                order = np.argsort(-np.where(ok, lfc, -np.inf))
                self.hsc_genes = order[: min(n_hsc_genes, int((ok & (lfc > 1)).sum()))]
                self.hsc_cpm = cpm_h[self.hsc_genes]
                self.hsc_null = self._hsc_donor_null(hsc)
        self._null_cache: dict[tuple[str, int], float] = {}

    def donors_of(self, c: str) -> list[str]:
        return [d for d in self.donor_list if (c, d) in self.pb]

    def _hsc_donor_null(self, hsc: np.ndarray) -> float:
        """Completeness of one donor's HSCs against the other donors' HSCs (1 with a single donor)."""
        vals = []
        for d in self.donor_list:
            idx = hsc[self.donors[hsc] == d]
            rest = hsc[self.donors[hsc] != d]
            if len(idx) >= self.min_cells and len(rest) >= self.min_cells:
                cpm = _sum_rows(self.x, idx)[self.hsc_genes] / max(self.x[idx].sum(), 1) * 1e6
                cpm_r = _sum_rows(self.x, rest)[self.hsc_genes] / max(self.x[rest].sum(), 1) * 1e6
                vals.append(float(np.minimum(1.0, (cpm + 1) / (cpm_r + 1)).mean()))
        return float(np.mean(vals)) if vals else 1.0

    def donor_null(self, c: str, n: int) -> float:
        """Mean correlation between ``n`` cells of one donor and another donor (type ``c``)."""
        key = (c, n)
        if key in self._null_cache:
            return self._null_cache[key]
        donors = self.donors_of(c)
        rs = []
        if len(donors) >= 2:
            for d1 in donors:
                for d2 in donors:
                    if d1 == d2:
                        continue
                    idx = self.cells[(c, d1)]
                    for _ in range(3):
                        pick = self.rng.choice(idx, size=min(n, len(idx)), replace=len(idx) < n)
                        rs.append(
                            float(row_corr(log_cpm(_sum_rows(self.x, pick)), log_cpm(self.pb[(c, d2)])))
                        )
        elif len(donors) == 1:
            idx = self.cells[(c, donors[0])]
            for _ in range(5):
                perm = self.rng.permutation(idx)
                half = len(perm) // 2
                a, b = perm[:half], perm[half:]
                a = self.rng.choice(a, size=min(n, len(a)), replace=False)
                rs.append(float(row_corr(log_cpm(_sum_rows(self.x, a)), log_cpm(_sum_rows(self.x, b)))))
        val = float(np.mean(rs)) if rs else float("nan")
        self._null_cache[key] = val
        return val


def _score_population(
    x: sp.csr_matrix,
    labels: np.ndarray,
    confident: np.ndarray,
    novel: np.ndarray,
    ref: _Reference,
    *,
    n_bootstrap: int,
    seed: int,
    exclude_donor: str | None = None,
    stage_labels: np.ndarray | None = None,
) -> tuple[dict[str, Any], pd.DataFrame]:
    """Scorecard parts (point estimate + bootstrap replicates) for one population of cells."""
    n = len(labels)
    classes = ref.classes
    w = bootstrap_weights(n, n_bootstrap, seed)
    w_all = np.vstack([np.ones(n), w])  # row 0 = point estimate
    code = pd.Categorical(labels, categories=classes).codes
    conf_code = np.where(confident & (code >= 0), code, -1)
    sel = conf_code >= 0
    identity_raw = (w_all @ sel.astype(float)) / max(n, 1)
    # calibrated: 1 = as large a confidently mapped share as held-out in vivo reference cells reach
    identity = np.minimum(1.0, identity_raw / max(getattr(ref, "identity_null", 1.0), 1e-9))
    # composition: every non-novel cell counts for its predicted type (novel cells are their own category)
    mapped_code = np.where(~novel & (code >= 0), code, -1)
    onehot = np.zeros((n, len(classes)))
    msel = mapped_code >= 0
    onehot[np.flatnonzero(msel), mapped_code[msel]] = 1.0
    type_counts = w_all @ onehot  # (B+1) x types
    novel_share = (w_all @ novel.astype(float)) / max(n, 1)
    frac = type_counts / max(n, 1)
    mapped = type_counts.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        comp_mapped = np.where(mapped > 0, type_counts / np.where(mapped > 0, mapped, 1), 0.0)
    ref_comp = ref.composition
    jsd = np.where(mapped[:, 0] > 0, jensen_shannon(comp_mapped, ref_comp[None, :]), 1.0)
    composition = 1.0 - jsd
    eps = 0.5 / max(n, 1)
    log2fc = np.log2((frac + eps) / (ref_comp[None, :] + eps))

    # similarity per matched type
    sim_t = np.full((n_bootstrap + 1, len(classes)), np.nan)
    for j, c in enumerate(classes):
        idx = np.flatnonzero(conf_code == j)
        donors = [d for d in ref.donors_of(c) if d != exclude_donor]
        if len(idx) < ref.min_cells or not donors:
            continue
        pbs = w_all[:, idx] @ x[idx]  # (B+1) x genes
        lq = log_cpm(np.asarray(pbs))
        r_q = np.mean([row_corr(lq, log_cpm(ref.pb[(c, d)])[None, :]) for d in donors], axis=0)
        r_null = ref.donor_null(c, len(idx))
        if np.isfinite(r_null):
            sim_t[:, j] = similarity_ratio(r_q, r_null)
    counts_for_weight = np.where(np.isfinite(sim_t), type_counts, 0.0)
    tot = counts_for_weight.sum(axis=1)
    similarity = np.where(
        tot > 0, np.nansum(np.nan_to_num(sim_t) * counts_for_weight, axis=1) / np.where(tot > 0, tot, 1), 0.0
    )

    # HSC programme completeness (reference-derived fallback)
    programme = np.full(n_bootstrap + 1, np.nan)
    if ref.hsc_label in classes and len(ref.hsc_genes):
        j = classes.index(ref.hsc_label)
        idx = np.flatnonzero(conf_code == j)
        if len(idx) == 0:
            programme[:] = 0.0
        else:
            xs = x[idx]
            tot_counts = np.asarray(xs.sum(axis=1)).ravel()
            gene_counts = np.asarray(xs[:, ref.hsc_genes].todense())
            pb = w_all[:, idx] @ gene_counts
            lib = w_all[:, idx] @ tot_counts
            with np.errstate(invalid="ignore", divide="ignore"):
                cpm = pb / np.where(lib > 0, lib, 1)[:, None] * 1e6
            ratio = np.minimum(1.0, (cpm + 1) / (ref.hsc_cpm[None, :] + 1))
            programme = np.where(lib > 0, np.minimum(1.0, ratio.mean(axis=1) / ref.hsc_null), 0.0)

    parts = {
        "identity": identity,
        "identity_raw": identity_raw,
        "similarity": similarity,
        "programme": programme,
        "composition": composition,
        "jsd": jsd,
        "novel_share": novel_share,
    }
    closest_stage, stage_share = "", float("nan")
    if stage_labels is not None and sel.any():
        vc = pd.Series(stage_labels[sel]).value_counts(normalize=True)
        closest_stage, stage_share = str(vc.index[0]), float(vc.iloc[0])
    summary: dict[str, Any] = {
        "n_cells": n,
        "closest_stage": closest_stage,
        "closest_stage_share": stage_share,
    }
    for name, v in parts.items():
        summary[name] = float(v[0])
        summary[f"{name}_ci_low"], summary[f"{name}_ci_high"] = percentile_ci(
            v[1:], estimate=v[0], bounds=(0, 1)
        )
    summary["_replicates"] = parts
    rows = []
    for j, c in enumerate(classes):
        lo, hi = percentile_ci(frac[1:, j])
        flo, fhi = percentile_ci(log2fc[1:, j])
        slo, shi = percentile_ci(sim_t[1:, j], estimate=sim_t[0, j], bounds=(0, 1))
        rows.append(
            {
                "cell_type": c,
                "n_cells": int(type_counts[0, j]),
                "fraction": frac[0, j],
                "fraction_ci_low": lo,
                "fraction_ci_high": hi,
                "invivo_fraction": ref_comp[j],
                "log2fc": log2fc[0, j],
                "log2fc_ci_low": flo,
                "log2fc_ci_high": fhi,
                "similarity": sim_t[0, j],
                "similarity_ci_low": slo,
                "similarity_ci_high": shi,
            }
        )
    nlo, nhi = percentile_ci(novel_share[1:])
    rows.append(
        {
            "cell_type": NOVEL,
            "n_cells": int(novel.sum()),
            "fraction": novel_share[0],
            "fraction_ci_low": nlo,
            "fraction_ci_high": nhi,
            "invivo_fraction": np.nan,
            "log2fc": np.nan,
            "log2fc_ci_low": np.nan,
            "log2fc_ci_high": np.nan,
            "similarity": np.nan,
            "similarity_ci_low": np.nan,
            "similarity_ci_high": np.nan,
        }
    )
    return summary, pd.DataFrame(rows)


def _finish_index(summary: dict[str, Any], weights: Mapping[str, float]) -> None:
    reps = summary.pop("_replicates")
    f = weighted_fidelity_index({k: reps[k] for k in PARTS}, weights)
    summary["fidelity_index"] = float(f[0])
    summary["fidelity_index_ci_low"], summary["fidelity_index_ci_high"] = percentile_ci(
        f[1:], estimate=f[0], bounds=(0, 1)
    )


def _hsc_label(classes: Sequence[str], hsc_label: str | None) -> str | None:
    if hsc_label:
        return hsc_label if hsc_label in classes else None
    cands = [c for c in classes if re.search(r"hsc", c, flags=re.IGNORECASE)]
    return sorted(cands, key=len)[0] if cands else None


def _donor_column(adata: ad.AnnData, ref_mask: np.ndarray) -> np.ndarray:
    for cand in ("donor", "batch", "sample"):
        if cand in adata.obs:
            v = adata.obs[cand].astype(str).to_numpy()
            if pd.Series(v[ref_mask]).replace("", np.nan).nunique() >= 2:
                return v
    return np.full(adata.n_obs, "reference")


def _programme_override(programme: pd.DataFrame | None, sample: str) -> tuple[float, float, float] | None:
    if programme is None or "hsc_programme_share" not in programme or "sample" not in programme:
        return None
    row = programme.loc[programme["sample"].astype(str) == sample]
    if row.empty or not np.isfinite(float(row["hsc_programme_share"].iloc[0])):
        return None
    val = float(np.clip(row["hsc_programme_share"].iloc[0], 0, 1))
    lo = float(row["hsc_programme_share_ci_low"].iloc[0]) if "hsc_programme_share_ci_low" in row else np.nan
    hi = float(row["hsc_programme_share_ci_high"].iloc[0]) if "hsc_programme_share_ci_high" in row else np.nan
    return val, lo, hi


def scorecard(
    adata: ad.AnnData,
    *,
    sample_key: str = "sample",
    condition_key: str = "condition",
    query_conditions: Sequence[str] = ("engineered", "organoid"),
    layer: str | None = "counts",
    programme: pd.DataFrame | None = None,
    weights: Mapping[str, float] | None = None,
    min_confidence: float = 0.5,
    min_cells: int = 10,
    n_genes: int = 2000,
    hsc_label: str | None = None,
    n_bootstrap: int = 200,
    programme_null: float | None = None,
    null_source: ad.AnnData | None = None,
    key_added: str = "scorecard",
    random_state: int = 0,
    copy: bool = False,
) -> ad.AnnData | None:
    """Fidelity scorecard per engineered / organoid sample (run :func:`map_to_reference` first).

    The parts and the fidelity index are defined in the module docstring (``hscseq.fidelity``).

    Parameters
    ----------
    adata
        Mapped cells (obs ``predicted_label``, ``label_confidence``, ``novel``, ``is_reference`` and the
        reference labels in ``uns["fidelity"]``), raw counts in ``layers[layer]``.
    sample_key
        obs column with the sample of each cell.
    condition_key
        obs column with the condition of each cell.
    query_conditions
        Conditions that get a scorecard row.
    layer
        Layer with raw counts (``None`` = X).
    programme
        The score stage's ``hsc_programme.tsv``; its ``hsc_programme_share`` replaces the reference-derived
        HSC programme completeness for the samples it lists.
    weights
        Weights of identity, similarity, programme, composition in the index (default: equal).
    min_confidence
        Label probability needed to count a cell as confidently mapped.
    min_cells
        Cells of a type needed for a pseudobulk.
    n_genes
        Informative genes (most variable across reference type pseudobulks) used for correlations.
    hsc_label
        Reference label of HSCs (default: the shortest label containing "HSC").
    n_bootstrap
        Bootstrap replicates of each CI.
    programme_null
        Donor-to-donor HSC programme completeness to scale by (default: computed from this reference's donors,
        1 with a single donor); :func:`controls` passes the full reference's value.
    null_source
        Reference cells (same genes, ``layers[layer]``, labels in ``obs[reference_label]``, donors in
        ``obs["donor"]``) whose donor-to-donor similarity nulls replace this reference's (:func:`controls`
        passes the full reference: with one donor held out, a single donor is left and its split-half null
        would lack the donor shift).
    key_added
        ``uns`` key: ``uns[key_added]["table"]`` (one row per sample), ``["composition"]`` (sample x type),
        ``["params"]``.
    random_state
        Seed of the bootstrap.
    copy
        Return a modified copy instead of writing in place.

    Returns
    -------
    ``None``, or the modified copy when ``copy=True``.
    """
    for col in ("predicted_label", "label_confidence", "novel", "is_reference"):
        if col not in adata.obs:
            raise input_error(f"obs lacks {col!r}.", fix="run hscseq.fidelity.map_to_reference first.")
    adata = adata.copy() if copy else adata
    weights = dict(weights or {p: 1.0 for p in PARTS})
    ref_mask = adata.obs["is_reference"].to_numpy().astype(bool)
    classes = list(adata.uns["fidelity"]["labels"])
    x_all = _counts(adata, layer)
    ref_labels_all = (
        adata.obs["reference_label" if "reference_label" in adata.obs else "closest_label"]
        .astype(str)
        .to_numpy()
    )
    ref_key = adata.uns["fidelity"]["params"].get("reference_key", "reference_label")
    if ref_key in adata.obs:
        ref_labels_all = adata.obs[ref_key].astype(str).to_numpy()
    genes = _informative_genes(x_all, ref_mask, ref_labels_all, classes, n_genes)
    x = x_all[:, genes]
    donors_all = _donor_column(adata, ref_mask)
    hsc = _hsc_label(classes, hsc_label)
    # HSC genes use all genes; similarity the informative ones -> two references share labels/donors
    ref_sim = _Reference(
        x[ref_mask],
        ref_labels_all[ref_mask],
        donors_all[ref_mask],
        classes,
        min_cells=min_cells,
        hsc_label=None,
        seed=random_state,
    )
    ref_prog = _Reference(
        x_all[ref_mask],
        ref_labels_all[ref_mask],
        donors_all[ref_mask],
        classes,
        min_cells=min_cells,
        hsc_label=hsc,
        seed=random_state,
    )
    if programme_null is not None:
        ref_prog.hsc_null = float(programme_null)
    if null_source is not None:
        n_lab = null_source.obs[ref_key].astype(str).to_numpy()
        n_don = _donor_column(null_source, np.ones(null_source.n_obs, bool))
        ref_null = _Reference(
            _counts(null_source, layer)[:, genes],
            n_lab,
            n_don,
            classes,
            min_cells=min_cells,
            hsc_label=None,
            seed=random_state,
        )
        ref_sim.donor_null = ref_null.donor_null
    obs = adata.obs
    pred = obs["predicted_label"].astype(str).to_numpy()
    confident = (~obs["novel"].to_numpy().astype(bool)) & (
        obs["label_confidence"].to_numpy() >= min_confidence
    )
    novel = obs["novel"].to_numpy().astype(bool)
    # the identity null: share of (cross-validated) reference cells mapped confidently
    ref_sim.identity_null = float(confident[ref_mask].mean()) if ref_mask.any() else 1.0
    stage = obs["closest_stage"].astype(str).to_numpy() if "closest_stage" in obs else None
    samples = [
        s
        for s in pd.unique(obs[sample_key].astype(str))
        if obs.loc[obs[sample_key].astype(str) == s, condition_key].astype(str).iloc[0] in query_conditions
    ]
    rows, comp_rows = [], []
    for k, s in enumerate(samples):
        idx = np.flatnonzero((obs[sample_key].astype(str) == s).to_numpy() & ~ref_mask)
        if len(idx) == 0:
            continue
        summary, comp = _score_population_pair(
            x,
            x_all,
            idx,
            pred,
            confident,
            novel,
            ref_sim,
            ref_prog,
            n_bootstrap=n_bootstrap,
            seed=random_state + k,
            stage=stage,
        )
        override = _programme_override(programme, s)
        if override is not None:
            summary["programme"], summary["programme_ci_low"], summary["programme_ci_high"] = override
            summary["_replicates"]["programme"] = np.full_like(
                summary["_replicates"]["programme"], override[0]
            )
            summary["programme_source"] = "score_table"
        else:
            summary["programme_source"] = "reference_hsc_genes" if hsc else "unavailable"
        _finish_index(summary, weights)
        if override is not None:  # the table value has no replicates: CI of F reflects the other parts
            pass
        first = obs.iloc[idx[0]]
        meta = {
            "sample": s,
            "condition": str(first[condition_key]),
            "timepoint": str(first["timepoint"]) if "timepoint" in obs else "",
        }
        batches = set(obs["batch"].astype(str).to_numpy()[idx]) if "batch" in obs else set()
        ref_batches = set(obs["batch"].astype(str).to_numpy()[ref_mask]) if "batch" in obs else set()
        meta["confounded"] = bool(batches and not (batches & ref_batches))
        rows.append({**meta, **summary})
        comp.insert(0, "sample", s)
        comp.insert(1, "condition", meta["condition"])
        comp.insert(2, "timepoint", meta["timepoint"])
        comp_rows.append(comp)
    table = pd.DataFrame(rows)
    if not table.empty:
        table = table[_scorecard_columns(table)]
    composition = pd.concat(comp_rows, ignore_index=True) if comp_rows else pd.DataFrame()
    confusion = np.asarray(adata.uns["fidelity"].get("confusion", np.zeros((0, 0))))
    if not composition.empty and confusion.size:
        composition["fraction_corrected"] = np.nan
        for s in composition["sample"].unique():
            m = composition["sample"] == s
            observed = composition.loc[m].set_index("cell_type").reindex([*classes, NOVEL])["fraction"]
            full_conf = np.vstack([confusion, np.eye(len(classes) + 1)[-1]])
            corrected = correct_composition(observed.fillna(0).to_numpy(), full_conf)
            composition.loc[m, "fraction_corrected"] = (
                pd.Series(corrected, index=[*classes, NOVEL])
                .reindex(composition.loc[m, "cell_type"])
                .to_numpy()
            )
    adata.uns[key_added] = {
        "params": {
            "sample_key": sample_key,
            "condition_key": condition_key,
            "layer": layer or "",
            "weights": weights,
            "min_confidence": min_confidence,
            "min_cells": min_cells,
            "n_genes": len(genes),
            "hsc_label": hsc or "",
            "n_bootstrap": n_bootstrap,
            "random_state": random_state,
        },
        "table": table,
        "composition": composition,
    }
    return adata if copy else None


def _scorecard_columns(table: pd.DataFrame) -> list[str]:
    first = [
        "sample",
        "condition",
        "timepoint",
        "n_cells",
        "fidelity_index",
        "fidelity_index_ci_low",
        "fidelity_index_ci_high",
    ]
    for p in (*PARTS, "identity_raw", "jsd", "novel_share"):
        first += [p, f"{p}_ci_low", f"{p}_ci_high"]
    first += ["programme_source", "closest_stage", "closest_stage_share", "confounded"]
    return [c for c in first if c in table] + [c for c in table if c not in first]


def _score_population_pair(
    x, x_all, idx, pred, confident, novel, ref_sim, ref_prog, *, n_bootstrap, seed, stage, exclude_donor=None
):
    """Similarity/identity/composition from ``ref_sim`` (informative genes), programme from ``ref_prog``."""
    st = stage[idx] if stage is not None else None
    summary, comp = _score_population(
        x[idx],
        pred[idx],
        confident[idx],
        novel[idx],
        ref_sim,
        n_bootstrap=n_bootstrap,
        seed=seed,
        exclude_donor=exclude_donor,
        stage_labels=st,
    )
    if ref_prog.hsc_label is not None:
        prog, _ = _score_population(
            x_all[idx],
            pred[idx],
            confident[idx],
            novel[idx],
            _ProgrammeOnly(ref_prog),
            n_bootstrap=n_bootstrap,
            seed=seed,
            exclude_donor=exclude_donor,
        )
        summary["_replicates"]["programme"] = prog["_replicates"]["programme"]
        summary["programme"] = prog["programme"]
        summary["programme_ci_low"], summary["programme_ci_high"] = (
            prog["programme_ci_low"],
            prog["programme_ci_high"],
        )
    return summary, comp


class _ProgrammeOnly:
    """A view of a :class:`_Reference` that skips pseudobulk similarity (HSC programme only)."""

    def __init__(self, ref: _Reference):
        self.classes = ref.classes
        self.min_cells = ref.min_cells
        self.composition = ref.composition
        self.hsc_label = ref.hsc_label
        self.hsc_genes = ref.hsc_genes
        self.hsc_cpm = getattr(ref, "hsc_cpm", None)
        self.hsc_null = ref.hsc_null

    def donors_of(self, c: str) -> list[str]:
        return []


def _informative_genes(
    x: sp.csr_matrix, ref_mask: np.ndarray, labels: np.ndarray, classes: Sequence[str], n_genes: int
) -> np.ndarray:
    """Genes most variable across reference type pseudobulks (log CPM), among genes expressed in one."""
    pbs = np.vstack([_sum_rows(x, np.flatnonzero(ref_mask & (labels == c))) for c in classes])
    lc = log_cpm(pbs)
    expressed = lc.max(axis=0) >= np.log1p(10)
    var = np.where(expressed, lc.var(axis=0), -1)
    order = np.argsort(-var)
    return np.sort(order[: min(n_genes, int(expressed.sum()))])


# --------------------------------------------------------------------------------------------------------
# controls


def controls(
    adata: ad.AnnData,
    *,
    reference_key: str = "reference_label",
    use_rep: str = "X_integrated",
    n_neighbors: int = 15,
    null_quantile: float = 0.99,
    absent_quantile: float = 0.05,
    layer: str | None = "counts",
    min_confidence: float = 0.5,
    min_cells: int = 10,
    n_genes: int = 2000,
    weights: Mapping[str, float] | None = None,
    negative_control_type: str | None = None,
    hsc_label: str | None = None,
    n_bootstrap: int = 100,
    random_state: int = 0,
) -> pd.DataFrame:
    """Positive and negative controls of the fidelity index, from the reference alone.

    Positive: each in vivo donor in turn is removed from the reference and scored as a query (expected
    ``F >= 0.9``). Negative: one reference type (``negative_control_type``, default the type farthest from
    every other type in the latent) is removed from the reference as well, and that donor's cells of the type
    are scored as a query (expected ``F <= 0.2``: an off-target population absent from the reference).
    With a single donor, a random 20% of reference cells plays the held-out donor.

    Parameters
    ----------
    adata
        Cells with reference labels in ``obs[reference_key]`` and the latent ``obsm[use_rep]``.
    reference_key
        obs column with the reference labels.
    use_rep
        Shared latent used for kNN mapping.
    n_neighbors
        Number of reference neighbours.
    null_quantile
        Quantile of the held-out null above which a cell is novel.
    absent_quantile
        Quantile of the held-out-type null a novel cell must also exceed (:func:`novelty_thresholds`).
    layer
        Layer with raw counts.
    min_confidence
        Label probability needed to count a cell as confidently mapped.
    min_cells
        Cells of a type needed for a pseudobulk.
    n_genes
        Informative genes for correlations.
    weights
        Index weights (default equal).
    negative_control_type
        Reference type used as the off-target population.
    hsc_label
        Reference label of HSCs.
    n_bootstrap
        Bootstrap replicates.
    random_state
        Seed.

    Returns
    -------
    One row per control: control, held_out, expected, pass, fidelity_index (+ CI) and every part.
    """
    ref_mask = _reference_mask(adata, reference_key)
    ref = adata[ref_mask].copy()
    labels = ref.obs[reference_key].astype(str).to_numpy()
    donors = _donor_column(ref, np.ones(ref.n_obs, bool))
    donor_list = sorted(pd.unique(donors))
    rng = np.random.default_rng([random_state, 11])
    if len(donor_list) < 2:
        donors = np.where(rng.random(ref.n_obs) < 0.2, "heldout_20pct", "rest")
        donor_list = ["heldout_20pct"]
    latent = np.asarray(ref.obsm[use_rep], dtype=float)
    classes = sorted(pd.unique(labels))
    if negative_control_type is None:
        cents = np.vstack([latent[labels == c].mean(axis=0) for c in classes])
        dmat = np.linalg.norm(cents[:, None] - cents[None], axis=2)
        np.fill_diagonal(dmat, np.inf)
        negative_control_type = classes[int(np.argmax(dmat.min(axis=1)))]
    weights = dict(weights or {p: 1.0 for p in PARTS})
    full = ref.copy()
    full.obs["donor"] = donors
    map_to_reference(
        full,
        reference_key=reference_key,
        use_rep=use_rep,
        n_neighbors=n_neighbors,
        null_quantile=null_quantile,
        absent_quantile=absent_quantile,
        donor_key="donor",
        random_state=random_state,
    )
    full_null = full.uns["fidelity"]
    null_ref = ref.copy()
    null_ref.obs["donor"] = donors
    null_ref.obs["_ref"] = labels  # the label column the control objects use
    # HSC programme: the donor-to-donor null of the full reference (a held-out donor leaves one donor only)
    x_full = _counts(ref, layer)
    prog_null = _Reference(
        x_full,
        labels,
        donors,
        classes,
        min_cells=min_cells,
        hsc_label=_hsc_label(classes, hsc_label),
        seed=random_state,
    ).hsc_null
    rows = []
    for k, d in enumerate(donor_list[:5]):
        for kind in ("positive", "negative"):
            work = ref.copy()
            held = donors == d
            lab = labels.astype(object).copy()
            if kind == "positive":
                lab[held] = ""
                keep = np.ones(ref.n_obs, bool)
            else:
                is_type = labels == negative_control_type
                keep = (~held & ~is_type) | (held & is_type)
                lab[held] = ""
            work = work[keep].copy()
            work.obs["_ref"] = pd.Series(lab[keep], index=work.obs_names).replace("", np.nan)
            work.obs["_sample"] = np.where(held[keep], "control", "reference")
            work.obs["_condition"] = np.where(held[keep], "control", "in_vivo")
            work.obs["donor"] = donors[keep]
            work.obs["batch"] = donors[keep]
            map_to_reference(
                work,
                reference_key="_ref",
                use_rep=use_rep,
                n_neighbors=n_neighbors,
                null_quantile=null_quantile,
                absent_quantile=absent_quantile,
                donor_key=None,
                sample_key="_sample",
                null=full_null,
                random_state=random_state,
            )
            scorecard(
                work,
                sample_key="_sample",
                condition_key="_condition",
                query_conditions=("control",),
                layer=layer,
                weights=weights,
                min_confidence=min_confidence,
                min_cells=min_cells,
                n_genes=n_genes,
                hsc_label=hsc_label,
                n_bootstrap=n_bootstrap,
                programme_null=prog_null,
                null_source=null_ref,
                random_state=random_state + k,
            )
            row = work.uns["scorecard"]["table"].iloc[0].to_dict()
            f = row["fidelity_index"]
            if kind == "positive":
                name, expected, ok = f"positive: held-out donor {d}", ">= 0.9", f >= 0.9
            else:
                name, expected, ok = (
                    f"negative: {negative_control_type} of {d} absent from the reference",
                    "<= 0.2",
                    f <= 0.2,
                )
            rows.append(
                {
                    "control": name,
                    "kind": kind,
                    "held_out": d,
                    "expected": expected,
                    "pass": bool(ok),
                    **{
                        k2: v
                        for k2, v in row.items()
                        if k2 not in ("sample", "condition", "timepoint", "confounded")
                    },
                }
            )
            logger.info(
                "control %s: fidelity index %.3f [%.3f, %.3f] (expected %s) -> %s",
                name,
                f,
                row["fidelity_index_ci_low"],
                row["fidelity_index_ci_high"],
                expected,
                "PASS" if ok else "FAIL",
            )
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------------------------------------
# differences explained: pseudobulk DE per matched type


def confounded_samples(
    obs: pd.DataFrame, *, sample_key: str = "sample", batch_key: str = "batch", reference_mask: np.ndarray
) -> list[str]:
    """Query samples whose batches contain no reference cell (condition and batch are confounded)."""
    if batch_key not in obs:
        return []
    ref_batches = set(obs.loc[reference_mask, batch_key].astype(str))
    out = []
    for s, grp in obs.loc[~reference_mask].groupby(sample_key, observed=True):
        if not set(grp[batch_key].astype(str)) & ref_batches:
            out.append(str(s))
    return out


def pseudobulk_de(
    adata: ad.AnnData,
    *,
    sample_key: str = "sample",
    query_conditions: Sequence[str] = ("engineered", "organoid"),
    condition_key: str = "condition",
    layer: str | None = "counts",
    min_cells: int = 10,
    top_n: int = 25,
    min_confidence: float = 0.5,
    max_genes: int = 1000,
    random_state: int = 0,
) -> pd.DataFrame:
    """pydeseq2 per query sample and matched type: the sample's pseudobulk vs the in vivo donors' pseudobulks.

    Design ``~condition`` with one query pseudobulk and one pseudobulk per in vivo donor (at least two
    needed). Condition is confounded with batch whenever the query sample has its own batch (always for a
    single engineered sample): the fold changes then mix biology and batch, which is logged as a warning and
    flagged in the ``confounded`` column.

    Parameters
    ----------
    adata
        Mapped cells (``map_to_reference``), raw counts in ``layers[layer]``.
    sample_key
        obs column with samples.
    query_conditions
        Conditions of the query samples.
    condition_key
        obs column with conditions.
    layer
        Layer with raw counts.
    min_cells
        Cells needed in every pseudobulk.
    top_n
        Genes kept per direction (``missing``: lower in the query; ``extra``: higher).
    min_confidence
        Label probability needed to use a cell.
    max_genes
        Genes tested per type: the most expressed ones over all pseudobulks of the comparison (an
        independent filter on mean expression, blind to the condition labels, as DESeq2's own independent
        filtering), which bounds the pydeseq2 run time.
    random_state
        Seed (unused by pydeseq2's deterministic fit, recorded for provenance).

    Returns
    -------
    Long table: sample, cell_type, direction, rank, gene, log2_fold_change, lfc_se, pvalue, padj,
    base_mean, n_query_cells, n_invivo_donors, confounded.
    """
    from pydeseq2.dds import DeseqDataSet
    from pydeseq2.default_inference import DefaultInference
    from pydeseq2.ds import DeseqStats

    obs = adata.obs
    ref_mask = obs["is_reference"].to_numpy().astype(bool)
    ref_key = adata.uns["fidelity"]["params"].get("reference_key", "reference_label")
    ref_labels = obs[ref_key].astype(str).to_numpy()
    donors = _donor_column(adata, ref_mask)
    pred = obs["predicted_label"].astype(str).to_numpy()
    confident = (~obs["novel"].to_numpy().astype(bool)) & (
        obs["label_confidence"].to_numpy() >= min_confidence
    )
    x = _counts(adata, layer)
    confounded = set(confounded_samples(obs, sample_key=sample_key, reference_mask=ref_mask))
    cols = [
        "sample",
        "cell_type",
        "direction",
        "rank",
        "gene",
        "log2_fold_change",
        "lfc_se",
        "pvalue",
        "padj",
        "base_mean",
        "n_query_cells",
        "n_invivo_donors",
        "confounded",
    ]
    rows = []
    queries = [
        s
        for s in pd.unique(obs.loc[~ref_mask, sample_key].astype(str))
        if obs.loc[obs[sample_key].astype(str) == s, condition_key].astype(str).iloc[0] in query_conditions
    ]
    for s in queries:
        if s in confounded:
            logger.warning(
                "DE for sample %s: condition and batch are confounded (its batch has no in vivo "
                "cells); fold changes mix biology with batch effects - read them as hypotheses.",
                s,
            )
        in_s = (obs[sample_key].astype(str) == s).to_numpy() & ~ref_mask
        for t in adata.uns["fidelity"]["labels"]:
            q_idx = np.flatnonzero(in_s & confident & (pred == t))
            if len(q_idx) < min_cells:
                continue
            pbs, names = [_sum_rows(x, q_idx)], [f"{s}"]
            for d in sorted(pd.unique(donors[ref_mask])):
                r_idx = np.flatnonzero(ref_mask & (ref_labels == t) & (donors == d))
                if len(r_idx) >= min_cells:
                    pbs.append(_sum_rows(x, r_idx))
                    names.append(f"invivo_{d}")
            if len(pbs) < 3:
                logger.warning(
                    "DE for %s / %s skipped: fewer than two in vivo donors with >= %d cells", s, t, min_cells
                )
                continue
            counts = pd.DataFrame(
                np.rint(np.vstack(pbs)).astype(np.int64), index=names, columns=adata.var_names.astype(str)
            )
            counts = counts.loc[:, (counts >= 5).sum(axis=0) >= 2]
            if counts.shape[1] > max_genes:
                mean_cpm = (counts.div(counts.sum(axis=1), axis=0) * 1e6).mean(axis=0)
                counts = counts.loc[:, mean_cpm.nlargest(max_genes).index]
            meta = pd.DataFrame({"condition": ["query"] + ["invivo"] * (len(pbs) - 1)}, index=names)
            try:
                dds = DeseqDataSet(
                    counts=counts,
                    metadata=meta,
                    design="~condition",
                    refit_cooks=False,
                    inference=DefaultInference(n_cpus=1),
                    quiet=True,
                )
                dds.deseq2()
                stats = DeseqStats(
                    dds,
                    contrast=["condition", "query", "invivo"],
                    inference=DefaultInference(n_cpus=1),
                    quiet=True,
                )
                stats.summary()
            except (ValueError, np.linalg.LinAlgError) as err:  # pragma: no cover - degenerate pseudobulks
                logger.warning("DE for %s / %s failed: %s", s, t, err)
                continue
            res = stats.results_df.dropna(subset=["log2FoldChange"])
            for direction, sign in (("missing", -1), ("extra", 1)):
                sub = res[np.sign(res["log2FoldChange"]) == sign]
                sub = sub.sort_values(
                    ["padj", "log2FoldChange"],
                    key=lambda c, sign=sign: c if c.name == "padj" else -sign * c,
                    na_position="last",
                ).head(top_n)
                for rank, (gene, r) in enumerate(sub.iterrows(), start=1):
                    rows.append(
                        {
                            "sample": s,
                            "cell_type": t,
                            "direction": direction,
                            "rank": rank,
                            "gene": gene,
                            "log2_fold_change": r["log2FoldChange"],
                            "lfc_se": r["lfcSE"],
                            "pvalue": r["pvalue"],
                            "padj": r["padj"],
                            "base_mean": r["baseMean"],
                            "n_query_cells": len(q_idx),
                            "n_invivo_donors": len(pbs) - 1,
                            "confounded": s in confounded,
                        }
                    )
    return pd.DataFrame(rows, columns=cols)


# --------------------------------------------------------------------------------------------------------
# time course


def _timepoint_order(values: Sequence[str]) -> dict[str, float]:
    def key(v: str) -> float:
        m = re.search(r"[-+]?\d+(\.\d+)?", v)
        return float(m.group()) if m else np.inf

    uniq = sorted(set(values), key=lambda v: (key(v), v))
    return {v: float(i) for i, v in enumerate(uniq)}


def timecourse(
    table: pd.DataFrame, composition: pd.DataFrame, *, condition: str = "organoid"
) -> pd.DataFrame:
    """Composition and fidelity trends over time for samples of ``condition`` that have a timepoint.

    Returns a long table: timepoint, timepoint_order, sample, measure (``fidelity_index``, each part,
    ``fraction:<type>``), value, ci_low, ci_high, and per measure the Spearman trend over time (``trend_rho``,
    NaN with fewer than three timepoints).
    """
    from scipy.stats import spearmanr

    cols = ["timepoint", "timepoint_order", "sample", "measure", "value", "ci_low", "ci_high", "trend_rho"]
    if table.empty:
        return pd.DataFrame(columns=cols)
    sub = table[(table["condition"] == condition) & (table["timepoint"].astype(str).str.len() > 0)]
    if sub.empty:
        return pd.DataFrame(columns=cols)
    order = _timepoint_order(sub["timepoint"].astype(str).tolist())
    rows = []
    for _, r in sub.iterrows():
        tp = str(r["timepoint"])
        for m in ("fidelity_index", *PARTS, "novel_share"):
            rows.append(
                {
                    "timepoint": tp,
                    "timepoint_order": order[tp],
                    "sample": r["sample"],
                    "measure": m,
                    "value": r[m],
                    "ci_low": r[f"{m}_ci_low"],
                    "ci_high": r[f"{m}_ci_high"],
                }
            )
        comp = composition[composition["sample"] == r["sample"]]
        for _, c in comp.iterrows():
            rows.append(
                {
                    "timepoint": tp,
                    "timepoint_order": order[tp],
                    "sample": r["sample"],
                    "measure": f"fraction:{c['cell_type']}",
                    "value": c["fraction"],
                    "ci_low": c["fraction_ci_low"],
                    "ci_high": c["fraction_ci_high"],
                }
            )
    out = pd.DataFrame(rows)
    rho = {}
    for m, g in out.groupby("measure"):
        if g["timepoint_order"].nunique() >= 3 and g["value"].nunique() > 1:
            rho[m] = float(spearmanr(g["timepoint_order"], g["value"]).statistic)
        else:
            rho[m] = np.nan
    out["trend_rho"] = out["measure"].map(rho)
    return out.sort_values(["measure", "timepoint_order", "sample"]).reset_index(drop=True)[cols]


# --------------------------------------------------------------------------------------------------------
# figure


def plot_scorecard(
    table: pd.DataFrame, composition: pd.DataFrame, control_table: pd.DataFrame, path: str | Path
) -> None:
    """Scorecard parts with CIs per sample, controls, and composition against in vivo (one PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from hscseq._utils import atomic_path

    fig, axes = plt.subplots(1, 3, figsize=(17, 5.5), gridspec_kw={"width_ratios": [1.3, 0.8, 1.3]})
    measures = ["fidelity_index", *PARTS, "novel_share"]
    ax = axes[0]
    if not table.empty:
        width = 0.8 / max(len(table), 1)
        for i, (_, r) in enumerate(table.iterrows()):
            xs = np.arange(len(measures)) + i * width
            vals = np.array([r[m] for m in measures], dtype=float)
            lo = np.array([r[f"{m}_ci_low"] for m in measures], dtype=float)
            hi = np.array([r[f"{m}_ci_high"] for m in measures], dtype=float)
            err = np.vstack([np.clip(vals - lo, 0, None), np.clip(hi - vals, 0, None)])
            ax.bar(
                xs, np.nan_to_num(vals), width=width, yerr=np.nan_to_num(err), capsize=2, label=r["sample"]
            )
        ax.set_xticks(np.arange(len(measures)) + 0.4 - width / 2)
        ax.set_xticklabels(measures, rotation=30, ha="right")
        ax.legend(fontsize=7)
    ax.set_ylim(0, 1.05)
    ax.set_title("Scorecard (bootstrap 95% CI)")
    ax = axes[1]
    if not control_table.empty:
        ys = np.arange(len(control_table))
        f = control_table["fidelity_index"].to_numpy(float)
        lo = control_table["fidelity_index_ci_low"].to_numpy(float)
        hi = control_table["fidelity_index_ci_high"].to_numpy(float)
        colors = ["tab:green" if k == "positive" else "tab:red" for k in control_table["kind"]]
        ax.barh(ys, f, xerr=np.vstack([np.clip(f - lo, 0, None), np.clip(hi - f, 0, None)]), color=colors)
        ax.set_yticks(ys)
        ax.set_yticklabels(control_table["control"], fontsize=7)
        ax.axvline(0.9, ls="--", c="grey")
        ax.axvline(0.2, ls=":", c="grey")
    ax.set_xlim(0, 1.05)
    ax.set_title("Controls: fidelity index")
    ax = axes[2]
    if not composition.empty:
        wide = composition.pivot_table(
            index="sample", columns="cell_type", values="fraction", aggfunc="first"
        )
        invivo = composition.drop_duplicates("cell_type").set_index("cell_type")["invivo_fraction"].dropna()
        wide.loc["in vivo"] = invivo.reindex(wide.columns).fillna(0)
        bottom = np.zeros(len(wide))
        cmap = plt.get_cmap("tab20")
        for j, c in enumerate(wide.columns):
            v = wide[c].fillna(0).to_numpy()
            ax.bar(wide.index, v, bottom=bottom, label=c, color="lightgrey" if c == NOVEL else cmap(j % 20))
            bottom += v
        ax.tick_params(axis="x", rotation=30)
        ax.legend(fontsize=6, ncol=2, bbox_to_anchor=(1.0, 1.0), loc="upper left")
    ax.set_title("Composition vs in vivo")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


# --------------------------------------------------------------------------------------------------------
# stage entry point


def _load_external_reference(
    path: str, adata: ad.AnnData, *, label_key: str, stage_key: str | None, donor_key: str | None
) -> ad.AnnData:
    """Read a reference h5ad (raw counts in layers["counts"] or X, labels in obs) on ``adata``'s genes."""
    p = Path(path)
    if not p.is_file():
        raise input_error("the reference h5ad does not exist.", path=p, fix="fix config fidelity.reference.")
    ref = ad.read_h5ad(p)
    if label_key not in ref.obs:
        raise input_error(
            f"the reference has no label column {label_key!r} (columns: {list(ref.obs.columns)}).",
            path=p,
            fix="set fidelity.reference_label_key.",
        )
    if stage_key and stage_key not in ref.obs:
        raise input_error(
            f"the reference has no stage column {stage_key!r}.",
            path=p,
            fix="set fidelity.reference_stage_key to an existing column or null.",
        )
    counts = sp.csr_matrix(ref.layers.get("counts", ref.X))
    sample = counts.data[:10000]
    if sample.size and (np.any(sample < 0) or not np.allclose(sample, np.round(sample))):
        raise input_error(
            "the reference holds no raw counts (non-integer values in layers['counts'] / X).",
            path=p,
            fix="store raw UMI counts in X or layers['counts'].",
        )
    shared = adata.var_names.intersection(ref.var_names)
    if len(shared) < 500:
        raise input_error(
            f"only {len(shared)} genes are shared between the reference and the data.",
            path=p,
            fix="use a reference of the analysis species with gene symbols as var_names.",
        )
    out = ad.AnnData(X=counts[:, ref.var_names.get_indexer(shared)], obs=pd.DataFrame(index=ref.obs_names))
    out.var_names = shared
    out.obs["reference_label"] = ref.obs[label_key].astype(str).to_numpy()
    out.obs["sample"] = "reference"
    out.obs["condition"] = "in_vivo"
    donor = ref.obs[donor_key].astype(str).to_numpy() if donor_key else np.full(ref.n_obs, "reference")
    out.obs["donor"] = donor
    out.obs["batch"] = [f"reference:{d}" for d in donor]
    if stage_key:
        out.obs["stage"] = ref.obs[stage_key].astype(str).to_numpy()
    return out


def _joint_with_reference(
    adata: ad.AnnData, ref: ad.AnnData, *, n_comps: int = 30, seed: int = 0
) -> ad.AnnData:
    """Query (reference labels cleared) + external reference on shared genes; PCA fitted on the reference."""
    import scanpy as sc

    shared = ref.var_names
    q = ad.AnnData(X=_counts(adata, "counts")[:, adata.var_names.get_indexer(shared)], obs=adata.obs.copy())
    q.var_names = shared
    q.obs["reference_label"] = np.nan
    q.obs["stage"] = ""
    joint = ad.concat([ref, q], join="outer", merge="same")
    joint.obs["reference_label"] = joint.obs["reference_label"].replace("", np.nan)
    joint.layers["counts"] = joint.X.copy()
    sc.pp.normalize_total(joint, target_sum=1e4)
    sc.pp.log1p(joint)
    is_ref = (
        joint.obs["condition"].astype(str).eq("in_vivo").to_numpy()
        & joint.obs["sample"].eq("reference").to_numpy()
    )
    r = joint[is_ref].copy()
    sc.pp.highly_variable_genes(r, n_top_genes=min(2000, r.n_vars))
    hv = r.var["highly_variable"].to_numpy()
    from sklearn.decomposition import TruncatedSVD

    xr = r.X[:, hv]
    mean = np.asarray(xr.mean(axis=0)).ravel()
    n_comps = min(n_comps, int(hv.sum()) - 1)
    svd = TruncatedSVD(n_components=n_comps, random_state=seed).fit(np.asarray(xr - mean))
    # project in chunks: only a block of cells x highly variable genes is densified at a time
    xj = sp.csr_matrix(joint.X)[:, hv]
    emb = np.zeros((joint.n_obs, n_comps))
    for start in range(0, joint.n_obs, 5000):
        block = np.asarray(xj[start : start + 5000].todense()) - mean
        emb[start : start + 5000] = block @ svd.components_.T
    joint.obsm["X_integrated"] = emb
    return joint


def run_fidelity(
    *,
    scored: str,
    programme: str,
    final: str,
    cells: str,
    scorecard: str,
    composition: str,
    figure: str,
    settings: dict,
    de: str | None = None,
    controls: str | None = None,
    timecourse: str | None = None,
) -> None:
    """Stage entry point: map, score, control, explain; write the final object and the tables.

    Reference (first that applies): ``settings["reference"]`` (an h5ad with counts and labels), the in vivo
    samples of the sheet (``reference_label``), the built-in HematoMap profiles (human only).
    Method ``auto``: with a reference h5ad, scVI/scANVI trained on the reference and scArches surgery for
    the query (``scanvi``); with the sheet's in vivo samples, kNN in the integrated latent (``knn``). With
    either method novelty is measured in the uncorrected PCA (``novelty_space``): the surgery latent, like
    any batch-corrected latent, can pull off-target states onto the reference.
    """
    import hscseq.fidelity as fid

    cfg = {**DEFAULT_SETTINGS, **(settings or {})}
    weights = {**DEFAULT_SETTINGS["index_weights"], **(cfg.get("index_weights") or {})}
    adata = ad.read_h5ad(scored)
    for col in ("sample", "condition"):
        if col not in adata.obs:
            raise input_error(
                f"obs lacks {col!r}.", path=scored, fix="run the pipeline from the score stage."
            )
    if "counts" not in adata.layers:
        raise input_error(
            "layers['counts'] (raw counts) is missing.",
            path=scored,
            fix="rerun the integrate/score stages; they keep raw counts in layers['counts'].",
        )
    prog_table = pd.read_csv(programme, sep="\t") if programme and Path(programme).is_file() else None
    species = str(adata.uns.get("hscseq", {}).get("merge", {}).get("species", ""))
    method = cfg["method"]
    external = cfg.get("reference")
    has_sheet_ref = "reference_label" in adata.obs and _reference_mask(adata, "reference_label").any()
    work = adata
    stage_key = None
    if external:
        ref = _load_external_reference(
            external,
            adata,
            label_key=cfg["reference_label_key"],
            stage_key=cfg.get("reference_stage_key"),
            donor_key=cfg.get("reference_donor_key"),
        )
        work = _joint_with_reference(adata, ref, seed=cfg["seed"])
        stage_key = "stage" if cfg.get("reference_stage_key") else None
        # a single-cell reference of its own: train scVI/scANVI on it, map the query by scArches surgery
        method = "scanvi" if method == "auto" else method
        source = f"reference h5ad {external}"
    elif has_sheet_ref:
        method = "knn" if method == "auto" else method
        source = "in vivo samples of the sample sheet"
    else:
        source = "built-in HematoMap human bone-marrow profiles"
        if species and species != "human":
            raise input_error(
                f"no single-cell reference and the analysis species is {species!r}; the built-in "
                "profile reference is human only.",
                path=scored,
                fix="label the in vivo samples (label_column) or set fidelity.reference.",
            )
    logger.info("fidelity reference: %s; method %s", source, method if source[:5] != "built" else "profiles")

    control_table = pd.DataFrame()
    de_table = pd.DataFrame()
    if source.startswith("built-in"):
        map_to_profiles(work, random_state=cfg["seed"])
        table, comp = _profile_scorecard(work, cfg)
    else:
        distance_rep = None
        if cfg.get("novelty_space", "uncorrected") == "uncorrected":
            uncorrected_pca(work, random_state=cfg["seed"])
            distance_rep = "X_pca_uncorrected"
        map_to_reference(
            work,
            method=method,
            distance_rep=distance_rep,
            n_neighbors=cfg["n_neighbors"],
            null_quantile=cfg["null_quantile"],
            absent_quantile=cfg["absent_quantile"],
            stage_key=stage_key,
            max_epochs=cfg["max_epochs"],
            random_state=cfg["seed"],
        )
        fid.scorecard(
            work,
            programme=prog_table,
            weights=weights,
            min_confidence=cfg["min_confidence"],
            min_cells=cfg["min_cells"],
            n_genes=cfg["n_informative_genes"],
            hsc_label=cfg["hsc_label"],
            n_bootstrap=cfg["n_bootstrap"],
            random_state=cfg["seed"],
        )
        table = work.uns["scorecard"]["table"]
        comp = work.uns["scorecard"]["composition"]
        if "X_integrated" in work.obsm:
            control_table = fid.controls(
                work,
                n_neighbors=cfg["n_neighbors"],
                null_quantile=cfg["null_quantile"],
                absent_quantile=cfg["absent_quantile"],
                min_confidence=cfg["min_confidence"],
                min_cells=cfg["min_cells"],
                n_genes=cfg["n_informative_genes"],
                weights=weights,
                negative_control_type=cfg["negative_control_type"],
                hsc_label=cfg["hsc_label"],
                n_bootstrap=max(10, cfg["n_bootstrap"] // 2),
                random_state=cfg["seed"],
            )
        de_table = pseudobulk_de(
            work,
            min_cells=cfg["de_min_cells"],
            top_n=cfg["de_top_n"],
            min_confidence=cfg["min_confidence"],
            max_genes=cfg["de_max_genes"],
            random_state=cfg["seed"],
        )
    for _, r in table.iterrows():
        logger.info(
            "scorecard %s: fidelity %.3f [%.3f, %.3f]; identity %.3f, similarity %.3f, programme %.3f, "
            "composition %.3f, novel %.3f",
            r["sample"],
            r["fidelity_index"],
            r["fidelity_index_ci_low"],
            r["fidelity_index_ci_high"],
            r["identity"],
            r["similarity"],
            r["programme"],
            r["composition"],
            r["novel_share"],
        )
    if table.empty:
        logger.warning("no engineered/organoid sample to score: the scorecard is empty")
    # write the mapping back onto the full scored object (external reference cells are not part of it)
    cols = [
        "predicted_label",
        "closest_label",
        "label_confidence",
        "label_uncertainty",
        "reference_distance",
        "novel",
    ] + (["closest_stage"] if "closest_stage" in work.obs else [])
    mapped = work.obs.loc[work.obs_names.isin(adata.obs_names), cols]
    for c in cols:
        adata.obs[c] = mapped[c].reindex(adata.obs_names).to_numpy()
    adata.obs["predicted_label"] = adata.obs["predicted_label"].astype("category")
    adata.obs["novel"] = adata.obs["novel"].astype(bool)
    adata.uns["fidelity"] = {k: v for k, v in work.uns["fidelity"].items()}
    adata.uns["fidelity"]["params"] = {
        **adata.uns["fidelity"]["params"],
        "reference_source": source,
        "settings": {k: v for k, v in cfg.items() if v is not None},
    }
    adata.uns["scorecard"] = {"table": table, "composition": comp, "controls": control_table}
    write_h5ad(_h5ad_safe(adata), final)
    cell_cols = [
        "sample",
        "condition",
        "batch",
        "timepoint",
        "leiden",
        "predicted_label",
        "label_confidence",
        "label_uncertainty",
        "novel",
        "closest_label",
        "reference_distance",
    ]
    cell_cols += ["closest_stage"] if "closest_stage" in adata.obs else []
    # every score-stage column: hsc_score*, hsc_like*, score_*, ontogeny*
    cell_cols += [c for c in adata.obs if c.startswith(("hsc_score", "hsc_like", "score_", "ontogeny"))]
    cell_table = adata.obs[[c for c in cell_cols if c in adata.obs]].copy()
    cell_table.insert(0, "cell_id", adata.obs_names)
    write_table(cell_table, cells, index=False)
    write_table(table, scorecard, index=False)
    write_table(comp, composition, index=False)
    if de:
        write_table(de_table, de, index=False)
    if controls:
        write_table(control_table, controls, index=False)
    if timecourse:
        write_table(fid.timecourse(table, comp), timecourse, index=False)
    plot_scorecard(table, comp, control_table, figure)


def _h5ad_safe(adata: ad.AnnData) -> ad.AnnData:
    """Make uns tables writable (object columns -> str)."""
    for key in ("table", "composition", "controls"):
        df = adata.uns["scorecard"].get(key)
        if isinstance(df, pd.DataFrame):
            df = df.copy()
            for c in df.columns:
                if df[c].dtype == object or df[c].dtype == bool:
                    df[c] = df[c].astype(str)
            adata.uns["scorecard"][key] = df
    return adata


def _profile_scorecard(adata: ad.AnnData, cfg: Mapping[str, Any]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Identity and novel share per sample against profiles (no donor null, no in vivo composition)."""
    rows, comp_rows = [], []
    conf = (~adata.obs["novel"].to_numpy()) & (
        adata.obs["label_confidence"].to_numpy() >= cfg["min_confidence"]
    )
    for k, (s, grp) in enumerate(adata.obs.groupby("sample", observed=True)):
        if str(grp["condition"].iloc[0]) not in ("engineered", "organoid"):
            continue
        idx = adata.obs_names.get_indexer(grp.index)
        w = np.vstack([np.ones(len(idx)), bootstrap_weights(len(idx), cfg["n_bootstrap"], cfg["seed"] + k)])
        ident = w @ conf[idx].astype(float) / len(idx)
        nov = w @ adata.obs["novel"].to_numpy()[idx].astype(float) / len(idx)
        row = {
            "sample": str(s),
            "condition": str(grp["condition"].iloc[0]),
            "timepoint": str(grp["timepoint"].iloc[0]) if "timepoint" in grp else "",
            "n_cells": len(idx),
        }
        parts = {
            "identity": ident,
            "similarity": np.full_like(ident, np.nan),
            "programme": np.full_like(ident, np.nan),
            "composition": np.full_like(ident, np.nan),
            "jsd": np.full_like(ident, np.nan),
            "novel_share": nov,
        }
        for m, v in parts.items():
            row[m] = float(v[0])
            row[f"{m}_ci_low"], row[f"{m}_ci_high"] = percentile_ci(v[1:])
        f = weighted_fidelity_index({p: parts[p] for p in PARTS}, cfg["index_weights"])
        row["fidelity_index"] = float(f[0])
        row["fidelity_index_ci_low"], row["fidelity_index_ci_high"] = percentile_ci(f[1:])
        row["programme_source"] = "unavailable (profile reference)"
        rows.append(row)
        vc = grp["predicted_label"].astype(str).value_counts(normalize=True)
        for t, v in vc.items():
            comp_rows.append(
                {
                    "sample": str(s),
                    "condition": row["condition"],
                    "timepoint": row["timepoint"],
                    "cell_type": t,
                    "n_cells": round(v * len(idx)),
                    "fraction": v,
                }
            )
    table = pd.DataFrame(rows)
    return (table[_scorecard_columns(table)] if not table.empty else table), pd.DataFrame(comp_rows)
