"""Core simulator: negative-binomial counts, cell cycle, low-quality cells and doublets per sample;
:func:`simulate` draws whole samples from :class:`SampleSpec` lists.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from hscseq.datasets.genes import _annotate_genes, gene_universe
from hscseq.datasets.model import SampleSpec, _build_model, _Model, _type_logmeans
from hscseq.datasets.programmes import _CYCLING_SHARE

logger = logging.getLogger(__name__)


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
