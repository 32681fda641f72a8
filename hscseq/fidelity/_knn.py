"""kNN label transfer with held-out-donor and held-out-type nulls (arrays in, arrays out)."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from hscseq.fidelity._novelty import knn_vote

logger = logging.getLogger(__name__)


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
    absent_null: bool = True,
) -> dict[str, np.ndarray]:
    """kNN label transfer with held-out-donor and held-out-type nulls.

    Reference cells are predicted with their own fold held out; query cells from the whole reference.
    Distances are measured in ``distance_latent`` (default ``latent``; :func:`map_to_reference` passes
    neighbourhood-averaged positions): a query cell's distance is the mean over folds of its distance to the
    reference without that fold, so query and null distances are measured against equally large references.
    ``ref_absent_distance`` is the distance of each held-out reference cell to the other folds *without its
    own type* (the held-out-type null); ``absent_null=False`` skips it (all NaN), for a caller that takes
    its thresholds from another reference's null.

    Returns
    -------
    Dict with ``ref_probs``, ``ref_distance``, ``ref_absent_distance``, ``query_probs``, ``query_distance``
    (and ``*_stage_probs``), ``ref_neighbors`` (each reference cell's ``n_neighbors`` nearest reference cells
    outside its fold in ``latent``, as positions in ``ref_idx``; None when a fold leaves fewer) and
    ``query_neighbors`` (each query cell's among every reference cell).
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
    ref_nb: np.ndarray | None = np.zeros((len(ref_idx), n_neighbors), dtype=np.int64)
    for f in folds:
        held = ref_folds == f
        keep = ~held
        _, i = _knn(ref_lat[keep], ref_lat[held], n_neighbors)
        ref_probs[held] = knn_vote(ref_codes[keep][i], n_classes)
        if ref_nb is not None and i.shape[1] == n_neighbors:
            ref_nb[held] = np.flatnonzero(keep)[i]
        else:
            ref_nb = None
        ref_dist[held] = _knn(ref_d[keep], ref_d[held], n_neighbors)[0].mean(axis=1)
        for c in np.unique(ref_codes[held]) if absent_null else ():
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
    out["ref_neighbors"] = ref_nb
    out["query_neighbors"] = np.zeros((0, n_neighbors), dtype=np.int64)
    if len(query_idx):
        _, i = _knn(ref_lat, latent[query_idx], n_neighbors)
        out["query_neighbors"] = i
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
        if g is None:  # cells outside every group keep their position
            continue
        idx = np.flatnonzero(groups == g)
        if len(idx) < 2:
            continue
        _, nb = _knn(latent[idx], latent[idx], min(n_neighbors, len(idx)))
        out[idx] = latent[idx][nb].mean(axis=1)
    return out
