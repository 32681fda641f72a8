"""Map query cells onto a single-cell reference (AnnData wrapper of the kNN / surgery cores)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd

from hscseq._utils import input_error
from hscseq.fidelity._knn import _folds, _knn, knn_map_core, smooth_latent
from hscseq.fidelity._novelty import flag_novel, label_uncertainty, novelty_thresholds
from hscseq.fidelity.settings import NOVEL
from hscseq.fidelity.surgery import _scanvi_latent_and_probs

logger = logging.getLogger(__name__)


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
