"""Identity scenario (issue #13): endothelial and EHT-stalled look-alikes, a few true pre-HSCs, and
committed progenitors carrying part of the HSC programme.

Only :func:`simulate_identity` builds it (own model builder, extra genes); the demo and every other
simulation keep their gene universe and random streams unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence

import anndata as ad
import numpy as np

from hscseq.datasets.model import SampleSpec, _build_model, _Model, _type_logmeans
from hscseq.datasets.programmes import CELL_TYPES, OFFTARGET_TYPES, PROGRAMMES
from hscseq.datasets.scenarios import DEFAULT_MISSING_HSC_GENES, reference_specs
from hscseq.datasets.simulator import simulate

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
