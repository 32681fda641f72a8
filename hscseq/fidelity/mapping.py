"""Map query cells onto a single-cell reference (AnnData wrapper of the kNN / surgery cores)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd

from hscseq._labels import donor_key as _donor_key
from hscseq._utils import input_error
from hscseq.fidelity._knn import _folds, _knn, knn_map_core, smooth_latent
from hscseq.fidelity._novelty import flag_novel, label_uncertainty, novelty_thresholds
from hscseq.fidelity.ensemble import (
    _labelled,
    map_ensemble,
    mark_novel,
    smoothing_groups,
    use_ensemble_labels,
)
from hscseq.fidelity.hierarchy import load_hierarchy
from hscseq.fidelity.settings import NOVEL, FidelitySettings, fidelity_settings
from hscseq.fidelity.spaces import novelty_rep
from hscseq.fidelity.surgery import _scanvi_latent_and_probs

logger = logging.getLogger(__name__)

NOVEL_RULE = (
    "distance of the neighbourhood-averaged position to the reference > max(donor-null quantile of the "
    "cell's type (its fine label: the ensemble's, or the kNN vote's; held-out cells keyed the same way), "
    "absent_quantile of the held-out-type distances of that type)"
)


def _reference_mask(adata: ad.AnnData, reference_key: str) -> np.ndarray:
    if reference_key not in adata.obs:
        raise input_error(
            f"obs has no reference label column {reference_key!r}.",
            fix="label the in vivo samples (sample sheet 'label_column') or give a reference "
            "h5ad in config fidelity.reference.",
        )
    return _labelled(adata.obs[reference_key].astype(object))


@dataclass
class _Design:
    """Reference / query split, label codes, held-out folds, stages and smoothing groups of one mapping."""

    ref_mask: np.ndarray
    ref_idx: np.ndarray
    query_idx: np.ndarray
    labels_all: np.ndarray
    classes: list[str]
    ref_codes: np.ndarray
    folds: np.ndarray
    donor_key: str | None
    stages: list[str]
    stage_codes: np.ndarray | None
    groups: np.ndarray

    @property
    def unmapped(self) -> np.ndarray:
        """Cells neither reference nor query (outside ``query_mask``)."""
        out = ~self.ref_mask
        out[self.query_idx] = False
        return out


def _design(
    adata: ad.AnnData,
    reference_key: str,
    s: FidelitySettings,
    *,
    donor_key: str | None,
    stage_key: str | None,
    sample_key: str,
    seed: int,
    query_mask: np.ndarray | None = None,
) -> _Design:
    ref_mask = _reference_mask(adata, reference_key)
    if ref_mask.sum() < 2 * s.n_neighbors:
        raise input_error(
            f"only {int(ref_mask.sum())} labelled reference cells in obs[{reference_key!r}].",
            fix="give a reference with more labelled in vivo cells.",
        )
    labels_all = adata.obs[reference_key].astype(str).to_numpy()
    classes = sorted(pd.unique(labels_all[ref_mask]))
    code_of = {c: i for i, c in enumerate(classes)}
    ref_idx, query_idx = np.flatnonzero(ref_mask), np.flatnonzero(~ref_mask & _query_mask(adata, query_mask))
    ref_codes = np.array([code_of[x] for x in labels_all[ref_mask]])
    donor_key = donor_key or _donor_key(adata.obs, ref_mask)
    groups = adata.obs[donor_key].astype(str).to_numpy()[ref_mask] if donor_key else np.full(len(ref_idx), "")
    folds = _folds(groups, seed=seed)
    stages: list[str] = []
    stage_codes = None
    if stage_key:
        if stage_key not in adata.obs:
            raise input_error(
                f"obs has no stage column {stage_key!r}.", fix="fix fidelity.reference_stage_key."
            )
        st = adata.obs[stage_key].astype(str).to_numpy()[ref_mask]
        stages = sorted(pd.unique(st))
        stage_codes = np.array([stages.index(x) for x in st])
    samples = (
        adata.obs[sample_key].astype(str).to_numpy()
        if sample_key in adata.obs
        else np.full(adata.n_obs, "all")
    )
    # neighbourhood-level positions: each query cell averaged within its sample, each reference cell within
    # its held-out fold (so the null is denoised exactly like the query); cells not mapped: no group (None)
    smooth_groups = np.empty(adata.n_obs, dtype=object)
    # query cells are averaged within groups of about a fold's size: neighbours among a whole (larger) sample
    # are denser than among one reference fold, which shrank query positions less than the null's and made
    # known cells look far (paul15 halves: 18% of known query cells novel; 2% with fold-sized groups)
    sizes = np.bincount(folds)
    fold_size = sizes[sizes > 0].mean()
    query_groups = smoothing_groups(samples[query_idx], np.zeros(len(query_idx), bool), fold_size, seed=seed)
    smooth_groups[query_idx] = ["q:" + x for x in query_groups]
    smooth_groups[ref_idx] = ["r:" + str(f) for f in folds]
    return _Design(
        ref_mask, ref_idx, query_idx, labels_all, classes, ref_codes, folds, donor_key, stages, stage_codes,
        smooth_groups,
    )  # fmt: skip


def _query_mask(adata: ad.AnnData, query_mask: np.ndarray | None) -> np.ndarray:
    """The cells to map when they have no reference label (default: every cell)."""
    if query_mask is None:
        return np.ones(adata.n_obs, dtype=bool)
    query_mask = np.asarray(query_mask, dtype=bool)
    if query_mask.shape != (adata.n_obs,):
        raise ValueError(f"query_mask has shape {query_mask.shape}; expected ({adata.n_obs},)")
    return query_mask


def _blank_unmapped(adata: ad.AnnData, d: _Design) -> None:
    """Cells neither reference nor query: no label, confidence or distance; not novel (the ensemble's own
    columns are blanked by :func:`map_ensemble`)."""
    skip = d.unmapped
    if not skip.any():
        return
    obs = adata.obs
    for col in ("predicted_label", "closest_label", "closest_stage"):
        if col in obs:
            obs[col] = obs[col].where(~skip)
    for col in ("label_confidence", "label_uncertainty", "reference_distance"):
        obs[col] = np.where(skip, np.nan, obs[col].to_numpy(dtype=float))
    obs["novel"] = obs["novel"].to_numpy(dtype=bool) & ~skip


def _denoised(lat: np.ndarray, d: _Design, s: FidelitySettings) -> np.ndarray:
    lat = np.asarray(lat, dtype=float)
    return smooth_latent(lat, d.groups, n_neighbors=s.smooth_neighbors) if s.smooth_neighbors > 1 else lat


def _label_space(lat: np.ndarray, metric: str) -> np.ndarray:
    """Positions for the label vote: plain, direction only (cosine) or damped ``x / sqrt(|x|)``."""
    if metric == "euclidean":
        return lat
    norm = np.clip(np.linalg.norm(lat, axis=1, keepdims=True), 1e-12, None)
    return lat / (norm if metric == "cosine" else np.sqrt(norm))


def _map_knn(
    adata: ad.AnnData, d: _Design, s: FidelitySettings, *, use_rep: str, distance_rep: str | None, full: bool
) -> dict[str, np.ndarray]:
    if use_rep not in adata.obsm:
        raise input_error(
            f"obsm has no shared latent {use_rep!r}.",
            fix="run the integrate stage first, or use method 'scanvi'.",
        )
    smoothed = _denoised(adata.obsm[use_rep], d, s)
    distance_latent = _denoised(adata.obsm[distance_rep], d, s) if distance_rep else smoothed
    res = knn_map_core(
        _label_space(smoothed, s.label_metric),
        d.ref_idx,
        d.ref_codes,
        d.folds,
        d.query_idx,
        len(d.classes),
        n_neighbors=s.n_neighbors,
        ref_stage_codes=d.stage_codes,
        n_stages=len(d.stages),
        query_full_reference=full,
        distance_latent=distance_latent,
        absent_null=not full,  # a given null brings its thresholds (controls): no held-out-type null
    )
    res["label_spaces"] = _label_spaces(smoothed, distance_latent, s.label_metric)
    if res["ref_neighbors"] is not None:  # the ensemble's integrated member: same positions, folds and k
        res["ensemble_neighbors"] = {"knn_integrated": (res["ref_neighbors"], res["query_neighbors"])}
    return res


def _map_scanvi(
    adata: ad.AnnData,
    d: _Design,
    s: FidelitySettings,
    *,
    distance_rep: str | None,
    layer: str | None,
    batch_key: str,
    key_added: str,
    seed: int,
) -> dict[str, np.ndarray]:
    holdout = np.zeros(adata.n_obs, dtype=bool)
    held_fold = d.folds == np.max(d.folds) if len(np.unique(d.folds)) >= 2 else np.zeros(len(d.ref_idx), bool)
    holdout[d.ref_idx[held_fold]] = True
    batch = (
        adata.obs[batch_key].astype(str).to_numpy() if batch_key in adata.obs else np.full(adata.n_obs, "b")
    )
    latent, probs_all, order = _scanvi_latent_and_probs(
        adata,
        d.ref_mask,
        d.labels_all,
        holdout,
        batch,
        layer=layer,
        max_epochs=s.max_epochs,
        n_latent=s.n_latent,
        seed=seed,
    )
    probs_all = pd.DataFrame(probs_all, columns=order).reindex(columns=d.classes, fill_value=0.0).to_numpy()
    dist_lat = _denoised(adata.obsm[distance_rep] if distance_rep else latent, d, s)
    # null: held-out donor cells (mapped by surgery, like the query) against the training reference
    smoothed = _denoised(latent, d, s)
    res = knn_map_core(
        _label_space(smoothed, s.label_metric),
        d.ref_idx,
        d.ref_codes,
        np.where(held_fold, 1, 0),
        d.query_idx,
        len(d.classes),
        n_neighbors=s.n_neighbors,
        ref_stage_codes=d.stage_codes,
        n_stages=len(d.stages),
        query_full_reference=True,
        distance_latent=dist_lat,
    )
    if len(d.query_idx):  # (a reference without query cells: the controls' full-reference null)
        dq, _ = _knn(dist_lat[d.ref_idx[~held_fold]], dist_lat[d.query_idx], s.n_neighbors)
        res["query_distance"] = dq.mean(axis=1)
    # labels: kNN vote in the surgery latent (calibrated on the held-out donor like the knn path); the
    # scANVI classifier's own probabilities are kept for inspection (few epochs leave it uncalibrated)
    adata.obsm[f"{key_added}_scanvi_probabilities"] = probs_all
    adata.obsm[f"X_{key_added}_scanvi"] = latent
    res["null_select"] = held_fold if held_fold.any() else np.ones(len(d.ref_idx), bool)
    res["label_spaces"] = _label_spaces(smoothed, dist_lat, s.label_metric)
    return res


def _label_spaces(integrated: np.ndarray, uncorrected: np.ndarray, metric: str) -> dict[str, np.ndarray]:
    """The ensemble's kNN members vote on the same neighbourhood-averaged positions as the kNN labels."""
    return {"integrated": _label_space(integrated, metric), "uncorrected": _label_space(uncorrected, metric)}


def _ensemble_labels(
    adata: ad.AnnData,
    d: _Design,
    s: FidelitySettings,
    spaces: Mapping[str, np.ndarray],
    *,
    reference_key: str,
    hierarchy: Mapping[str, str] | None,
    seed: int,
    neighbors: Mapping[str, tuple[np.ndarray, np.ndarray]] | None = None,
) -> None:
    """The calibrated ensemble's labels (``obs["mapped_*"]``, ``uns["mapping"]``), before novelty.

    ``neighbors``: the kNN labels' neighbours (same positions, folds and ``n_neighbors``), which the
    ensemble's integrated kNN member reuses instead of searching again."""
    if hierarchy is None and s.hierarchy:
        try:
            hierarchy = load_hierarchy(s.hierarchy)
        except ValueError as err:
            raise input_error(str(err), path=s.hierarchy, fix="fix config fidelity.hierarchy.") from err
    adata.obsm["_label_integrated"] = spaces["integrated"]
    adata.obsm["_label_uncorrected"] = spaces["uncorrected"]
    try:
        map_ensemble(
            adata,
            reference_key=reference_key,
            folds=d.folds,
            use_rep="_label_integrated",
            uncorrected_rep="_label_uncorrected",
            hierarchy=hierarchy,
            random_state=seed,
            n_neighbors=s.n_neighbors,
            neighbors=neighbors,
            query_mask=~d.unmapped,
            min_probability=s.min_label_probability,
            min_parent_probability=s.min_parent_probability,
            max_distance=s.hierarchy_max_distance,
            n_sibling_genes=s.sibling_genes,
            c=s.logreg_c,
            logreg_max_cells=s.logreg_max_cells_per_type,
        )
    finally:
        for k in ("_label_integrated", "_label_uncorrected"):
            adata.obsm.pop(k, None)


def _label_codes(
    adata: ad.AnnData, d: _Design, res: dict[str, np.ndarray], s: FidelitySettings
) -> np.ndarray:
    """Each cell's label code (reference cells: held out) that picks its novelty threshold: the ensemble's
    fine label when it labels the cells, else the kNN vote's."""
    if s.label_method == "ensemble":
        fine = adata.obs["mapped_fine_label"].astype(str).to_numpy()
        return pd.Categorical(fine, categories=d.classes).codes.astype(int)
    codes = np.zeros(adata.n_obs, dtype=int)
    codes[d.ref_idx] = res["ref_probs"].argmax(axis=1)
    codes[d.query_idx] = res["query_probs"].argmax(axis=1)
    return codes


def _thresholds(
    res: dict[str, np.ndarray],
    d: _Design,
    s: FidelitySettings,
    null: Mapping[str, Any] | None,
    codes: np.ndarray,
) -> tuple[np.ndarray, float]:
    """Per-type distance thresholds and the uncertainty threshold (this reference's or ``null``'s); the
    held-out cells' ``codes`` (their labels, as the query's will be labelled) key the donor null."""
    if null is not None:  # thresholds of a larger reference (controls reuse the full reference's null)
        given = dict(zip(null["labels"], np.asarray(null["distance_thresholds"], dtype=float), strict=True))
        return np.array([given.get(c, max(given.values())) for c in d.classes]), float(
            null["uncertainty_threshold"]
        )
    null_sel = res["null_select"]
    absent = res["ref_absent_distance"]
    ok_absent = null_sel & np.isfinite(absent)
    return novelty_thresholds(
        res["ref_distance"][null_sel],
        codes[d.ref_idx][null_sel],
        label_uncertainty(res["ref_probs"])[null_sel],
        len(d.classes),
        quantile=s.null_quantile,
        absent_distance=absent[ok_absent],
        absent_codes=d.ref_codes[ok_absent],
        absent_quantile=s.absent_quantile,
    )


def _write_mapping(
    adata: ad.AnnData,
    d: _Design,
    res: dict[str, np.ndarray],
    thr: np.ndarray,
    unc_thr: float,
    *,
    codes: np.ndarray,
    s,
    key_added,
) -> dict[str, Any]:
    """obs columns and obsm probabilities of every cell; returns the held-out summary for ``uns``."""
    classes, ref_idx, query_idx = d.classes, d.ref_idx, d.query_idx
    probs = np.zeros((adata.n_obs, len(classes)))
    probs[ref_idx], probs[query_idx] = res["ref_probs"], res["query_probs"]
    dist = np.zeros(adata.n_obs)
    dist[ref_idx], dist[query_idx] = res["ref_distance"], res["query_distance"]
    pred = codes
    unc = label_uncertainty(probs)
    novel = flag_novel(dist, pred, unc if s.uncertainty_novel else np.zeros_like(unc), thr, unc_thr)
    closest = np.array(classes, dtype=object)[pred]
    obs = adata.obs
    obs["predicted_label"] = pd.Categorical(np.where(novel, NOVEL, closest), categories=[*classes, NOVEL])
    obs["closest_label"] = pd.Categorical(closest, categories=classes)
    obs["label_confidence"] = probs.max(axis=1)
    obs["label_uncertainty"] = unc
    obs["reference_distance"] = dist
    obs["novel"] = novel
    obs["is_reference"] = d.ref_mask
    adata.obsm[f"{key_added}_probabilities"] = probs
    if d.stages:
        sprobs = np.zeros((adata.n_obs, len(d.stages)))
        sprobs[ref_idx], sprobs[query_idx] = res["ref_stage_probs"], res["query_stage_probs"]
        obs["closest_stage"] = pd.Categorical(
            np.array(d.stages, dtype=object)[sprobs.argmax(axis=1)], categories=d.stages
        )
        adata.obsm[f"{key_added}_stage_probabilities"] = sprobs
    # held-out confusion matrix (true x predicted incl. novel) for composition correction and calibration
    ref_pred_lab = np.where(novel[ref_idx], len(classes), pred[ref_idx])
    confusion = np.zeros((len(classes), len(classes) + 1))
    np.add.at(confusion, (d.ref_codes, ref_pred_lab), 1.0)
    confusion /= np.clip(confusion.sum(axis=1, keepdims=True), 1, None)
    null_sel = res["null_select"]
    return {
        "confusion": confusion,
        "heldout_accuracy": float(np.mean(pred[ref_idx][null_sel] == d.ref_codes[null_sel])),
        "heldout_novel_rate": float(np.mean(novel[ref_idx][null_sel])),
        "n_query_novel": int(novel[query_idx].sum()),
    }


def _uns_record(
    d: _Design,
    s: FidelitySettings,
    summary: dict[str, Any],
    thr: np.ndarray,
    unc_thr: float,
    *,
    method: str,
    reference_key: str,
    use_rep: str,
    distance_rep: str | None,
    stage_key: str | None,
    seed: int,
    null_given: bool,
) -> dict[str, Any]:
    """``uns[key_added]`` of a mapping (parameters, effective settings, null, held-out summary); logs it."""
    n_query_novel = summary.pop("n_query_novel")
    logger.info(
        "mapped %d query cells onto %d reference cells (%d types, %s): %d novel (%.1f%%); "
        "held-out reference accuracy %.3f, novel rate %.3f",
        len(d.query_idx),
        len(d.ref_idx),
        len(d.classes),
        method,
        n_query_novel,
        100 * n_query_novel / max(len(d.query_idx), 1),
        summary["heldout_accuracy"],
        summary["heldout_novel_rate"],
    )
    return {
        "params": {
            "reference_key": reference_key,
            "method": method,
            "use_rep": use_rep,
            "distance_rep": distance_rep,
            "n_neighbors": s.n_neighbors,
            "donor_key": d.donor_key or "",
            "stage_key": stage_key or "",
            "null_quantile": s.null_quantile,
            "smooth_neighbors": s.smooth_neighbors,
            "uncertainty_novel": s.uncertainty_novel,
            "absent_quantile": s.absent_quantile,
            "label_metric": s.label_metric,
            "label_method": s.label_method,
            "novel_rule": NOVEL_RULE,
            "random_state": seed,
            "null_given": null_given,
            "settings": s.as_params(),
        },
        "labels": list(d.classes),
        "stages": list(d.stages),
        "distance_thresholds": thr,
        "uncertainty_threshold": unc_thr,
        **summary,
    }


def _distance_rep(adata: ad.AnnData, s: FidelitySettings, distance_rep: str | None, seed: int) -> str | None:
    """The ``obsm`` key novelty distances are measured in: ``distance_rep`` if present, else the settings'."""
    if distance_rep is None:
        return novelty_rep(adata, s, random_state=seed)
    if distance_rep not in adata.obsm:
        raise input_error(
            f"obsm has no {distance_rep!r} to measure distances in.",
            fix="compute it first (e.g. hscseq.fidelity.uncorrected_pca).",
        )
    return distance_rep


def map_to_reference(
    adata: ad.AnnData,
    *,
    settings: FidelitySettings | Mapping[str, Any] | None = None,
    reference_key: str = "reference_label",
    use_rep: str = "X_integrated",
    distance_rep: str | None = None,
    donor_key: str | None = None,
    stage_key: str | None = None,
    layer: str | None = "counts",
    batch_key: str = "batch",
    sample_key: str = "sample",
    null: Mapping[str, Any] | None = None,
    hierarchy: Mapping[str, str] | None = None,
    query_mask: np.ndarray | None = None,
    key_added: str = "fidelity",
    random_state: int | None = None,
    copy: bool = False,
    **overrides: Any,
) -> ad.AnnData | None:
    """Map every cell onto the reference cells of ``adata`` with calibrated uncertainty and novelty.

    Labels are voted among the ``n_neighbors`` nearest reference cells on neighbourhood-averaged positions
    (``label_metric``), or given by the ensemble (``label_method``); a cell is ``novel`` when its distance to
    the reference exceeds both nulls of the type it is labelled (:func:`novelty_thresholds`). Reference cells
    get their held-out (cross-validated) prediction. Every option of the stage (method, spaces, neighbours,
    quantiles, epochs) comes from the one :class:`~hscseq.fidelity.FidelitySettings` object (the config
    section ``fidelity``).

    Parameters
    ----------
    adata
        Cells of the reference (non-empty ``obs[reference_key]``) and of the query (everything else).
    settings
        The stage's settings (object or config section; default: the schema defaults). Used here:
        ``method`` (``auto`` = ``knn``; ``scanvi``: scVI/scANVI trained on the reference counts with one donor
        held out, then scArches surgery), ``novelty_space``, ``n_neighbors``, ``null_quantile``,
        ``absent_quantile``, ``smooth_neighbors``, ``label_metric``, ``uncertainty_novel``, ``max_epochs``,
        ``n_latent``, ``seed``.
    reference_key
        obs column with the reference labels (empty/NaN for query cells).
    use_rep
        Shared latent used by ``"knn"``.
    distance_rep
        ``obsm`` key of the space where distances to the reference (and so novelty) are measured. Default:
        from ``settings.novelty_space`` (:func:`~hscseq.fidelity.spaces.novelty_rep`): ``uncorrected`` =
        :func:`uncorrected_pca` (computed when missing; batch correction can align a query-only state onto
        the reference, while the held-out-donor null already carries donor shifts), ``integrated`` = the
        label latent (``use_rep`` or the surgery latent).
    donor_key
        obs column defining the held-out folds of the null (default: :func:`hscseq._labels.donor_key`;
        random folds when no column has two donors).
    stage_key
        Optional obs column of the reference with developmental stages; adds ``closest_stage``.
    layer
        Layer with raw counts (``"scanvi"`` only; ``None`` = X).
    batch_key
        obs column with the batch of every cell (``"scanvi"`` only).
    sample_key
        obs column with samples: distances are smoothed within each query sample.
    null
        Novelty thresholds to use instead of this reference's own (``labels``, ``distance_thresholds``,
        ``uncertainty_threshold``, as stored in ``uns[key_added]``); :func:`controls` passes the full
        reference's null when it maps a held-out donor against the remaining ones.
    hierarchy
        Label hierarchy child -> parent for the ensemble (default: ``settings.hierarchy``, else built).
    query_mask
        Boolean per cell: the unlabelled cells to map (default: all). Other unlabelled cells are left out
        (no label, confidence or distance; not novel) and change no other cell's result; with ``scanvi``
        the surgery still embeds them.
    key_added
        ``uns`` key for parameters and the null, ``obsm[key_added + "_probabilities"]`` for probabilities.
    random_state
        Seed of folds and models (default ``settings.seed``).
    copy
        Return a modified copy instead of writing in place.
    overrides
        Settings fields to change for this call (e.g. ``method="scanvi", max_epochs=5``), validated against
        the config schema.

    Returns
    -------
    ``None``, or the modified copy when ``copy=True``. Sets ``obs["predicted_label"]`` (``"novel"`` for
    novel cells), ``obs["closest_label"]``, ``obs["label_confidence"]``, ``obs["label_uncertainty"]``,
    ``obs["reference_distance"]``, ``obs["novel"]``, ``obs["is_reference"]`` (and ``obs["closest_stage"]``);
    ``uns[key_added]``: ``params`` (with the effective ``settings``), ``labels``, ``stages``, the thresholds,
    the held-out ``confusion``, ``heldout_accuracy`` and ``heldout_novel_rate``.
    """
    s = fidelity_settings(settings, **overrides)
    method = s.mapping_method()
    seed = s.seed if random_state is None else random_state
    adata = adata.copy() if copy else adata
    d = _design(
        adata, reference_key, s, donor_key=donor_key, stage_key=stage_key, sample_key=sample_key, seed=seed,
        query_mask=query_mask,
    )  # fmt: skip
    distance_rep = _distance_rep(adata, s, distance_rep, seed)
    if method == "knn":
        res = _map_knn(adata, d, s, use_rep=use_rep, distance_rep=distance_rep, full=null is not None)
    else:
        res = _map_scanvi(adata, d, s, distance_rep=distance_rep, layer=layer, batch_key=batch_key,
                          key_added=key_added, seed=seed)  # fmt: skip
    res.setdefault("null_select", np.ones(len(d.ref_idx), bool))
    ensemble = s.label_method == "ensemble"
    if ensemble:  # (scANVI's kNN runs on other folds: its neighbours are not the ensemble's)
        where = {"reference_key": reference_key, "hierarchy": hierarchy, "seed": seed}
        _ensemble_labels(adata, d, s, res["label_spaces"], neighbors=res.get("ensemble_neighbors"), **where)
    codes = _label_codes(adata, d, res, s)
    thr, unc_thr = _thresholds(res, d, s, null, codes)
    summary = _write_mapping(adata, d, res, thr, unc_thr, codes=codes, s=s, key_added=key_added)
    adata.uns[key_added] = _uns_record(
        d, s, summary, thr, unc_thr, method=method, reference_key=reference_key, use_rep=use_rep,
        distance_rep=distance_rep, stage_key=stage_key, seed=seed, null_given=null is not None,
    )  # fmt: skip
    if ensemble:
        mark_novel(adata, adata.obs["novel"].to_numpy(dtype=bool))
        use_ensemble_labels(adata, key_added=key_added)
    _blank_unmapped(adata, d)
    return adata if copy else None
