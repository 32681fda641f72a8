"""The fidelity scorecard per engineered / organoid sample."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from hscseq._utils import input_error
from hscseq.fidelity._stats import correct_composition
from hscseq.fidelity.hierarchy import composition_weights
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
from hscseq.fidelity.settings import NOVEL, FidelitySettings, fidelity_settings

logger = logging.getLogger(__name__)


@dataclass
class _Comparators:
    """Count matrices and in vivo comparators of one scorecard (similarity on informative genes)."""

    x: sp.csr_matrix
    x_all: sp.csr_matrix
    genes: np.ndarray
    ref_sim: _Reference
    ref_prog: _Reference
    hsc: str | None
    coarse: np.ndarray | None = None  # cells the ensemble labelled "<parent> (uncertain)" (its labels only)
    weights: np.ndarray | None = None


def _coarse(adata: ad.AnnData) -> np.ndarray | None:
    """Cells the ensemble labelled ``"<parent> (uncertain)"`` (None unless the labels are the ensemble's)."""
    method = adata.uns.get("fidelity", {}).get("params", {}).get("label_method")
    if method != "ensemble" or "mapped_coarse" not in adata.obs:
        return None
    return adata.obs["mapped_coarse"].to_numpy(dtype=bool)


def _sure_level_weights(
    adata: ad.AnnData, classes: list[str], coarse: np.ndarray | None, key: str = "mapping"
) -> np.ndarray | None:
    """Composition weights over ``classes`` of the ``coarse`` cells (labelled ``"<parent> (uncertain)"``;
    other rows NaN: they count for their label); None without such cells."""
    if coarse is None or not coarse.any() or f"{key}_probabilities" not in adata.obsm or key not in adata.uns:
        return None
    labels = list(adata.uns[key]["labels"])
    w = composition_weights(adata.obsm[f"{key}_probabilities"], labels, adata.uns[key]["hierarchy"], coarse)
    w = pd.DataFrame(w, columns=labels).reindex(columns=classes, fill_value=0.0).to_numpy()
    w[~coarse] = np.nan
    return w


def _comparators(
    adata: ad.AnnData,
    s: FidelitySettings,
    *,
    layer: str | None,
    programme_null: float | None,
    null_source: ad.AnnData | None,
    seed: int,
) -> _Comparators:
    ref_mask = adata.obs["is_reference"].to_numpy().astype(bool)
    classes = list(adata.uns["fidelity"]["labels"])
    x_all = _counts(adata, layer)
    ref_key = adata.uns["fidelity"]["params"].get("reference_key", "reference_label")
    if ref_key not in adata.obs:
        ref_key = "reference_label" if "reference_label" in adata.obs else "closest_label"
    ref_labels = adata.obs[ref_key].astype(str).to_numpy()[ref_mask]
    genes = _informative_genes(
        x_all, ref_mask, adata.obs[ref_key].astype(str).to_numpy(), classes, s.n_informative_genes
    )
    x = x_all[:, genes]
    donors = _donor_column(adata, ref_mask)[ref_mask]
    hsc = _hsc_label(classes, s.hsc_label)
    # HSC genes use all genes; similarity the informative ones -> two references share labels/donors
    common = {"min_cells": s.min_cells, "seed": seed}
    ref_sim = _Reference(x[ref_mask], ref_labels, donors, classes, hsc_label=None, **common)
    ref_prog = _Reference(x_all[ref_mask], ref_labels, donors, classes, hsc_label=hsc, **common)
    if programme_null is not None:
        ref_prog.hsc_null = float(programme_null)
    if null_source is not None:
        ref_null = _Reference(
            _counts(null_source, layer)[:, genes],
            null_source.obs[ref_key].astype(str).to_numpy(),
            _donor_column(null_source, np.ones(null_source.n_obs, bool)),
            classes,
            hsc_label=None,
            **common,
        )
        ref_sim.donor_null = ref_null.donor_null
    coarse = _coarse(adata)
    confident = ~adata.obs["novel"].to_numpy().astype(bool) & (
        (adata.obs["label_confidence"].to_numpy() >= s.min_confidence) | (False if coarse is None else coarse)
    )
    # the identity null: share of (cross-validated) reference cells mapped confidently (or to a sure parent)
    ref_sim.identity_null = float(confident[ref_mask].mean()) if ref_mask.any() else 1.0
    return _Comparators(
        x, x_all, genes, ref_sim, ref_prog, hsc, coarse, _sure_level_weights(adata, classes, coarse)
    )


def _query_samples(
    obs: pd.DataFrame, sample_key: str, condition_key: str, conditions: Sequence[str]
) -> list[str]:
    return [
        s
        for s in pd.unique(obs[sample_key].astype(str))
        if obs.loc[obs[sample_key].astype(str) == s, condition_key].astype(str).iloc[0] in conditions
    ]


def _sample_row(
    adata: ad.AnnData,
    cmp: _Comparators,
    s: FidelitySettings,
    sample: str,
    *,
    programme: pd.DataFrame | None,
    sample_key: str,
    condition_key: str,
    seed: int,
) -> tuple[dict[str, Any], pd.DataFrame] | None:
    """The scorecard row and the composition rows of one sample (``None`` without query cells)."""
    obs = adata.obs
    ref_mask = obs["is_reference"].to_numpy().astype(bool)
    idx = np.flatnonzero((obs[sample_key].astype(str) == sample).to_numpy() & ~ref_mask)
    if len(idx) == 0:
        return None
    novel = obs["novel"].to_numpy().astype(bool)
    confident = ~novel & (obs["label_confidence"].to_numpy() >= s.min_confidence)
    summary, comp = _score_population_pair(
        cmp.x,
        cmp.x_all,
        idx,
        obs["predicted_label"].astype(str).to_numpy(),
        confident,
        novel,
        cmp.ref_sim,
        cmp.ref_prog,
        n_bootstrap=s.n_bootstrap,
        seed=seed,
        stage=obs["closest_stage"].astype(str).to_numpy() if "closest_stage" in obs else None,
        weights=cmp.weights,
        sure_parent=cmp.coarse,
    )
    override = _programme_override(programme, sample)
    if override is not None:  # the table value has no replicates: CI of F reflects the other parts
        summary["programme"], summary["programme_ci_low"], summary["programme_ci_high"] = override
        summary["_replicates"]["programme"] = np.full_like(summary["_replicates"]["programme"], override[0])
        summary["programme_source"] = "score_table"
    else:
        summary["programme_source"] = "reference_hsc_genes" if cmp.hsc else "unavailable"
    _finish_index(summary, s.index_weights)
    first = obs.iloc[idx[0]]
    meta = {
        "sample": sample,
        "condition": str(first[condition_key]),
        "timepoint": str(first["timepoint"]) if "timepoint" in obs else "",
    }
    batches = set(obs["batch"].astype(str).to_numpy()[idx]) if "batch" in obs else set()
    ref_batches = set(obs["batch"].astype(str).to_numpy()[ref_mask]) if "batch" in obs else set()
    meta["confounded"] = bool(batches and not (batches & ref_batches))
    comp.insert(0, "sample", sample)
    comp.insert(1, "condition", meta["condition"])
    comp.insert(2, "timepoint", meta["timepoint"])
    return {**meta, **summary}, comp


def _corrected_composition(composition: pd.DataFrame, confusion: np.ndarray, classes: list[str]) -> None:
    """Add ``fraction_corrected`` (adjusted classify-and-count with the held-out confusion matrix)."""
    if composition.empty or not confusion.size:
        return
    composition["fraction_corrected"] = np.nan
    labels = [*classes, NOVEL]
    full_conf = np.vstack([confusion, np.eye(len(classes) + 1)[-1]])
    for sample in composition["sample"].unique():
        m = composition["sample"] == sample
        observed = composition.loc[m].set_index("cell_type").reindex(labels)["fraction"]
        corrected = correct_composition(observed.fillna(0).to_numpy(), full_conf)
        composition.loc[m, "fraction_corrected"] = (
            pd.Series(corrected, index=labels).reindex(composition.loc[m, "cell_type"]).to_numpy()
        )


def scorecard(
    adata: ad.AnnData,
    *,
    settings: FidelitySettings | Mapping[str, Any] | None = None,
    programme: pd.DataFrame | None = None,
    sample_key: str = "sample",
    condition_key: str = "condition",
    query_conditions: Sequence[str] = ("engineered", "organoid"),
    layer: str | None = "counts",
    programme_null: float | None = None,
    null_source: ad.AnnData | None = None,
    key_added: str = "scorecard",
    random_state: int | None = None,
    copy: bool = False,
    **overrides: Any,
) -> ad.AnnData | None:
    """Fidelity scorecard per engineered / organoid sample (run :func:`map_to_reference` first).

    The parts and the fidelity index are defined in the package docstring (``hscseq.fidelity``).

    Parameters
    ----------
    adata
        Mapped cells (obs ``predicted_label``, ``label_confidence``, ``novel``, ``is_reference`` and the
        reference labels in ``uns["fidelity"]``), raw counts in ``layers[layer]``.
    settings
        The stage's settings (object or config section; default: the schema defaults). Used here:
        ``index_weights``, ``min_confidence``, ``min_cells``, ``n_informative_genes`` (genes most variable
        across reference type pseudobulks, used for correlations), ``hsc_label`` (default: the shortest
        reference label that :func:`hscseq._labels.is_hsc_label` accepts), ``n_bootstrap``, ``seed``.
    programme
        The score stage's ``hsc_programme.tsv``; its ``hsc_programme_share`` replaces the reference-derived
        HSC programme completeness for the samples it lists.
    sample_key
        obs column with the sample of each cell.
    condition_key
        obs column with the condition of each cell.
    query_conditions
        Conditions that get a scorecard row.
    layer
        Layer with raw counts (``None`` = X).
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
        ``["params"]`` (with the effective ``settings``).
    random_state
        Seed of the bootstrap (default ``settings.seed``).
    copy
        Return a modified copy instead of writing in place.
    overrides
        Settings fields to change for this call (e.g. ``n_bootstrap=20``), validated against the schema.

    Returns
    -------
    ``None``, or the modified copy when ``copy=True``.
    """
    for col in ("predicted_label", "label_confidence", "novel", "is_reference"):
        if col not in adata.obs:
            raise input_error(f"obs lacks {col!r}.", fix="run hscseq.fidelity.map_to_reference first.")
    s = fidelity_settings(settings, **overrides)
    seed = s.seed if random_state is None else random_state
    adata = adata.copy() if copy else adata
    cmp = _comparators(
        adata, s, layer=layer, programme_null=programme_null, null_source=null_source, seed=seed
    )
    rows, comp_rows = [], []
    for k, sample in enumerate(_query_samples(adata.obs, sample_key, condition_key, query_conditions)):
        out = _sample_row(
            adata,
            cmp,
            s,
            sample,
            programme=programme,
            sample_key=sample_key,
            condition_key=condition_key,
            seed=seed + k,
        )
        if out is not None:
            rows.append(out[0])
            comp_rows.append(out[1])
    table = pd.DataFrame(rows)
    if not table.empty:
        # the novel share a real donor's cells get (held-out reference cells): what a sample's is read against
        table["reference_novel_share"] = float(adata.uns["fidelity"].get("heldout_novel_rate", np.nan))
        table = table[_scorecard_columns(table)]
    composition = pd.concat(comp_rows, ignore_index=True) if comp_rows else pd.DataFrame()
    classes = list(adata.uns["fidelity"]["labels"])
    _corrected_composition(
        composition, np.asarray(adata.uns["fidelity"].get("confusion", np.zeros((0, 0)))), classes
    )
    adata.uns[key_added] = {
        "params": {
            "sample_key": sample_key,
            "condition_key": condition_key,
            "layer": layer or "",
            "weights": dict(s.index_weights),
            "min_confidence": s.min_confidence,
            "min_cells": s.min_cells,
            "n_genes": len(cmp.genes),
            "hsc_label": cmp.hsc or "",
            "n_bootstrap": s.n_bootstrap,
            "random_state": seed,
            "programme_table": programme is not None,
            "settings": s.as_params(),
        },
        "table": table,
        "composition": composition,
    }
    return adata if copy else None
