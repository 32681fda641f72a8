"""The generative model: what one sample is (:class:`SampleSpec`), per-gene baselines, programme fold
changes and the log means of a cell type.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from hscseq._utils import resource_path
from hscseq.datasets.programmes import _MITO_GENES, CELL_TYPES, OFFTARGET_TYPES, PROGRAMMES


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
