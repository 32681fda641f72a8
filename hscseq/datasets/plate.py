"""Plate-based samples (issue #13): full-length plate data as labs export it - few cells, a whole
transcriptome, Ensembl IDs mixed with symbols, ERCC spike-ins and non-integer expected counts (RSEM / Salmon).

:func:`plate_sample` makes one sample; :func:`plate_samples` makes the samples of one plate experiment from
one generative model (shared biology, a batch effect per batch, independent cells); :func:`plate_spec` is
the :class:`SampleSpec` of a plate (one cell per well: no doublets; plate read depth).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from hscseq.datasets.genes import _read_table
from hscseq.datasets.model import SampleSpec
from hscseq.datasets.simulator import simulate

#: Default composition of a plate sample: HSC, MPP and hemogenic endothelium.
PLATE_COMPOSITION: dict[str, float] = {"HSC": 0.5, "MPP": 0.3, "hemogenic_endothelium": 0.2}

_MOUSE_ENSEMBL = "ENSMUSG"

#: Expression of the unannotated genes relative to the table's fill genes: what a 10x table leaves out of a
#: GENCODE annotation is mostly pseudogenes, small and predicted genes, few reads in full-length data.
_UNANNOTATED_LEVEL = 0.1
#: Nuclear (non-mitochondrial) reads of a cell at which a fill gene has its ``level``.
_FILL_DEPTH = 200_000.0
#: SD of the per-batch log fold change of a fill gene (as :func:`simulate`'s default batch effect).
_FILL_BATCH_EFFECT = 0.35


def plate_spec(
    sample: str,
    n_cells: int,
    *,
    condition: str = "engineered",
    composition: Mapping[str, float] | None = None,
    **changes: Any,
) -> SampleSpec:
    """The :class:`SampleSpec` of one plate: no doublets, 5% low-quality cells, median depth 200,000 reads.

    Parameters
    ----------
    sample
        Sample name (also its batch unless ``batch`` is given in ``changes``).
    n_cells
        Cells (wells).
    condition
        ``in_vivo``, ``engineered`` or ``organoid``.
    composition
        Cell-type fractions (default :data:`PLATE_COMPOSITION`).
    **changes
        Any other :class:`SampleSpec` field (``donor``, ``batch``, ``missing_hsc_genes``, ...).

    Returns
    -------
    The spec.
    """
    spec = SampleSpec(
        sample=sample,
        condition=condition,
        n_cells=n_cells,
        composition=composition or PLATE_COMPOSITION,
        batch=sample,
        doublet_rate=0.0,
        low_quality_rate=0.05,
        median_umis=200_000.0,
    )
    return replace(spec, **changes)


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
    expected_counts: bool = True,
) -> ad.AnnData:
    """A plate-based mouse sample (default HSC, MPP, hemogenic endothelium) of ``n_cells`` x ``n_genes``.

    The biology comes from :func:`simulate` (2,000 genes, one cell per well: no doublets); the rest of the
    transcriptome is filled with low negative-binomial counts that follow each cell's nuclear
    (non-mitochondrial) depth (a damaged cell is shallow in every gene), at one level per gene for all the
    samples of an experiment (shifted per batch like :func:`simulate`'s genes): first genes of the shipped
    10x mouse table (about 32,000 symbols), then - as a GENCODE / Ensembl annotation of about 55,000 genes
    holds many non-coding and predicted genes that a 10x table lacks - unannotated Ensembl-style IDs
    (``ENSMUSG...`` numbers absent from the table, a seeded choice: the same IDs for every sample of one
    seed, a larger ``n_genes`` adding to them; expressed at a tenth of the table's fill genes).
    ``id_share`` of the gene names are replaced by their Ensembl IDs, ``n_ercc`` ERCC spike-ins
    (``ERCC-00002`` ...) are appended, and counts become expected counts (``counts * U(0.8, 1.2)``,
    non-integer) at plate read depth (median 200,000). With ``expected_counts=False`` the counts stay
    integer read counts (as featureCounts or STAR give). ``n_genes`` counts genes without the spike-ins.

    Parameters
    ----------
    n_cells
        Cells (wells).
    n_genes
        Genes (at most the 10x table plus the unused Ensembl numbers below its largest, about 118,000).
    n_ercc
        ERCC spike-ins appended (at most 170).
    id_share
        Share of gene names given as Ensembl IDs.
    seed
        Seed of every draw.
    sample
        Sample name (and batch).
    condition
        ``in_vivo``, ``engineered`` or ``organoid``.
    composition
        Cell-type fractions (default :data:`PLATE_COMPOSITION`).
    expected_counts
        Non-integer expected counts (RSEM / Salmon) when True, integer read counts when False.

    Returns
    -------
    Cells x genes AnnData: counts in X (float32), truth in ``obs``, ``var["gene_ids"]``, the simulation in
    ``uns["simulation"]``.
    """
    spec = plate_spec(sample, n_cells, condition=condition, composition=composition)
    return plate_samples(
        [spec],
        n_genes=n_genes,
        n_ercc=n_ercc,
        id_share=id_share,
        seed=seed,
        expected_counts=expected_counts,
    )[sample]


def plate_samples(
    specs: Sequence[SampleSpec],
    *,
    n_genes: int | Sequence[int] = 25_000,
    n_ercc: int = 92,
    id_share: float = 0.3,
    seed: int = 0,
    expected_counts: bool | Sequence[bool] = True,
) -> dict[str, ad.AnnData]:
    """The samples of one plate experiment, each filled to its whole transcriptome as in :func:`plate_sample`.

    All samples come from one :func:`simulate` call (one model: the same biology; one batch effect per
    batch; independent cells) and one stream of fill draws, taken in the order of ``specs``; a single spec
    gives exactly :func:`plate_sample`.

    Parameters
    ----------
    specs
        One spec per sample (e.g. from :func:`plate_spec`).
    n_genes
        Genes per sample: one value for all, or one per spec.
    n_ercc
        ERCC spike-ins appended to every sample.
    id_share
        Share of gene names given as Ensembl IDs.
    seed
        Seed of every draw.
    expected_counts
        Non-integer expected counts (True) or integer read counts (False): one value, or one per spec.

    Returns
    -------
    One AnnData per sample, keyed by sample name.
    """
    sizes = _per_spec(n_genes, len(specs), "n_genes")
    expected = _per_spec(expected_counts, len(specs), "expected_counts")
    cores = simulate(list(specs), seed=seed)
    annotation = _annotation(max(sizes), seed=seed)
    batch_rng = np.random.default_rng([seed, 24])
    batch_lfc = {
        b: batch_rng.normal(0.0, _FILL_BATCH_EFFECT, size=len(annotation))
        for b in sorted({s.batch for s in specs})
    }
    rng = np.random.default_rng([seed, 21])
    return {
        spec.sample: _fill_transcriptome(
            cores[spec.sample],
            annotation,
            batch_lfc[spec.batch],
            rng,
            n_genes=size,
            n_ercc=n_ercc,
            id_share=id_share,
            expected_counts=exp,
        )
        for spec, size, exp in zip(specs, sizes, expected, strict=True)
    }


def _per_spec(value: Any, n: int, name: str) -> list:
    """``value`` repeated for ``n`` specs, or the sequence itself when it has one value per spec."""
    if isinstance(value, Sequence) and not isinstance(value, str):
        if len(value) != n:
            msg = f"{name} has {len(value)} values for {n} samples"
            raise ValueError(msg)
        return list(value)
    return [value] * n


def _unannotated_ids(table_ids: pd.Series, n: int, *, seed: int) -> list[str]:
    """Up to ``n`` mouse Ensembl-style gene IDs that the 10x table does not hold (seeded, nested in ``n``).

    The numbers are the unused ones below the table's largest ID, in one seeded order: a larger ``n`` adds
    IDs to those of a smaller one.
    """
    used = table_ids.str[len(_MOUSE_ENSEMBL) :].astype(np.int64).to_numpy()
    free = np.setdiff1d(np.arange(1, used.max() + 1), used)
    order = np.random.default_rng([seed, 22]).permutation(len(free))
    return [f"{_MOUSE_ENSEMBL}{k:011d}" for k in free[order[: min(n, len(free))]]]


def _annotation(n_unannotated: int, *, seed: int) -> pd.DataFrame:
    """The genes an experiment fills with, each with one level and dispersion for all its samples.

    The 10x table's genes (one per symbol), then up to ``n_unannotated`` unannotated IDs (named by their ID,
    at :data:`_UNANNOTATED_LEVEL`). ``level``: mean reads per cell at :data:`_FILL_DEPTH` nuclear reads.
    """
    full = _read_table("mouse_symbol_ensembl_10x.tsv")
    unannotated = _unannotated_ids(full["ensembl_gene_id"], n_unannotated, seed=seed)  # no table ID
    table = full.drop_duplicates("gene_symbol")[["gene_symbol", "ensembl_gene_id"]]
    genes = pd.concat(
        [
            table.assign(annotated=True),
            pd.DataFrame({"gene_symbol": unannotated, "ensembl_gene_id": unannotated, "annotated": False}),
        ],
        ignore_index=True,
    )
    rng = np.random.default_rng([seed, 23])
    genes["level"] = np.exp(rng.normal(-2.0, 1.5, size=len(genes))) * np.where(
        genes["annotated"], 1.0, _UNANNOTATED_LEVEL
    )
    genes["theta"] = np.exp(rng.normal(1.0, 0.5, size=len(genes)))  # as the simulator's own genes
    return genes


def _fill_counts(
    core: ad.AnnData, fill: pd.DataFrame, lfc: np.ndarray, rng: np.random.Generator
) -> sp.csr_matrix:
    """Negative-binomial counts of the ``fill`` genes, following each cell's nuclear (non-mito) depth.

    A damaged cell keeps its mitochondrial reads and loses the others, in every gene.
    """
    nuclear = np.flatnonzero(~core.var_names.str.startswith("mt-"))
    depth = np.asarray(core.X[:, nuclear].sum(axis=1), dtype=np.float64).ravel()
    mu = (depth / _FILL_DEPTH)[:, None] * (fill["level"].to_numpy() * np.exp(lfc))[None, :]
    theta = fill["theta"].to_numpy()[None, :]
    return sp.csr_matrix(rng.poisson(rng.gamma(shape=theta, scale=mu / theta)))


def _fill_transcriptome(
    core: ad.AnnData,
    annotation: pd.DataFrame,
    batch_lfc: np.ndarray,
    rng: np.random.Generator,
    *,
    n_genes: int,
    n_ercc: int,
    id_share: float,
    expected_counts: bool,
) -> ad.AnnData:
    """``core`` filled to ``n_genes`` (table genes, then unannotated IDs); ID names, ERCC, expected counts."""
    n_cells = core.n_obs
    table = annotation[annotation["annotated"] & ~annotation["gene_symbol"].isin(core.var_names)]
    unannotated = annotation[~annotation["annotated"]]
    n_fill = max(0, n_genes - core.n_vars)
    chosen = table.iloc[np.sort(rng.choice(len(table), size=min(n_fill, len(table)), replace=False))]
    n_extra = n_fill - len(chosen)
    if n_extra > len(unannotated):
        msg = f"n_genes {n_genes} exceeds the {core.n_vars + len(table) + len(unannotated)} genes available"
        raise ValueError(msg)
    fill = pd.concat([chosen, unannotated.iloc[:n_extra].sort_values("ensembl_gene_id")])
    fill_counts = _fill_counts(core, fill, batch_lfc[fill.index.to_numpy()], rng)
    ercc = [f"ERCC-{i:05d}" for i in sorted(rng.choice(np.arange(2, 172), size=n_ercc, replace=False))]
    ercc_counts = sp.csr_matrix(rng.poisson(50.0, size=(n_cells, n_ercc)))
    X = sp.hstack([core.X, fill_counts, ercc_counts]).tocsr().astype(np.float64)
    factor = rng.uniform(0.8, 1.2, size=X.nnz)  # drawn either way: read counts keep the same gene names
    if expected_counts:
        X.data = X.data * factor
    symbols = list(core.var_names) + fill["gene_symbol"].tolist()
    ids = list(core.var["gene_ids"]) + fill["ensembl_gene_id"].tolist()
    as_id = rng.random(len(symbols)) < id_share
    names = [i if (a and i) else s for s, i, a in zip(symbols, ids, as_id, strict=True)] + ercc
    out = ad.AnnData(X=X.astype(np.float32), obs=core.obs.copy(), var=pd.DataFrame(index=names))
    out.var["gene_ids"] = [*ids, *ercc]
    out.uns["simulation"] = {
        **core.uns["simulation"],
        "technology": "plate",
        "n_ercc": n_ercc,
        "n_unannotated": n_extra,
        "expected_counts": bool(expected_counts),
    }
    return out
