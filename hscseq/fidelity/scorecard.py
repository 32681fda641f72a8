"""The fidelity scorecard per engineered / organoid sample."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import anndata as ad
import numpy as np
import pandas as pd

from hscseq._utils import input_error
from hscseq.fidelity._stats import (
    correct_composition,
)
from hscseq.fidelity.parts import (
    _counts,
    _donor_column,
    _finish_index,
    _hsc_label,
    _informative_genes,
    _programme_override,
    _Reference,
    _score_population_pair,
    _scorecard_columns,
)
from hscseq.fidelity.settings import NOVEL, PARTS

logger = logging.getLogger(__name__)


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
