"""Seeded simulator of mission-shaped haematopoiesis data with ground truth.

One generator feeds the bundled demo, every unit test and the benchmarks (tiny to 250k+ cells). It makes:

- an in vivo mouse bone-marrow reference (HSC, MPP, LMPP, GMP, MEP, MkP, erythroid, monocyte, neutrophil,
  B, T/NK) from several donors, each its own batch with a batch effect;
- engineered (ESC-derived) HSC precursors: HSC-like cells whose native HSC programme is incomplete (planted
  missing genes), plus off-target states absent from the reference (hemogenic-endothelium-like, primitive /
  yolk-sac-like erythroid expressing embryonic globins);
- organoid output at several timepoints with a known, skewed lineage composition;

with real gene symbols (mouse MGI; human through MGI one-to-one orthologs), cell-type programmes built from
curated marker genes, negative-binomial counts, mitochondrial genes, low-quality cells and doublets.
The truth lives in ``obs``: ``true_cell_type``, ``is_doublet``, ``is_low_quality``, ``is_offtarget``,
``true_phase``; the programmes in ``uns["simulation"]``.

Run ``python -m hscseq.datasets demo resources/demo`` to regenerate the bundled demo bit-identically.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import anndata as ad
import h5py
import numpy as np
import pandas as pd
import scipy.sparse as sp

from hscseq._utils import atomic_path, resource_path

logger = logging.getLogger(__name__)

#: Curated marker programmes (mouse MGI symbols). Sources: Giladi et al. 2018 and Baccin et al. 2019 (via the
#: HemaScopeR lineage lists), Wilson et al. 2015 MolO genes (hscScore), Paul et al. 2015 cluster markers,
#: Calvanese et al. 2022 (HSC, hemogenic endothelium) and classic marker genes of each lineage.
PROGRAMMES: dict[str, tuple[str, ...]] = {
    "HSC": (
        "Procr",
        "Hlf",
        "Mecom",
        "Mllt3",
        "Hoxb5",
        "Slamf1",
        "Fgd5",
        "Ly6a",
        "Vwf",
        "Meis1",
        "Gata2",
        "Ctnnal1",
        "Esam",
        "Sult1a1",
        "Cldn10",
        "Ramp2",
        "Cdkn1c",
        "Sox18",
        "Mpl",
        "Bmi1",
        "Hoxa9",
        "Spink2",
        "Pdzk1ip1",
        "Txnip",
    ),
    "MPP": ("Cd34", "Kit", "Flt3", "Mki67", "Calr", "Cdk6", "Hopx", "Ifitm1"),
    "LMPP": ("Dntt", "Satb1", "Il7r", "Flt3", "Cd7", "Blnk", "Lsp1"),
    "GMP": ("Mpo", "Elane", "Ctsg", "Prtn3", "Ms4a3", "Cebpa", "Cebpe", "Ms4a6c", "Fcgr3"),
    "MEP": ("Gata1", "Klf1", "Zfpm1", "Car1", "Car2", "Cd36", "Nfe2", "Tal1"),
    "MkP": ("Pf4", "Itga2b", "Gp9", "Gp1bb", "Ppbp", "Gp5", "Treml1", "Clec1b"),
    "erythroid": ("Hbb-bs", "Hba-a1", "Alas2", "Gypa", "Tfrc", "Epor", "Slc4a1", "Rhd", "Spta1", "Add2"),
    "monocyte": ("Csf1r", "Lyz2", "Ly6c2", "Cx3cr1", "Ccr2", "Fcgr1", "Irf8", "Ms4a7", "Emr1", "Cd14"),
    "neutrophil": ("Ltf", "Camp", "Ngp", "S100a8", "S100a9", "Lcn2", "Chil3", "Mmp8", "Cxcr2"),
    "B": ("Cd79a", "Cd79b", "Cd19", "Ebf1", "Pax5", "Vpreb3", "Ms4a1", "Igll1", "Blk"),
    "T_NK": ("Cd3e", "Cd3g", "Nkg7", "Gzma", "Klrd1", "Ccl5", "Il2rb", "Cd3d", "Lck"),
    "hemogenic_endothelium": (
        "Cdh5",
        "Pecam1",
        "Kdr",
        "Sox17",
        "Tie1",
        "Emcn",
        "Gja5",
        "Sox7",
        "Flt1",
        "Egfl7",
        "Cd93",
        "Eng",
    ),
    "primitive_erythroid": (
        "Hbb-y",
        "Hba-x",
        "Hbb-bh1",
        "Gata1",
        "Klf1",
        "Alas2",
        "Gypa",
        "Lin28b",
        "Igf2bp1",
    ),
}

#: Cell types as weighted mixtures of programmes (the hierarchy shares programmes with its neighbours).
CELL_TYPES: dict[str, dict[str, float]] = {
    "HSC": {"HSC": 1.0, "MPP": 0.3},
    "MPP": {"MPP": 1.0, "HSC": 0.35},
    "LMPP": {"LMPP": 1.0, "MPP": 0.5},
    "GMP": {"GMP": 1.0, "MPP": 0.3},
    "MEP": {"MEP": 1.0, "MPP": 0.25, "erythroid": 0.2},
    "MkP": {"MkP": 1.0, "MEP": 0.35, "HSC": 0.15},
    "erythroid": {"erythroid": 1.0, "MEP": 0.4},
    "monocyte": {"monocyte": 1.0, "GMP": 0.2},
    "neutrophil": {"neutrophil": 1.0, "GMP": 0.3},
    "B": {"B": 1.0, "LMPP": 0.15},
    "T_NK": {"T_NK": 1.0},
    "hemogenic_endothelium": {"hemogenic_endothelium": 1.0, "HSC": 0.15},
    "primitive_erythroid": {"primitive_erythroid": 1.0, "MEP": 0.2},
}

#: States that an adult bone-marrow reference does not contain.
OFFTARGET_TYPES = ("hemogenic_endothelium", "primitive_erythroid")

#: In vivo bone-marrow composition used for reference donors (fractions sum to 1).
REFERENCE_COMPOSITION: dict[str, float] = {
    "HSC": 0.07,
    "MPP": 0.08,
    "LMPP": 0.07,
    "GMP": 0.10,
    "MEP": 0.08,
    "MkP": 0.05,
    "erythroid": 0.16,
    "monocyte": 0.12,
    "neutrophil": 0.14,
    "B": 0.08,
    "T_NK": 0.05,
}

#: Engineered precursors: HSC-like (incomplete programme), some progenitors, and off-target states.
ENGINEERED_COMPOSITION: dict[str, float] = {
    "HSC": 0.40,
    "MPP": 0.12,
    "GMP": 0.08,
    "hemogenic_endothelium": 0.22,
    "primitive_erythroid": 0.18,
}

#: HSC genes switched off in engineered HSC-like cells (the "missing programme" planted in the demo).
DEFAULT_MISSING_HSC_GENES: tuple[str, ...] = ("Hlf", "Mecom", "Procr", "Fgd5", "Hoxb5")

#: Organoid output per timepoint: myeloid-skewed, no lymphoid output, erythroid fading with time.
ORGANOID_COMPOSITIONS: dict[str, dict[str, float]] = {
    "week2": {
        "HSC": 0.06,
        "MPP": 0.14,
        "GMP": 0.16,
        "MEP": 0.08,
        "MkP": 0.04,
        "erythroid": 0.16,
        "monocyte": 0.22,
        "neutrophil": 0.14,
    },
    "week4": {
        "HSC": 0.03,
        "MPP": 0.07,
        "GMP": 0.12,
        "MEP": 0.05,
        "MkP": 0.03,
        "erythroid": 0.08,
        "monocyte": 0.36,
        "neutrophil": 0.26,
    },
}

_CYCLING_SHARE = {"HSC": 0.1, "hemogenic_endothelium": 0.15}  # others: 0.45 of cells in S or G2M
_MITO_GENES = (
    "mt-Nd1",
    "mt-Nd2",
    "mt-Co1",
    "mt-Co2",
    "mt-Atp8",
    "mt-Atp6",
    "mt-Co3",
    "mt-Nd3",
    "mt-Nd4l",
    "mt-Nd4",
    "mt-Nd5",
    "mt-Nd6",
    "mt-Cytb",
)


@dataclass(frozen=True)
class SampleSpec:
    """What to simulate for one sample.

    ``composition`` maps cell types of :data:`CELL_TYPES` to fractions. ``perturbation`` (0 = native) moves
    every non-off-target cell away from its native programme: programme weights shrink by
    ``0.6 * perturbation`` and a sample-specific set of genes gets aberrant expression scaled by it.
    ``hsc_programme_strength`` scales the HSC programme of HSC cells, and ``missing_hsc_genes`` are left
    at baseline in them (engineered cells).
    """

    sample: str
    condition: str
    n_cells: int
    composition: Mapping[str, float]
    batch: str
    species: str = "mouse"
    donor: str = ""
    timepoint: str = ""
    perturbation: float = 0.0
    hsc_programme_strength: float = 1.0
    missing_hsc_genes: tuple[str, ...] = ()
    doublet_rate: float = 0.04
    low_quality_rate: float = 0.04
    median_umis: float = 3000.0
    extra: Mapping[str, str] = field(default_factory=dict)


# --------------------------------------------------------------------------------------------------------
# gene universe


def _read_table(name: str) -> pd.DataFrame:
    return pd.read_csv(resource_path("genes", name), sep="\t", comment="#", dtype=str)


def mouse_to_human_one2one() -> dict[str, str]:
    """MGI one-to-one mouse -> human symbol map (mitochondrial genes mapped to the 10x ``MT-`` names)."""
    table = _read_table("mouse_human_orthologs_mgi_one2one.tsv")
    mapping = dict(zip(table["mouse_symbol"], table["human_symbol"], strict=True))
    for gene in _MITO_GENES:
        mapping[gene] = "MT-" + gene[3:].upper()
    return mapping


def gene_universe(n_genes: int, *, seed: int = 0) -> list[str]:
    """Programme, cell-cycle, mitochondrial, ribosomal genes, then seeded background genes (mouse)."""
    mouse = _read_table("mouse_symbol_ensembl_10x.tsv")["gene_symbol"]
    known = set(mouse)
    one2one = mouse_to_human_one2one()
    cc = pd.read_csv(resource_path("genesets", "cell_cycle_mouse_hemascoper.tsv"), sep="\t", comment="#")
    genes: list[str] = []
    for programme in PROGRAMMES.values():
        genes.extend(programme)
    genes.extend(cc["Gene"])
    genes.extend(_MITO_GENES)
    ribo = sorted(g for g in known if g.startswith(("Rps", "Rpl")) and g in one2one and "-" not in g)
    genes.extend(ribo[:40])
    genes = [g for g in dict.fromkeys(genes) if g in known]
    if len(genes) > n_genes:
        msg = f"n_genes must be at least {len(genes)} (programme, cell-cycle, mito and ribosomal genes)"
        raise ValueError(msg)
    pool = sorted(
        g
        for g in dict.fromkeys(mouse)
        if g in one2one and g not in set(genes) and not g.startswith(("Gm", "mt-")) and not g.endswith("Rik")
    )
    rng = np.random.default_rng(seed)
    background = rng.choice(pool, size=n_genes - len(genes), replace=False)
    return genes + sorted(background.tolist())


# --------------------------------------------------------------------------------------------------------
# the generative model


@dataclass
class _Model:
    genes: list[str]
    base: np.ndarray  # log baseline expression per gene
    theta: np.ndarray  # NB inverse dispersion per gene
    lfc: dict[str, np.ndarray]  # programme -> per-gene log fold change
    s_idx: np.ndarray
    g2m_idx: np.ndarray
    mito_idx: np.ndarray
    # hooks of the identity (look-alike) scenario; the defaults keep every other simulation unchanged
    type_logmeans: Callable | None = None
    offtarget: tuple[str, ...] = OFFTARGET_TYPES


def _build_model(genes: list[str], seed: int) -> _Model:
    rng = np.random.default_rng([seed, 1])
    n = len(genes)
    index = {g: i for i, g in enumerate(genes)}
    base = rng.normal(-1.2, 1.3, size=n)
    mito_idx = np.array([index[g] for g in _MITO_GENES if g in index])
    base[mito_idx] = rng.normal(2.6, 0.4, size=len(mito_idx))
    ribo_idx = np.array([i for g, i in index.items() if g.startswith(("Rps", "Rpl"))])
    base[ribo_idx] = rng.normal(3.0, 0.5, size=len(ribo_idx))
    theta = np.exp(rng.normal(1.0, 0.5, size=n))
    lfc = {}
    for name, programme in PROGRAMMES.items():
        vec = np.zeros(n)
        idx = [index[g] for g in programme if g in index]
        vec[idx] = rng.uniform(2.5, 4.0, size=len(idx))
        lfc[name] = vec
    programme_idx = sorted({index[g] for p in PROGRAMMES.values() for g in p if g in index})
    base[programme_idx] = rng.normal(-2.0, 0.5, size=len(programme_idx))
    cc = pd.read_csv(resource_path("genesets", "cell_cycle_mouse_hemascoper.tsv"), sep="\t", comment="#")
    s_idx = np.array([index[g] for g in cc.loc[cc["Phase"] == "G1-S", "Gene"] if g in index])
    g2m_idx = np.array([index[g] for g in cc.loc[cc["Phase"] == "G2-M", "Gene"] if g in index])
    return _Model(genes, base, theta, lfc, s_idx, g2m_idx, mito_idx)


def _type_logmeans(
    model: _Model, cell_type: str, spec: SampleSpec, perturbation_lfc: np.ndarray
) -> np.ndarray:
    """Log expression of one cell type in one sample (before batch, cycle and library size)."""
    index = {g: i for i, g in enumerate(model.genes)}
    weights = CELL_TYPES[cell_type]
    shrink = 1.0 if cell_type in OFFTARGET_TYPES else 1.0 - 0.6 * spec.perturbation
    logmean = model.base.copy()
    for programme, weight in weights.items():
        lfc = model.lfc[programme].copy()
        if programme == "HSC" and cell_type == "HSC":
            lfc *= spec.hsc_programme_strength
            for gene in spec.missing_hsc_genes:
                if gene in index:
                    lfc[index[gene]] = 0.0
        logmean += weight * shrink * lfc
    if cell_type not in OFFTARGET_TYPES:
        logmean += perturbation_lfc
    return logmean


def _sample_counts(logmean: np.ndarray, theta: np.ndarray, libsize: np.ndarray, rng) -> sp.csr_matrix:
    """Negative-binomial (gamma-Poisson) counts for cells x genes, returned sparse."""
    prob = np.exp(logmean - logmean.max(axis=1, keepdims=True))
    prob /= prob.sum(axis=1, keepdims=True)
    mu = prob * libsize[:, None]
    lam = rng.gamma(shape=theta[None, :], scale=mu / theta[None, :])
    counts = rng.poisson(lam).astype(np.float32)
    return sp.csr_matrix(counts)


def _simulate_sample(model: _Model, spec: SampleSpec, batch_lfc: np.ndarray, rng) -> ad.AnnData:
    types = list(spec.composition)
    fractions = np.array([spec.composition[t] for t in types], dtype=float)
    fractions /= fractions.sum()
    counts_per_type = np.floor(fractions * spec.n_cells).astype(int)
    counts_per_type[np.argmax(fractions)] += spec.n_cells - counts_per_type.sum()
    cell_types = np.repeat(types, counts_per_type)
    n = len(cell_types)
    n_genes = len(model.genes)
    perturbation_lfc = np.zeros(n_genes)
    if spec.perturbation > 0:
        hit = rng.choice(n_genes, size=max(1, n_genes // 10), replace=False)
        perturbation_lfc[hit] = rng.normal(0.0, 2.0 * spec.perturbation, size=len(hit))

    phase = np.full(n, "G1", dtype=object)
    for t in types:
        sel = np.flatnonzero(cell_types == t)
        cycling = rng.random(len(sel)) < _CYCLING_SHARE.get(t, 0.45)
        s_phase = rng.random(len(sel)) < 0.5
        phase[sel[cycling & s_phase]] = "S"
        phase[sel[cycling & ~s_phase]] = "G2M"

    low_quality = rng.random(n) < spec.low_quality_rate
    libsize = np.exp(rng.normal(np.log(spec.median_umis), 0.35, size=n))
    libsize[low_quality] *= rng.uniform(0.15, 0.35, size=low_quality.sum())

    logmean = np.empty((n, n_genes))
    type_fn = model.type_logmeans or _type_logmeans
    type_means = {t: type_fn(model, t, spec, perturbation_lfc) for t in types}
    for t in types:
        logmean[cell_types == t] = type_means[t]
    logmean += batch_lfc[None, :]
    logmean[np.ix_(phase == "S", model.s_idx)] += 2.0
    logmean[np.ix_(phase == "G2M", model.g2m_idx)] += 2.0
    mito_boost = rng.uniform(1.8, 2.8, size=low_quality.sum())
    logmean[np.ix_(np.flatnonzero(low_quality), model.mito_idx)] += mito_boost[:, None]
    counts = _sample_counts(logmean, model.theta, libsize, rng)

    # doublets: sum of two cells of different types replaces the first
    is_doublet = np.zeros(n, dtype=bool)
    partner_type = np.full(n, "", dtype=object)
    n_doublets = round(spec.doublet_rate * n)
    if n_doublets and len(types) > 1:
        candidates = np.flatnonzero(~low_quality)
        first = rng.choice(candidates, size=n_doublets, replace=False)
        counts = counts.tolil()
        for i in first:
            others = np.flatnonzero((cell_types != cell_types[i]) & ~low_quality)
            j = rng.choice(others)
            counts[i] = counts[i] + counts[j]
            is_doublet[i] = True
            partner_type[i] = cell_types[j]
        counts = counts.tocsr()

    barcodes = _barcodes(n, rng)
    obs = pd.DataFrame(
        {
            "true_cell_type": cell_types,
            "true_phase": phase.astype(str),
            "is_doublet": is_doublet,
            "doublet_partner_type": partner_type.astype(str),
            "is_low_quality": low_quality,
            "is_offtarget": np.isin(cell_types, model.offtarget),
            "sample": spec.sample,
            "condition": spec.condition,
            "batch": spec.batch,
            "donor": spec.donor,
            "timepoint": spec.timepoint,
            **dict(spec.extra),
        },
        index=barcodes,
    )
    order = rng.permutation(n)
    adata = ad.AnnData(X=counts[order], obs=obs.iloc[order].copy(), var=pd.DataFrame(index=model.genes))
    return adata


def _barcodes(n: int, rng) -> list[str]:
    letters = np.array(list("ACGT"))
    seen: set[str] = set()
    out = []
    while len(out) < n:
        code = "".join(rng.choice(letters, size=16)) + "-1"
        if code not in seen:
            seen.add(code)
            out.append(code)
    return out


def _annotate_genes(adata: ad.AnnData, species: str) -> ad.AnnData:
    """Rename to ``species`` symbols (one-to-one orthologs for human) and add Ensembl IDs."""
    if species == "human":
        mapping = mouse_to_human_one2one()
        keep = [g for g in adata.var_names if g in mapping]
        adata = adata[:, keep].copy()
        adata.var_names = [mapping[g] for g in keep]
        table = _read_table("human_symbol_ensembl_10x.tsv")
    elif species == "mouse":
        table = _read_table("mouse_symbol_ensembl_10x.tsv")
    else:
        msg = f"species must be 'mouse' or 'human', not {species!r}"
        raise ValueError(msg)
    ids = table.drop_duplicates("gene_symbol").set_index("gene_symbol")["ensembl_gene_id"]
    adata.var["gene_ids"] = ids.reindex(adata.var_names).fillna("").to_numpy()
    adata.var["feature_types"] = "Gene Expression"
    return adata


def simulate(
    specs: Sequence[SampleSpec],
    *,
    n_genes: int = 2000,
    batch_effect: float = 0.35,
    seed: int = 0,
    model_builder: Callable[[list[str], int], _Model] | None = None,
) -> dict[str, ad.AnnData]:
    """Simulate samples with ground truth.

    Parameters
    ----------
    specs
        One :class:`SampleSpec` per sample.
    n_genes
        Size of the gene universe (programme, cell-cycle, mitochondrial, ribosomal and background genes).
    batch_effect
        Standard deviation of the per-batch, per-gene log fold change.
    seed
        Seed of every random draw; the same seed gives the same data.
    model_builder
        Builds the generative model from the gene universe and the seed (default: the standard model; the
        identity scenario, :func:`simulate_identity`, adds genes and cell types).

    Returns
    -------
    One AnnData of raw counts per sample (in the sample's species), keyed by sample name. Truth in ``obs``;
    the programmes, compositions and missing genes in ``uns["simulation"]``.
    """
    genes = gene_universe(n_genes, seed=seed)
    model = (model_builder or _build_model)(genes, seed)
    batches = sorted({s.batch for s in specs})
    batch_rng = np.random.default_rng([seed, 2])
    batch_lfc = {b: batch_rng.normal(0.0, batch_effect, size=len(genes)) for b in batches}
    if len(model.genes) > len(genes):  # genes added by a model builder get their own batch draws
        extra_rng = np.random.default_rng([seed, 15])
        n_extra = len(model.genes) - len(genes)
        batch_lfc = {
            b: np.r_[v, extra_rng.normal(0.0, batch_effect, size=n_extra)] for b, v in batch_lfc.items()
        }
    out = {}
    for k, spec in enumerate(specs):
        rng = np.random.default_rng([seed, 3, k])
        adata = _simulate_sample(model, spec, batch_lfc[spec.batch], rng)
        adata = _annotate_genes(adata, spec.species)
        adata.obs["species"] = spec.species
        adata.uns["simulation"] = {
            "seed": seed,
            "composition": dict(spec.composition),
            "missing_hsc_genes": list(spec.missing_hsc_genes),
            "hsc_programme_strength": spec.hsc_programme_strength,
            "perturbation": spec.perturbation,
        }
        out[spec.sample] = adata
        logger.info("simulated %s: %d cells x %d genes", spec.sample, adata.n_obs, adata.n_vars)
    return out


def reference_specs(n_cells: int = 1500, *, n_donors: int = 2, species: str = "mouse") -> list[SampleSpec]:
    """In vivo bone-marrow donors, one batch each."""
    return [
        SampleSpec(
            sample=f"invivo_donor{i + 1}",
            condition="in_vivo",
            n_cells=n_cells,
            composition=REFERENCE_COMPOSITION,
            batch=f"donor{i + 1}",
            donor=f"donor{i + 1}",
            species=species,
        )
        for i in range(n_donors)
    ]


def engineered_spec(
    n_cells: int = 1200,
    *,
    species: str = "mouse",
    sample: str = "engineered_7TF",
    missing_hsc_genes: Sequence[str] = DEFAULT_MISSING_HSC_GENES,
    hsc_programme_strength: float = 0.8,
    perturbation: float = 0.0,
) -> SampleSpec:
    """ESC-derived HSC precursors with an incomplete HSC programme and off-target states."""
    return SampleSpec(
        sample=sample,
        condition="engineered",
        n_cells=n_cells,
        composition=ENGINEERED_COMPOSITION,
        batch=sample,
        species=species,
        missing_hsc_genes=tuple(missing_hsc_genes),
        hsc_programme_strength=hsc_programme_strength,
        perturbation=perturbation,
    )


def organoid_specs(n_cells: int = 900, *, species: str = "human") -> list[SampleSpec]:
    """Bone-marrow organoid output at each timepoint of :data:`ORGANOID_COMPOSITIONS`."""
    return [
        SampleSpec(
            sample=f"organoid_{tp}",
            condition="organoid",
            n_cells=n_cells,
            composition=comp,
            batch=f"organoid_{tp}",
            timepoint=tp,
            species=species,
            perturbation=0.15,
        )
        for tp, comp in ORGANOID_COMPOSITIONS.items()
    ]


def demo(*, scale: float = 1.0, seed: int = 0, organoid_species: str = "human") -> dict[str, ad.AnnData]:
    """The demo scenario: two mouse in vivo donors, mouse engineered precursors, organoid timepoints.

    ``scale`` multiplies every sample's cell number (tests use small scales). ``organoid_species`` is the
    species of the organoid samples (human by default, as organoid labs grow human cells).
    """

    def n(x: int) -> int:
        return max(60, round(x * scale))

    specs = [
        *reference_specs(n(1500)),
        engineered_spec(n(1200)),
        *organoid_specs(n(900), species=organoid_species),
    ]
    return simulate(specs, seed=seed)


# --------------------------------------------------------------------------------------------------------
# identity scenario (issue #13): endothelial and EHT-stalled look-alikes, a few true pre-HSCs, and committed
# progenitors carrying part of the HSC programme. Only simulate_identity() builds it (own model builder,
# extra genes); the demo and every other simulation keep their gene universe and random streams unchanged.

#: Extra programmes of the identity scenario (mouse MGI symbols; sources: resources/signatures/PROVENANCE.md,
#: section "identity scenario of the simulator"). Deliberately not identical to the scoring lists.
IDENTITY_PROGRAMMES: dict[str, tuple[str, ...]] = {
    "haematopoietic": ("Ptprc", "Spn", "Myb", "Gfi1b", "Ikzf1", "Laptm5", "Coro1a", "Cd53"),
    "endothelial_extra": ("Cldn5", "Dll4", "Hey1", "Gja4", "Plvap", "Aplnr", "Nrp2"),
    "eht": ("Runx1", "Gfi1", "Cd44", "Itga2b", "Kit"),
}

#: Genes of the simulated HSC programme that endothelium also expresses (sources in PROVENANCE.md).
SHARED_HSC_ENDOTHELIAL: tuple[str, ...] = (
    "Procr",
    "Esam",
    "Vwf",
    "Ly6a",
    "Mecom",
    "Gata2",
    "Fgd5",
    "Sox18",
    "Ramp2",
    "Hoxb5",
    "Meis1",
)

#: New cell types of the identity scenario: weighted programme mixtures (gene-level rules in
#: :func:`_identity_logmeans`).
IDENTITY_CELL_TYPES: dict[str, dict[str, float]] = {
    "endothelial_lookalike": {"hemogenic_endothelium": 1.0, "endothelial_extra": 1.0, "HSC": 0.15},
    "eht_stalled": {"hemogenic_endothelium": 1.0, "endothelial_extra": 0.7, "HSC": 0.15},
    "pre_HSC": {
        "HSC": 1.0,
        "eht": 1.0,
        "hemogenic_endothelium": 0.8,
        "endothelial_extra": 0.8,
        "haematopoietic": 0.6,
    },
    "committed_GMP": {"GMP": 1.0, "MPP": 0.3, "haematopoietic": 1.0},
    "committed_ery": {"MEP": 1.0, "erythroid": 0.6, "haematopoietic": 1.0},
}

#: Look-alikes (ground truth "not an HSC although HSC genes are on").
LOOKALIKE_TYPES: tuple[str, ...] = ("endothelial_lookalike", "eht_stalled", "committed_GMP", "committed_ery")

#: Composition of the engineered look-alike sample.
IDENTITY_COMPOSITION: dict[str, float] = {
    "HSC": 0.25,
    "endothelial_lookalike": 0.2,
    "eht_stalled": 0.15,
    "pre_HSC": 0.1,
    "committed_GMP": 0.15,
    "committed_ery": 0.15,
}


def _identity_model(genes: list[str], seed: int) -> _Model:
    """The standard model (same draws for the standard genes) plus the identity-scenario genes."""
    model = _build_model(genes, seed)
    known = set(genes)
    extra = [g for g in dict.fromkeys(g for p in IDENTITY_PROGRAMMES.values() for g in p) if g not in known]
    rng = np.random.default_rng([seed, 13])
    all_genes = genes + extra
    index = {g: i for i, g in enumerate(all_genes)}
    base = np.r_[model.base, rng.normal(-2.0, 0.5, size=len(extra))]
    theta = np.r_[model.theta, np.exp(rng.normal(1.0, 0.5, size=len(extra)))]
    lfc = {k: np.r_[v, np.zeros(len(extra))] for k, v in model.lfc.items()}
    for name, programme in IDENTITY_PROGRAMMES.items():
        vec = np.zeros(len(all_genes))
        vec[[index[g] for g in programme]] = rng.uniform(2.5, 4.0, size=len(programme))
        lfc[name] = vec
    return _Model(
        all_genes,
        base,
        theta,
        lfc,
        model.s_idx,
        model.g2m_idx,
        model.mito_idx,
        type_logmeans=_identity_logmeans,
        offtarget=(*OFFTARGET_TYPES, *LOOKALIKE_TYPES),
    )


def _identity_logmeans(
    model: _Model, cell_type: str, spec: SampleSpec, perturbation_lfc: np.ndarray
) -> np.ndarray:
    """Log means of the identity scenario.

    Blood cell types get the haematopoietic programme and HSCs Runx1 at HSC-programme level. Endothelial and
    EHT-stalled look-alikes express the shared HSC/endothelial genes at the native HSC level and Runx1/Cd34 at
    half of it (EHT-stalled cells also Gfi1 at half); committed progenitors carry every second gene of the HSC
    programme at HSC level on top of their lineage programme.
    """
    index = {g: i for i, g in enumerate(model.genes)}
    hsc = model.lfc["HSC"]
    level = float(hsc[hsc > 0].mean())
    if cell_type in CELL_TYPES:
        logmean = _type_logmeans(model, cell_type, spec, perturbation_lfc)
        if cell_type != "hemogenic_endothelium":
            logmean += model.lfc["haematopoietic"]
        if cell_type == "HSC":
            logmean[index["Runx1"]] += level
        return logmean
    logmean = model.base.copy()
    for programme, weight in IDENTITY_CELL_TYPES[cell_type].items():
        logmean += weight * model.lfc[programme]
    if cell_type in ("endothelial_lookalike", "eht_stalled"):
        for gene in SHARED_HSC_ENDOTHELIAL:
            i = index[gene]
            logmean[i] = max(logmean[i], model.base[i] + hsc[i])
        half = ("Runx1", "Cd34", "Gfi1") if cell_type == "eht_stalled" else ("Runx1", "Cd34")
        for gene in half:
            logmean[index[gene]] = model.base[index[gene]] + 0.5 * level
    elif cell_type.startswith("committed_"):
        for gene in PROGRAMMES["HSC"][::2]:
            i = index[gene]
            logmean[i] = max(logmean[i], model.base[i] + hsc[i])
    return logmean


def identity_specs(n_cells: int = 800, *, n_reference: int = 600, species: str = "mouse") -> list[SampleSpec]:
    """Two in vivo reference donors (calibration) and an engineered sample of :data:`IDENTITY_COMPOSITION`.

    Engineered HSCs carry the incomplete programme of :func:`engineered_spec` (strength 0.8, the
    :data:`DEFAULT_MISSING_HSC_GENES` off), as in the demo.
    """
    return [
        *reference_specs(n_reference, species=species),
        SampleSpec(
            sample="engineered_lookalikes",
            condition="engineered",
            n_cells=n_cells,
            composition=IDENTITY_COMPOSITION,
            batch="engineered_lookalikes",
            species=species,
            missing_hsc_genes=DEFAULT_MISSING_HSC_GENES,
        ),
    ]


def simulate_identity(
    specs: Sequence[SampleSpec] | None = None, *, n_genes: int = 2000, seed: int = 0
) -> dict[str, ad.AnnData]:
    """Simulate the identity scenario (default :func:`identity_specs`); truth in ``obs['true_cell_type']``."""
    return simulate(
        identity_specs() if specs is None else specs,
        n_genes=n_genes,
        seed=seed,
        model_builder=_identity_model,
    )


# --------------------------------------------------------------------------------------------------------
# plate-based sample (issue #13): full-length plate data as labs export it - few cells, a whole transcriptome,
# Ensembl IDs mixed with symbols, ERCC spike-ins and non-integer expected counts (RSEM / Salmon)


def plate_sample(
    n_cells: int = 60,
    *,
    n_genes: int = 25_000,
    n_ercc: int = 92,
    id_share: float = 0.3,
    seed: int = 0,
    sample: str = "plate_hsc",
    condition: str = "engineered",
    composition: Mapping[str, float] | None = None,
) -> ad.AnnData:
    """A plate-based mouse sample (default HSC, MPP, hemogenic endothelium) of ``n_cells`` x ``n_genes``.

    The biology comes from :func:`simulate` (2,000 genes, one cell per well: no doublets); the rest of the
    transcriptome is filled with sparse low counts, ``id_share`` of the gene names are replaced by their
    Ensembl IDs, ``n_ercc`` ERCC spike-ins (``ERCC-00002`` ...) are appended, and counts become expected
    counts (``counts * U(0.8, 1.2)``, non-integer) at plate read depth (median 200,000).
    """
    spec = SampleSpec(
        sample=sample,
        condition=condition,
        n_cells=n_cells,
        composition=composition or {"HSC": 0.5, "MPP": 0.3, "hemogenic_endothelium": 0.2},
        batch=sample,
        doublet_rate=0.0,
        low_quality_rate=0.05,
        median_umis=200_000.0,
    )
    core = simulate([spec], seed=seed)[sample]
    rng = np.random.default_rng([seed, 21])
    table = _read_table("mouse_symbol_ensembl_10x.tsv").drop_duplicates("gene_symbol")
    table = table[~table["gene_symbol"].isin(core.var_names)]
    n_fill = max(0, n_genes - core.n_vars)
    fill = table.iloc[np.sort(rng.choice(len(table), size=min(n_fill, len(table)), replace=False))]
    lam = np.exp(rng.normal(-1.0, 1.5, size=len(fill))) * 20.0
    fill_counts = sp.csr_matrix(
        rng.poisson(lam[None, :] * rng.random((n_cells, 1)) * (rng.random((n_cells, len(fill))) < 0.2))
    )
    ercc = [f"ERCC-{i:05d}" for i in sorted(rng.choice(np.arange(2, 172), size=n_ercc, replace=False))]
    ercc_counts = sp.csr_matrix(rng.poisson(50.0, size=(n_cells, n_ercc)))
    X = sp.hstack([core.X, fill_counts, ercc_counts]).tocsr().astype(np.float64)
    X.data = X.data * rng.uniform(0.8, 1.2, size=X.nnz)
    symbols = list(core.var_names) + fill["gene_symbol"].tolist()
    ids = list(core.var["gene_ids"]) + fill["ensembl_gene_id"].tolist()
    as_id = rng.random(len(symbols)) < id_share
    names = [i if (a and i) else s for s, i, a in zip(symbols, ids, as_id, strict=True)] + ercc
    out = ad.AnnData(X=X.astype(np.float32), obs=core.obs.copy(), var=pd.DataFrame(index=names))
    out.var["gene_ids"] = [*ids, *ercc]
    out.uns["simulation"] = {**core.uns["simulation"], "technology": "plate", "n_ercc": n_ercc}
    return out


# --------------------------------------------------------------------------------------------------------
# writers of real input formats (used for the demo and for the ingest test fixtures)


def _gzip_bytes(data: bytes) -> bytes:
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0, filename="") as fh:
        fh.write(data)
    return buf.getvalue()


def write_10x_h5(adata: ad.AnnData, path: str | Path, *, genome: str = "mm10") -> None:
    """Write raw counts as a Cell Ranger v3 ``filtered_feature_bc_matrix.h5``."""
    matrix = sp.csc_matrix(adata.X.T).astype(np.int32)  # genes x cells, columns = cells
    with atomic_path(path) as tmp, h5py.File(tmp, "w", track_order=False) as f:
        g = f.create_group("matrix")
        g.create_dataset("barcodes", data=np.array(adata.obs_names, dtype="S"))
        g.create_dataset("data", data=matrix.data, compression="gzip", compression_opts=4)
        g.create_dataset(
            "indices", data=matrix.indices.astype(np.int64), compression="gzip", compression_opts=4
        )
        g.create_dataset("indptr", data=matrix.indptr.astype(np.int64))
        g.create_dataset("shape", data=np.array(matrix.shape, dtype=np.int32))
        feat = g.create_group("features")
        n = adata.n_vars
        feat.create_dataset("id", data=np.array(_gene_ids(adata), dtype="S"))
        feat.create_dataset("name", data=np.array(adata.var_names, dtype="S"))
        feat.create_dataset("feature_type", data=np.array(["Gene Expression"] * n, dtype="S"))
        feat.create_dataset("genome", data=np.array([genome] * n, dtype="S"))
        feat.create_dataset("_all_tag_keys", data=np.array(["genome"], dtype="S"))


def _gene_ids(adata: ad.AnnData) -> list[str]:
    ids = adata.var["gene_ids"] if "gene_ids" in adata.var else pd.Series("", index=adata.var_names)
    return [i if i else s for i, s in zip(ids, adata.var_names, strict=True)]


def write_10x_mtx(adata: ad.AnnData, directory: str | Path, *, version: int = 3) -> None:
    """Write raw counts as a Cell Ranger MTX directory (v3: gzipped, ``features.tsv.gz``; v2: plain)."""
    matrix = sp.coo_matrix(adata.X.T)
    header = (
        "%%MatrixMarket matrix coordinate integer general\n%\n"
        f"{matrix.shape[0]} {matrix.shape[1]} {matrix.nnz}\n"
    )
    order = np.lexsort((matrix.row, matrix.col))
    lines = np.char.add(
        np.char.add(
            np.char.add((matrix.row[order] + 1).astype(str), " "),
            np.char.add((matrix.col[order] + 1).astype(str), " "),
        ),
        matrix.data[order].astype(np.int64).astype(str),
    )
    mtx = (header + "\n".join(lines.tolist()) + "\n").encode()
    barcodes = ("\n".join(adata.obs_names) + "\n").encode()
    ids = _gene_ids(adata)
    if version == 3:
        features = "".join(f"{i}\t{s}\tGene Expression\n" for i, s in zip(ids, adata.var_names, strict=True))
        files = {
            "matrix.mtx.gz": _gzip_bytes(mtx),
            "barcodes.tsv.gz": _gzip_bytes(barcodes),
            "features.tsv.gz": _gzip_bytes(features.encode()),
        }
    else:
        genes = "".join(f"{i}\t{s}\n" for i, s in zip(ids, adata.var_names, strict=True))
        files = {"matrix.mtx": mtx, "barcodes.tsv": barcodes, "genes.tsv": genes.encode()}
    with atomic_path(directory) as tmp:
        tmp.mkdir()
        for name, data in files.items():
            (tmp / name).write_bytes(data)


def write_dense_table(adata: ad.AnnData, path: str | Path) -> None:
    """Write raw counts as a dense genes x cells TSV (gzipped when the name ends in .gz)."""
    df = pd.DataFrame(adata.X.T.toarray().astype(np.int64), index=adata.var_names, columns=adata.obs_names)
    text = df.to_csv(sep="\t").encode()
    with atomic_path(path) as tmp:
        tmp.write_bytes(_gzip_bytes(text) if str(path).endswith(".gz") else text)


def _strip_truth(adata: ad.AnnData, keep: Sequence[str] = ()) -> ad.AnnData:
    out = ad.AnnData(X=adata.X.copy(), obs=adata.obs[list(keep)].copy(), var=adata.var[["gene_ids"]].copy())
    return out


def write_h5ad_sample(
    adata: ad.AnnData, path: str | Path, *, counts_in: str = "X", keep_obs: Sequence[str] = ()
) -> None:
    """Write an h5ad as a lab would: counts in X, or in ``layers["counts"]`` with log-normalised X."""
    out = _strip_truth(adata, keep_obs)
    if counts_in == "layers":
        out.layers["counts"] = out.X.copy()
        lib = np.asarray(out.X.sum(axis=1)).ravel()
        norm = sp.diags(1e4 / np.maximum(lib, 1)) @ out.X
        out.X = sp.csr_matrix(norm).log1p().astype(np.float32)
    with atomic_path(path) as tmp:
        out.write_h5ad(tmp.with_suffix(".h5ad"), compression="gzip")
        tmp.with_suffix(".h5ad").rename(tmp)


#: How each demo sample is written: (file name, writer).
DEMO_FORMATS = {
    "invivo_donor1": "invivo_donor1.h5ad",
    "invivo_donor2": "invivo_donor2_counts_layer.h5ad",
    "engineered_7TF": "engineered_7TF_filtered_feature_bc_matrix.h5",
    "organoid_week2": "organoid_week2_filtered_feature_bc_matrix",
    "organoid_week4": "organoid_week4_counts.tsv.gz",
}


def write_demo(
    directory: str | Path, *, scale: float = 1.0, seed: int = 0, organoid_species: str = "mouse"
) -> pd.DataFrame:
    """Write the demo samples (each in a different real input format), the truth and a sample sheet.

    The shipped demo keeps every sample in one species (mouse): samples of another species are merged on
    their one-to-one orthologs only, which drops species-specific genes such as the mouse embryonic globins
    that mark primitive erythroid cells. Cross-species merging is covered by the unit tests.

    Returns the sample sheet (absolute paths).
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    samples = demo(scale=scale, seed=seed, organoid_species=organoid_species)
    rows = []
    truth = []
    for name, adata in samples.items():
        target = directory / DEMO_FORMATS[name]
        label_column = ""
        if name == "invivo_donor1":
            write_h5ad_sample(adata.copy(), target, keep_obs=["true_cell_type"])
            adata_labels = "true_cell_type"
            label_column = adata_labels
        elif name == "invivo_donor2":
            write_h5ad_sample(adata.copy(), target, counts_in="layers", keep_obs=["true_cell_type"])
            label_column = "true_cell_type"
        elif name == "engineered_7TF":
            write_10x_h5(adata, target, genome="mm10")
        elif name == "organoid_week2":
            write_10x_mtx(adata, target, version=3)
        else:
            write_dense_table(adata, target)
        obs = adata.obs
        rows.append(
            {
                "sample": name,
                "path": str(target),
                "species": obs["species"].iloc[0],
                "condition": obs["condition"].iloc[0],
                "batch": obs["batch"].iloc[0],
                "timepoint": obs["timepoint"].iloc[0],
                "donor": obs["donor"].iloc[0],
                "label_column": label_column,
            }
        )
        t = obs[["sample", "true_cell_type", "true_phase", "is_doublet", "is_low_quality", "is_offtarget"]]
        truth.append(t.rename_axis("barcode").reset_index())
    truth_df = pd.concat(truth, ignore_index=True)
    with atomic_path(directory / "truth.tsv.gz") as tmp:
        tmp.write_bytes(_gzip_bytes(truth_df.to_csv(sep="\t", index=False).encode()))
    sheet = pd.DataFrame(rows)
    return sheet


def sha256sums(directory: str | Path) -> dict[str, str]:
    """sha256 of every file below ``directory`` (relative path -> hex digest)."""
    directory = Path(directory)
    return {
        str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }


def main(argv: Sequence[str] | None = None) -> None:
    """Command line: ``python -m hscseq.datasets demo DIR [--sheet PATH] [--scale S] [--seed N]``."""
    parser = argparse.ArgumentParser(prog="python -m hscseq.datasets", description=__doc__.split("\n")[0])
    parser.add_argument("what", choices=["demo"])
    parser.add_argument("directory")
    parser.add_argument("--sheet", help="write the sample sheet here (TSV)")
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    sheet = write_demo(args.directory, scale=args.scale, seed=args.seed)
    if args.sheet:
        # paths in a sample sheet are relative to the sheet's own directory
        sheet["path"] = [
            os.path.relpath(Path(x).resolve(), Path(args.sheet).resolve().parent) for x in sheet["path"]
        ]
        with atomic_path(args.sheet) as tmp:
            sheet.to_csv(tmp, sep="\t", index=False)
    for name, digest in sha256sums(args.directory).items():
        logger.info("%s  %s", digest, name)


if __name__ == "__main__":
    main()
