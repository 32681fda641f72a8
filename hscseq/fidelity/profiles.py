"""Profile-level reference (HematoMap, human): correlation mapping and its scorecard."""

from __future__ import annotations

import logging

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from hscseq._utils import input_error, resource_path
from hscseq.fidelity._stats import (
    bootstrap_weights,
    percentile_ci,
    weighted_fidelity_index,
)
from hscseq.fidelity.hierarchy import composition_weights, load_hierarchy, resolve_labels
from hscseq.fidelity.parts import (
    _scorecard_columns,
)
from hscseq.fidelity.settings import NOVEL, PARTS, FidelitySettings

logger = logging.getLogger(__name__)

#: The built-in profiles' 43 types rolled up to lineages (a label-hierarchy TSV, child -> parent).
HEMATOMAP_LINEAGES = ("references", "hematomap_lineages.tsv")
#: ``programme_source`` of a scorecard row scored against profiles (no donors, no composition, no programme).
PROFILE_SOURCE = "unavailable (profile reference)"


def load_hematomap() -> pd.DataFrame:
    """The built-in HematoMap human bone-marrow profiles (genes x 43 cell types; GPL-3, see PROVENANCE)."""
    path = resource_path("references", "hematomap_human_cell2location_signatures.csv")
    return pd.read_csv(path, index_col=0)


def hematomap_lineages() -> dict[str, str]:
    """The shipped roll-up of the 43 HematoMap marrow types to lineages (``resources/references``)."""
    return load_hierarchy(resource_path(*HEMATOMAP_LINEAGES))


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


def _correlations(var_names, counts, prof: pd.DataFrame, n_genes, n_null, chunk_size, seed):
    """Cells x profiles correlations of log-CPM on the ``n_genes`` most variable profile genes, the
    permutation null of each cell's best r, and those genes (cells densified ``chunk_size`` at a time)."""
    log_prof = np.log1p(prof.to_numpy().T / prof.to_numpy().sum(axis=0)[:, None] * 1e6)
    top = np.argsort(-log_prof.var(axis=0))[: min(n_genes, len(prof.index))]
    genes = [prof.index[i] for i in top]
    log_prof = log_prof[:, top]
    lib = np.asarray(counts.sum(axis=1)).ravel()
    sub = counts[:, var_names.get_indexer(genes)]
    r = np.zeros((counts.shape[0], len(prof.columns)))
    null = np.zeros(counts.shape[0])
    for start in range(0, counts.shape[0], chunk_size):
        stop = min(start + chunk_size, counts.shape[0])
        block = sub[start:stop].toarray() / np.clip(lib[start:stop, None], 1, None) * 1e6
        r[start:stop], null[start:stop] = profile_correlation_core(
            np.log1p(block), log_prof, n_null=n_null, seed=seed
        )
    return r, null, genes


def map_to_profiles(
    adata: ad.AnnData,
    *,
    profiles: pd.DataFrame | None = None,
    layer: str | None = "counts",
    n_genes: int = 2000,
    margin: float = 0.05,
    n_null: int = 20,
    chunk_size: int = 2000,
    min_confidence: float = 0.5,
    key_added: str = "fidelity",
    random_state: int = 0,
    copy: bool = False,
) -> ad.AnnData | None:
    """Profile-level mapping (no single-cell reference): correlate each cell with reference profiles.

    Limits: profiles carry no donor-to-donor variation, no composition and no cell-level null, so only
    ``identity`` and an uncalibrated correlation are available; ``novel`` cells are those whose best
    correlation does not beat the best correlation with gene-permuted profiles by ``margin``.

    A cell's type probabilities are a softmax of its correlations (temperature 0.02). With the built-in
    profiles, whose 43 types include close subtypes (e.g. eight CD4/CD8 T-cell states), a cell whose best
    type has less than ``min_confidence`` but whose lineage (:func:`hematomap_lineages`; the sum over its
    types) has at least that much is sure at the lineage level: ``mapped_label`` ``"<lineage> (uncertain)"``
    and ``mapped_coarse`` True, as the ensemble mapping does with its label hierarchy.

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
    min_confidence
        Probability a cell's type (or, with the built-in profiles, its lineage) needs to be sure.
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
    hierarchy = hematomap_lineages() if profiles is None else {}
    profiles = load_hematomap() if profiles is None else profiles
    shared = [g for g in profiles.index if g in set(adata.var_names)]
    if len(shared) < 200:
        raise input_error(
            f"only {len(shared)} genes shared with the profile reference.",
            fix="the built-in HematoMap profiles are human: use human gene symbols, or give a "
            "single-cell reference h5ad in config fidelity.reference.",
        )
    prof = profiles.loc[shared]
    counts = sp.csr_matrix(adata.layers[layer] if layer else adata.X)
    r, null, genes = _correlations(adata.var_names, counts, prof, n_genes, n_null, chunk_size, random_state)
    best = r.argmax(axis=1)
    best_r = r.max(axis=1)
    novel = best_r < null + margin
    classes = list(prof.columns)
    closest = np.array(classes, dtype=object)[best]
    ex = np.exp((r - best_r[:, None]) / 0.02)
    probs = ex / ex.sum(axis=1, keepdims=True)
    conf = probs.max(axis=1)
    sure, coarse = resolve_labels(
        probs, classes, hierarchy, min_probability=min_confidence, min_parent_probability=min_confidence
    )
    adata.obs["predicted_label"] = pd.Categorical(
        np.where(novel, NOVEL, closest), categories=[*classes, NOVEL]
    )
    adata.obs["closest_label"] = pd.Categorical(closest, categories=classes)
    adata.obs["label_confidence"] = conf
    adata.obs["label_uncertainty"] = 1 - conf
    adata.obs["mapped_label"] = np.where(novel, NOVEL, sure).astype(str)
    adata.obs["mapped_coarse"] = coarse & ~novel
    adata.obsm[f"{key_added}_probabilities"] = probs
    adata.obs["reference_distance"] = 1 - best_r
    adata.obs["novel"] = novel
    adata.obs["is_reference"] = False
    adata.uns[key_added] = {
        "params": {
            "method": "profiles",
            "n_genes": len(genes),
            "margin": margin,
            "n_null": n_null,
            "min_confidence": min_confidence,
            "lineage_level": bool(hierarchy),  # the built-in profiles' lineages (hematomap_lineages)
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


def profile_hierarchy(adata: ad.AnnData, key: str = "fidelity") -> dict[str, str]:
    """The hierarchy :func:`map_to_profiles` resolved labels with: the HematoMap lineages for the built-in
    profiles (``uns[key]["params"]["lineage_level"]``), none for profiles of your own."""
    return hematomap_lineages() if adata.uns[key]["params"].get("lineage_level") else {}


def _profile_composition_weights(adata: ad.AnnData, key: str = "fidelity") -> pd.DataFrame:
    """Cells x (types + novel): each cell counts 1 at the level it is sure of (a cell sure only of its lineage
    is spread over its lineage's types by probability, as in :func:`.hierarchy.composition_weights`).
    """
    classes = list(adata.uns[key]["labels"])
    novel = adata.obs["novel"].to_numpy(dtype=bool)
    coarse = adata.obs["mapped_coarse"].to_numpy(dtype=bool)
    w = composition_weights(
        adata.obsm[f"{key}_probabilities"], classes, profile_hierarchy(adata, key), coarse
    )
    w[novel] = 0.0
    out = pd.DataFrame(w, columns=classes, index=adata.obs_names)
    out[NOVEL] = novel.astype(float)
    return out


def _profile_scorecard(adata: ad.AnnData, cfg: FidelitySettings) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Identity and novel share per sample against profiles (no donor null, no in vivo composition).

    Identity: the share of cells mapped with at least ``min_confidence`` at the level they are sure of (their
    type, or with the built-in profiles their lineage: ``mapped_coarse``), not novel; a raw share, since
    profiles carry no held-out donor to scale it by."""
    from scipy.stats import beta as beta_dist

    rows, comp_rows = [], []
    sure = adata.obs["label_confidence"].to_numpy() >= cfg.min_confidence
    sure |= adata.obs["mapped_coarse"].to_numpy(dtype=bool)  # sure of the lineage (map_to_profiles)
    conf = ~adata.obs["novel"].to_numpy(dtype=bool) & sure
    weights = _profile_composition_weights(adata)
    for k, (s, grp) in enumerate(adata.obs.groupby("sample", observed=True)):
        if str(grp["condition"].iloc[0]) not in ("engineered", "organoid"):
            continue
        idx = adata.obs_names.get_indexer(grp.index)
        w = np.vstack([np.ones(len(idx)), bootstrap_weights(len(idx), cfg.n_bootstrap, cfg.seed + k)])
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
        f = weighted_fidelity_index({p: parts[p] for p in PARTS}, cfg.index_weights)
        row["fidelity_index"] = float(f[0])
        row["fidelity_index_ci_low"], row["fidelity_index_ci_high"] = percentile_ci(f[1:])
        row["programme_source"] = PROFILE_SOURCE
        rows.append(row)
        vc = weights.iloc[idx].mean(axis=0)
        for t, v in vc[vc > 0].sort_values(ascending=False).items():
            k = round(v * len(idx))
            comp_rows.append(
                {
                    "sample": str(s),
                    "condition": row["condition"],
                    "timepoint": row["timepoint"],
                    "cell_type": t,
                    "n_cells": k,
                    "fraction": v,
                    # Clopper-Pearson 95% CI (timecourse() reads it; there is no in vivo composition here)
                    "fraction_ci_low": float(beta_dist.ppf(0.025, k, len(idx) - k + 1)) if k else 0.0,
                    "fraction_ci_high": float(beta_dist.ppf(0.975, k + 1, len(idx) - k))
                    if k < len(idx)
                    else 1.0,
                }
            )
    table = pd.DataFrame(rows)
    return (table[_scorecard_columns(table)] if not table.empty else table), pd.DataFrame(comp_rows)
