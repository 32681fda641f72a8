"""AnnData wrapper of the mapping ensemble: labels, calibrated probabilities, hierarchy, accuracy card."""

from __future__ import annotations

import logging
import zlib
from collections.abc import Mapping

import anndata as ad
import numpy as np
import pandas as pd

from hscseq.fidelity import _ensemble as ens
from hscseq.fidelity import hierarchy as hier
from hscseq.fidelity.settings import DEFAULT_SETTINGS as _D

logger = logging.getLogger(__name__)

NOVEL = "novel"


def _hvg_matrix(adata: ad.AnnData):
    keep = np.ones(adata.n_vars, dtype=bool)
    if "highly_variable" in adata.var:
        keep &= adata.var["highly_variable"].to_numpy(dtype=bool)
    if "hscseq_excluded" in adata.var:
        keep &= ~adata.var["hscseq_excluded"].to_numpy(dtype=bool)
    return adata.X[:, keep]


def smoothing_groups(
    samples: np.ndarray, ref_mask: np.ndarray, fold_size: float, *, seed: int = 0
) -> np.ndarray:
    """Query cells split into random groups of about ``fold_size`` cells within each sample.

    Novelty distances are measured on neighbourhood-averaged positions; averaging 15 neighbours among a
    whole query sample (dense) and among one reference fold (sparser) shrinks the two differently, which
    made known cells look far (paul15: 18% of known query cells called novel). Groups of the fold's size
    give query and null the same neighbour density. Reference cells keep the label ``"ref"``.

    Each sample draws its groups from its own generator (seed and name): a sample's groups, hence its
    smoothed positions and novelty calls, do not depend on which other samples are mapped with it.
    """
    out = np.full(len(samples), "ref", dtype=object)
    for s in pd.unique(samples[~ref_mask]):
        rng = np.random.default_rng([seed, zlib.crc32(str(s).encode())])
        idx = np.flatnonzero((samples == s) & ~ref_mask)
        n_groups = max(1, round(len(idx) / max(fold_size, 1.0)))
        out[idx] = [f"{s}:{g}" for g in rng.permutation(np.arange(len(idx)) % n_groups)]
    return out


def _labelled(lab: pd.Series) -> np.ndarray:
    """Cells with a reference label: not missing, blank, "nan", "NaN" or "None" (the one rule of the mapping,
    the ensemble and the controls, so their reference cells are the same positions)."""
    empty = lab.astype(str).str.strip().isin(["", "nan", "NaN", "None"]).to_numpy()
    return lab.notna().to_numpy() & ~empty


def accuracy_card(
    truth: np.ndarray, pred: np.ndarray, classes: list[str], hierarchy: Mapping[str, str]
) -> pd.DataFrame:
    """Per reference type: held-out precision, recall, F1, and shares coarse / novel (true type = row)."""
    rows = []
    for c in classes:
        t = truth == c
        p = pred == c
        tp = float(np.sum(t & p))
        prec = tp / p.sum() if p.sum() else np.nan
        rec = tp / t.sum() if t.sum() else np.nan
        f1 = 2 * prec * rec / (prec + rec) if t.sum() and p.sum() and prec + rec > 0 else 0.0
        parent = hierarchy.get(c, "")
        rows.append(
            {
                "cell_type": c,
                "parent": parent,
                "n_heldout": int(t.sum()),
                "precision": prec,
                "recall": rec,
                "f1": f1,
                "share_coarse": float(np.mean([str(x).endswith(hier.UNCERTAIN) for x in pred[t]]))
                if t.any()
                else np.nan,
                "share_novel": float(np.mean(pred[t] == NOVEL)) if t.any() else np.nan,
            }
        )
    return pd.DataFrame(rows)


def map_ensemble(
    adata: ad.AnnData,
    *,
    reference_key: str = "reference_label",
    folds: np.ndarray,
    use_rep: str = "X_integrated",
    uncorrected_rep: str | None = "X_pca_uncorrected",
    hierarchy: Mapping[str, str] | None = None,
    n_neighbors: int = _D.n_neighbors,
    c: float = _D.logreg_c,
    logreg_max_cells: int | None = _D.logreg_max_cells_per_type,
    min_probability: float = _D.min_label_probability,
    min_parent_probability: float = _D.min_parent_probability,
    novel: np.ndarray | None = None,
    max_distance: float = _D.hierarchy_max_distance,
    n_sibling_genes: int = _D.sibling_genes,
    neighbors: Mapping[str, tuple[np.ndarray, np.ndarray]] | None = None,
    query_mask: np.ndarray | None = None,
    key_added: str = "mapping",
    random_state: int = 0,
) -> None:
    """Ensemble labels for every cell (reference cells: held out); writes obs and ``uns[key_added]``.

    ``query_mask`` (boolean per cell; default all): the unlabelled cells to label; other unlabelled cells
    get no label (NaN, not coarse).

    obs: ``mapped_label`` (fine type, ``"<parent> (uncertain)"`` or ``"novel"``), ``mapped_fine_label``,
    ``mapped_confidence`` (calibrated probability of the fine type), ``mapped_coarse`` (bool).
    ``uns[key_added]``: ``params``, ``weights``, ``labels``, ``hierarchy``, ``accuracy`` (per-type card),
    ``reliability`` (held-out bins) and ``ece``.
    """
    lab = adata.obs[reference_key]
    ref_mask = _labelled(lab)
    labels = lab.astype(str).to_numpy()
    classes = sorted(pd.unique(labels[ref_mask]))
    codes = pd.Categorical(labels[ref_mask], categories=classes).codes.astype(int)
    mapped = ref_mask | (True if query_mask is None else np.asarray(query_mask, dtype=bool))
    ref_idx, q_idx = np.flatnonzero(ref_mask), np.flatnonzero(~ref_mask & mapped)
    spaces: dict[str, tuple[object, object]] = {}
    lat = np.asarray(adata.obsm[use_rep], dtype=float)
    spaces["knn_integrated"] = (lat[ref_idx], lat[q_idx])
    if uncorrected_rep:
        unc = np.asarray(adata.obsm[uncorrected_rep], dtype=float)
        spaces["knn_uncorrected"] = (unc[ref_idx], unc[q_idx])
    x = _hvg_matrix(adata)
    spaces["logreg_hvg"] = (x[ref_idx], x[q_idx])
    del x  # the members need only the two slices (the whole HVG matrix: 1.3 GB more at 225,000 cells)
    if hierarchy is None:  # built from the reference: clustering of type centroids over HVGs
        x_ref = spaces["logreg_hvg"][0]
        cen = np.vstack([np.asarray(x_ref[codes == k].mean(axis=0)).ravel() for k in range(len(classes))])
        hierarchy = hier.build_hierarchy(cen, classes, max_distance=max_distance)
    hierarchy = dict(hierarchy)
    parent_names = [hierarchy.get(cl, cl) for cl in classes]
    parent_of = pd.Categorical(parent_names).codes.astype(int)
    if len(set(parent_names)) < len(classes):
        xa = adata.X
        spaces["sibling_markers"] = (xa[ref_idx], xa[q_idx])
    res = ens.ensemble_core(
        spaces,
        codes,
        folds,
        len(classes),
        n_neighbors=n_neighbors,
        c=c,
        logreg_max_cells=logreg_max_cells,
        parent_of=parent_of,
        n_sibling_genes=n_sibling_genes,
        neighbors=neighbors,
        seed=random_state,
    )
    probs = np.zeros((adata.n_obs, len(classes)))
    probs[ref_idx] = res["ref_probs"]
    probs[q_idx] = res["query_probs"]
    final, coarse = hier.resolve_labels(
        probs,
        classes,
        hierarchy,
        min_probability=min_probability,
        min_parent_probability=min_parent_probability,
    )
    fine = np.asarray(classes, dtype=object)[probs.argmax(axis=1)]
    obs = adata.obs
    obs["mapped_label"] = pd.Categorical(np.where(mapped, np.asarray(final, dtype=object), None))
    obs["mapped_fine_label"] = pd.Categorical(np.where(mapped, fine, None), categories=classes)
    obs["mapped_confidence"] = np.where(mapped, probs.max(axis=1), np.nan)
    obs["mapped_coarse"] = np.asarray(coarse, dtype=bool) & mapped
    adata.obsm[f"{key_added}_probabilities"] = probs
    rel = ens.reliability_table(res["ref_probs"], codes)
    adata.uns[key_added] = {
        "params": {
            "reference_key": reference_key,
            "use_rep": use_rep,
            "uncorrected_rep": uncorrected_rep or "",
            "n_neighbors": n_neighbors,
            "c": c,
            "logreg_max_cells": logreg_max_cells,
            "min_probability": min_probability,
            "min_parent_probability": min_parent_probability,
            "random_state": random_state,
        },
        "labels": classes,
        "weights": res["weights"],
        "hierarchy": hierarchy,
        "ece": ens.expected_calibration_error(res["ref_probs"], codes),
        "reliability": pd.DataFrame(rel),
        "member_ece": {
            n: ens.expected_calibration_error(p, codes) for n, p in res["member_ref_probs"].items()
        },
        "member_heldout_bacc": {
            n: _bacc(codes, p.argmax(axis=1)) for n, p in res["member_ref_probs"].items()
        },
        "heldout_bacc": _bacc(codes, res["ref_probs"].argmax(axis=1)),
    }
    mark_novel(adata, np.zeros(adata.n_obs, bool) if novel is None else novel, key_added=key_added)
    logger.info(
        "ensemble weights %s; held-out balanced accuracy %.3f, ECE %.3f",
        res["weights"],
        adata.uns[key_added]["heldout_bacc"],
        adata.uns[key_added]["ece"],
    )


def mark_novel(adata: ad.AnnData, novel: np.ndarray, *, key_added: str = "mapping") -> None:
    """Label ``novel`` cells ``"novel"`` in the ensemble's ``mapped_label`` (never coarse); recompute the
    per-type accuracy card (``uns[key_added]["accuracy"]``) from the held-out reference cells' labels."""
    obs, uns = adata.obs, adata.uns[key_added]
    novel = np.asarray(novel, dtype=bool)
    label = obs["mapped_label"]
    final = np.where(novel, NOVEL, label.astype(str).to_numpy()).astype(object)
    final[label.isna().to_numpy() & ~novel] = None  # cells left unlabelled stay so
    obs["mapped_label"] = pd.Categorical(final)
    obs["mapped_coarse"] = obs["mapped_coarse"].to_numpy(dtype=bool) & ~novel
    lab = obs[uns["params"]["reference_key"]]
    ref = _labelled(lab)
    uns["accuracy"] = accuracy_card(
        lab.astype(str).to_numpy()[ref], final[ref], list(uns["labels"]), uns["hierarchy"]
    )


def _bacc(codes: np.ndarray, pred: np.ndarray) -> float:
    from sklearn.metrics import balanced_accuracy_score

    return float(balanced_accuracy_score(codes, pred))


def use_ensemble_labels(
    adata: ad.AnnData, *, key_added: str = "fidelity", mapping_key: str = "mapping"
) -> None:
    """Make the ensemble's labels the mapping's labels (after :func:`map_ensemble` on a mapped object).

    ``predicted_label`` = the ensemble's fine type (``"novel"`` stays), ``closest_label`` = fine type,
    ``label_confidence`` = its calibrated probability, ``label_uncertainty`` = 1 - that; ``mapped_label``
    keeps the label at the sure level (``"<parent> (uncertain)"``). The held-out confusion matrix and
    accuracy in ``uns[key_added]`` are recomputed from the ensemble's held-out predictions.
    """
    obs = adata.obs
    classes = list(adata.uns[mapping_key]["labels"])
    novel = obs["novel"].to_numpy(dtype=bool)
    fine = obs["mapped_fine_label"].astype(str).to_numpy()
    obs["predicted_label"] = pd.Categorical(np.where(novel, NOVEL, fine), categories=[*classes, NOVEL])
    obs["closest_label"] = pd.Categorical(fine, categories=classes)
    obs["label_confidence"] = obs["mapped_confidence"].to_numpy()
    obs["label_uncertainty"] = 1.0 - obs["mapped_confidence"].to_numpy()
    adata.obsm[f"{key_added}_probabilities"] = adata.obsm[f"{mapping_key}_probabilities"]
    ref = obs["is_reference"].to_numpy(dtype=bool)
    ref_key = adata.uns[key_added]["params"]["reference_key"]
    codes = pd.Categorical(obs.loc[ref, ref_key].astype(str), categories=classes).codes
    code_of = {c: i for i, c in enumerate(classes)}
    pred = np.array([len(classes) if n else code_of[f] for f, n in zip(fine[ref], novel[ref], strict=True)])
    confusion = np.zeros((len(classes), len(classes) + 1))
    np.add.at(confusion, (codes, pred), 1.0)
    confusion /= np.clip(confusion.sum(axis=1, keepdims=True), 1, None)
    uns = adata.uns[key_added]
    uns["confusion"] = confusion
    uns["heldout_accuracy"] = float(np.mean(pred == codes))
    uns["params"]["label_method"] = "ensemble"
    uns["ensemble"] = {
        "weights": adata.uns[mapping_key]["weights"],
        "ece": adata.uns[mapping_key]["ece"],
        "heldout_balanced_accuracy": adata.uns[mapping_key]["heldout_bacc"],
    }


def calibration_table(adata: ad.AnnData, *, mapping_key: str = "mapping") -> pd.DataFrame:
    """Reliability bins of the held-out reference cells (ensemble), with the ECE of the ensemble and members.

    Columns: ``source`` (ensemble or member), ``ece``, ``bin_low``, ``bin_high``, ``confidence``,
    ``accuracy``, ``share``, ``n_cells`` (member rows carry only their ECE).
    """
    m = adata.uns[mapping_key]
    rel = pd.DataFrame(m["reliability"]).copy()
    rel.insert(0, "ece", float(m["ece"]))
    rel.insert(0, "source", "ensemble (held-out, cross-fitted calibration)")
    members = pd.DataFrame(
        {"source": [f"member: {k}" for k in m["member_ece"]], "ece": list(m["member_ece"].values())}
    )
    return pd.concat([rel, members], ignore_index=True)
