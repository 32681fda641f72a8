"""Scorecard parts: in vivo comparators and the parts of one population of cells."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from hscseq._labels import donor_key
from hscseq._labels import hsc_label as shared_hsc_label
from hscseq.fidelity._stats import (
    bootstrap_weights,
    jensen_shannon,
    log_cpm,
    percentile_ci,
    row_corr,
    similarity_ratio,
    weighted_fidelity_index,
)
from hscseq.fidelity.settings import NOVEL, PARTS

logger = logging.getLogger(__name__)


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


def _similarity_per_type(
    x: sp.csr_matrix, w_all: np.ndarray, conf_code: np.ndarray, ref: _Reference, *, exclude_donor: str | None
) -> np.ndarray:
    """``S_t`` per matched type (replicates x types; NaN where a type has too few cells or no donor)."""
    sim_t = np.full((w_all.shape[0], len(ref.classes)), np.nan)
    for j, c in enumerate(ref.classes):
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
    return sim_t


def _programme_completeness(x: sp.csr_matrix, w_all: np.ndarray, conf_code: np.ndarray, ref) -> np.ndarray:
    """HSC programme completeness per replicate (reference-derived; NaN without an HSC type)."""
    programme = np.full(w_all.shape[0], np.nan)
    if ref.hsc_label not in ref.classes or not len(ref.hsc_genes):
        return programme
    idx = np.flatnonzero(conf_code == ref.classes.index(ref.hsc_label))
    if len(idx) == 0:
        return np.zeros(w_all.shape[0])
    xs = x[idx]
    tot_counts = np.asarray(xs.sum(axis=1)).ravel()
    gene_counts = np.asarray(xs[:, ref.hsc_genes].todense())
    pb = w_all[:, idx] @ gene_counts
    lib = w_all[:, idx] @ tot_counts
    with np.errstate(invalid="ignore", divide="ignore"):
        cpm = pb / np.where(lib > 0, lib, 1)[:, None] * 1e6
    ratio = np.minimum(1.0, (cpm + 1) / (ref.hsc_cpm[None, :] + 1))
    return np.where(lib > 0, np.minimum(1.0, ratio.mean(axis=1) / ref.hsc_null), 0.0)


def _counts_for(code: np.ndarray, novel: np.ndarray, weights: np.ndarray | None, n_types: int) -> np.ndarray:
    """Cells x types: how much each cell counts for each type in the composition (novel cells: nothing,
    they are their own category; finite rows of ``weights`` as given; every other cell one for its label)."""
    counts_for = np.zeros((len(code), n_types))
    known = code >= 0
    counts_for[np.flatnonzero(known), code[known]] = 1.0
    if weights is not None:
        given = np.isfinite(weights).all(axis=1)
        counts_for[given] = weights[given]
    counts_for[novel] = 0.0
    return counts_for


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
    weights: np.ndarray | None = None,
    sure_parent: np.ndarray | None = None,
) -> tuple[dict[str, Any], pd.DataFrame]:
    """Scorecard parts (point estimate + bootstrap replicates) for one population of cells.

    ``weights``: composition weights (:func:`_counts_for`). ``sure_parent`` (bool per cell): sure only of
    the parent type; such cells count as mapped in ``identity``, in no type's similarity or programme.
    """
    n = len(labels)
    classes = ref.classes
    w = bootstrap_weights(n, n_bootstrap, seed)
    w_all = np.vstack([np.ones(n), w])  # row 0 = point estimate
    code = pd.Categorical(labels, categories=classes).codes
    conf_code = np.where(confident & (code >= 0), code, -1)
    sel = conf_code >= 0
    mapped_sure = sel | (sure_parent & ~novel if sure_parent is not None else False)
    identity_raw = (w_all @ mapped_sure.astype(float)) / max(n, 1)
    # calibrated: 1 = as large a confidently mapped share as held-out in vivo reference cells reach
    identity = np.minimum(1.0, identity_raw / max(getattr(ref, "identity_null", 1.0), 1e-9))
    type_counts = w_all @ _counts_for(code, novel, weights, len(classes))  # (B+1) x types
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

    sim_t = _similarity_per_type(x, w_all, conf_code, ref, exclude_donor=exclude_donor)
    counts_for_weight = np.where(np.isfinite(sim_t), type_counts, 0.0)
    tot = counts_for_weight.sum(axis=1)
    similarity = np.where(
        tot > 0, np.nansum(np.nan_to_num(sim_t) * counts_for_weight, axis=1) / np.where(tot > 0, tot, 1), 0.0
    )
    programme = _programme_completeness(x, w_all, conf_code, ref)
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
                "n_cells": round(float(type_counts[0, j])),
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
    """The reference's HSC type (the one rule of :func:`hscseq._labels.hsc_label`)."""
    return shared_hsc_label(classes, hsc_label)


def _donor_column(adata: ad.AnnData, ref_mask: np.ndarray) -> np.ndarray:
    """Donor of every cell (the one rule of :func:`hscseq._labels.donor_key`; ``"reference"`` without one)."""
    key = donor_key(adata.obs, ref_mask)
    return adata.obs[key].astype(str).to_numpy() if key else np.full(adata.n_obs, "reference")


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
    first += ["reference_novel_share", "programme_source", "closest_stage", "closest_stage_share"]
    first += ["confounded"]
    return [c for c in first if c in table] + [c for c in table if c not in first]


def _score_population_pair(
    x,
    x_all,
    idx,
    pred,
    confident,
    novel,
    ref_sim,
    ref_prog,
    *,
    n_bootstrap,
    seed,
    stage,
    exclude_donor=None,
    weights=None,
    sure_parent=None,
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
        weights=weights[idx] if weights is not None else None,
        sure_parent=sure_parent[idx] if sure_parent is not None else None,
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
