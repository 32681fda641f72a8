"""Plate-based sample (issue #13): full-length plate data as labs export it - few cells, a whole
transcriptome, Ensembl IDs mixed with symbols, ERCC spike-ins and non-integer expected counts (RSEM / Salmon).
"""

from __future__ import annotations

from collections.abc import Mapping

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from hscseq.datasets.genes import _read_table
from hscseq.datasets.model import SampleSpec
from hscseq.datasets.simulator import simulate


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
