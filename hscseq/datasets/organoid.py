"""Human bone-marrow organoids simulated from the shipped HematoMap profiles (issue #15; own RNG streams)."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from hscseq.datasets.genes import _read_table
from hscseq.datasets.organoid_plan import OrganoidSpec
from hscseq.datasets.simulator import _barcodes

logger = logging.getLogger(__name__)

#: Endothelial genes the off-reference ``endothelial_like`` cells express (most are absent from the profiles).
ENDOTHELIAL_GENES = (
    "CDH5",
    "PECAM1",
    "KDR",
    "SOX17",
    "TIE1",
    "TEK",
    "EMCN",
    "ESAM",
    "VWF",
    "EGFL7",
    "CD93",
    "ENG",
    "FLT1",
    "SOX7",
    "CLDN5",
    "PLVAP",
    "RAMP2",
    "AQP1",
)
_HUMAN_MITO = (
    "MT-ND1",
    "MT-ND2",
    "MT-CO1",
    "MT-CO2",
    "MT-ATP8",
    "MT-ATP6",
    "MT-CO3",
    "MT-ND3",
    "MT-ND4L",
    "MT-ND4",
    "MT-ND5",
    "MT-ND6",
    "MT-CYB",
)


#: Share of the stromal profile in the off-reference ``endothelial_like`` state (the rest is a gene-shuffled
#: profile). README reports how often the profile reference calls such cells novel at several shares.
NOVEL_STROMAL_SHARE = 0.0


def _profile_programmes(
    seed: int, novel_stromal_share: float = NOVEL_STROMAL_SHARE
) -> tuple[list[str], np.ndarray, list[str]]:
    """Gene universe (profile genes, endothelial extras, mito) and per-type expression shares."""
    from hscseq.fidelity import load_hematomap

    prof = load_hematomap()
    extra = [g for g in ENDOTHELIAL_GENES if g not in prof.index]
    genes = [*prof.index, *extra, *_HUMAN_MITO]
    types = [*prof.columns, "endothelial_like"]
    n_prof = len(prof.index)
    shares = np.zeros((len(types), len(genes)))
    base = prof.to_numpy().T / prof.to_numpy().sum(axis=0)[:, None]
    shares[: len(prof.columns), :n_prof] = base
    # off-reference state: part stromal profile, part gene-shuffled profile (a pattern no reference type has),
    # plus high endothelial genes
    rng = np.random.default_rng([seed, 15, 2])
    stromal = base[list(prof.columns).index("Stromal")]
    w = novel_stromal_share
    shares[-1, :n_prof] = w * stromal + (1 - w) * stromal[rng.permutation(n_prof)]
    endo = [genes.index(g) for g in ENDOTHELIAL_GENES]
    shares[-1, endo] = rng.uniform(0.002, 0.006, size=len(endo))
    shares[:, n_prof + len(extra) :] = 0.0
    shares /= shares.sum(axis=1, keepdims=True)
    # mitochondrial reads: ~4% of a healthy cell's counts
    mito = np.arange(len(genes) - len(_HUMAN_MITO), len(genes))
    shares *= 0.96
    shares[:, mito] = 0.04 / len(mito)
    return genes, shares, types


def _simulate_organoid(
    spec: OrganoidSpec, genes: list[str], shares: np.ndarray, types: list[str], theta: np.ndarray, rng
) -> ad.AnnData:
    names = list(spec.composition)
    frac = np.array([spec.composition[t] for t in names], dtype=float)
    counts_per_type = rng.multinomial(spec.n_cells, frac / frac.sum())
    cell_types = np.repeat(names, counts_per_type)
    n, n_genes = len(cell_types), len(genes)
    mito = np.arange(n_genes - len(_HUMAN_MITO), n_genes)
    logshift = np.zeros(n_genes)
    hit = rng.choice(n_genes - len(mito), size=(n_genes - len(mito)) // 10, replace=False)
    logshift[hit] = rng.normal(0.0, spec.perturbation, size=len(hit))
    logshift += rng.normal(0.0, 0.2, size=n_genes)  # the organoid's batch effect
    low_quality = rng.random(n) < spec.low_quality_rate
    libsize = np.exp(rng.normal(np.log(spec.median_umis), 0.35, size=n))
    libsize[low_quality] *= rng.uniform(0.15, 0.35, size=low_quality.sum())
    prob = shares[[types.index(t) for t in cell_types]] * np.exp(logshift)[None, :]
    prob[np.ix_(np.flatnonzero(low_quality), mito)] *= rng.uniform(6.0, 12.0, size=(low_quality.sum(), 1))
    prob /= prob.sum(axis=1, keepdims=True)
    mu = prob * libsize[:, None]
    lam = rng.gamma(shape=theta[None, :], scale=mu / theta[None, :])
    counts = sp.csr_matrix(rng.poisson(lam).astype(np.float32))
    is_doublet = np.zeros(n, dtype=bool)
    n_doublets = round(spec.doublet_rate * n)
    if n_doublets:
        first = rng.choice(np.flatnonzero(~low_quality), size=n_doublets, replace=False)
        partner = rng.choice(np.flatnonzero(~low_quality), size=n_doublets)
        counts = counts.tolil()
        for i, j in zip(first, partner, strict=True):
            counts[i] = counts[i] + counts[j]
        counts = counts.tocsr()
        is_doublet[first] = True
    obs = pd.DataFrame(
        {
            "true_cell_type": cell_types,
            "is_doublet": is_doublet,
            "is_low_quality": low_quality,
            "is_offtarget": cell_types == "endothelial_like",
            "sample": spec.sample,
            "condition": "organoid",
            "batch": spec.sample,
            "timepoint": spec.timepoint,
            "replicate": spec.replicate,
            "species": "human",
        },
        index=_barcodes(n, rng),
    )
    order = rng.permutation(n)
    return ad.AnnData(X=counts[order], obs=obs.iloc[order].copy(), var=pd.DataFrame(index=genes))


def simulate_organoids(
    specs: Sequence[OrganoidSpec], *, seed: int = 0, novel_stromal_share: float = NOVEL_STROMAL_SHARE
) -> dict[str, ad.AnnData]:
    """Simulate human organoid samples from the HematoMap profiles (truth in obs, plan in uns).

    Each cell's expected counts are its type's profile (normalised to shares of the library) times a
    log-normal library size, with a per-organoid perturbation and batch effect; counts are negative-binomial.
    Low-quality cells (small library, high mitochondrial share) and doublets are planted as in
    :func:`simulate`. The streams are separate from :func:`simulate`'s (the engineered demo is unchanged).
    """
    genes, shares, types = _profile_programmes(seed, novel_stromal_share)
    theta = np.exp(np.random.default_rng([seed, 15, 3]).normal(1.0, 0.5, size=len(genes)))
    out = {}
    for k, spec in enumerate(specs):
        adata = _simulate_organoid(spec, genes, shares, types, theta, np.random.default_rng([seed, 15, 4, k]))
        table = _read_table("human_symbol_ensembl_10x.tsv").drop_duplicates("gene_symbol")
        ids = table.set_index("gene_symbol")["ensembl_gene_id"]
        adata.var["gene_ids"] = ids.reindex(adata.var_names).fillna("").to_numpy()
        adata.var["feature_types"] = "Gene Expression"
        adata.uns["simulation"] = {
            "seed": seed,
            "composition": dict(spec.composition),
            "perturbation": spec.perturbation,
        }
        out[spec.sample] = adata
        logger.info("simulated %s: %d cells x %d genes", spec.sample, adata.n_obs, adata.n_vars)
    return out
