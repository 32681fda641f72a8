"""Reader of loom files (h5py): main matrix or ``layers/counts``, genes in rows, read block by block."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import scipy.sparse as sp

from hscseq._utils import input_error
from hscseq.ingest._raw import _BLOCK, _decode, _Raw


def _counts_source(f: h5py.File, counts_layer: str) -> str:
    """The loom dataset holding the counts: ``layers/<counts_layer>`` when named and present,
    ``layers/counts`` for ``auto`` when present, else the main ``matrix``."""
    if counts_layer not in ("auto", "X") and f"layers/{counts_layer}" in f:
        return f"layers/{counts_layer}"
    if counts_layer == "auto" and "layers/counts" in f:
        return "layers/counts"
    return "matrix"


def _read_loom(path: Path, *, sample: str, counts_layer: str) -> _Raw:
    with h5py.File(path, "r") as f:
        source = _counts_source(f, counts_layer)
        ds = f[source]
        n_genes, n_cells = ds.shape
        blocks = []
        step = max(1, _BLOCK // max(n_genes, 1))
        for j in range(0, n_cells, step):
            blocks.append(sp.csr_matrix(np.asarray(ds[:, j : j + step], dtype=np.float32).T))
        X = sp.vstack(blocks, format="csr") if blocks else sp.csr_matrix((0, n_genes), dtype=np.float32)
        row, col = f["row_attrs"], f["col_attrs"]

        def attr(group, keys, n):
            key = next((k for k in keys if k in group), None)
            return _decode(group[key][()]) if key else None

        barcodes = attr(col, ("CellID", "obs_names", "cell_names", "Barcode", "barcode"), n_cells)
        symbols = attr(row, ("Gene", "var_names", "gene_names", "Symbol", "gene_symbol"), n_genes)
        ids = attr(row, ("Accession", "gene_ids", "gene_id", "ensembl_gene_id"), n_genes)
        obs = pd.DataFrame(
            {
                k: _decode(col[k][()]) if col[k].dtype.kind in "SOU" else col[k][()]
                for k in col
                if col[k].ndim == 1
            },
            index=barcodes,
        )
    if barcodes is None or symbols is None:
        raise input_error(
            "the loom file has no cell IDs (col_attrs/CellID) or gene names (row_attrs/Gene).",
            sample=sample,
            path=path,
            fix="write the loom with CellID and Gene attributes.",
        )
    return _Raw(
        X=X,
        barcodes=barcodes,
        symbols=symbols,
        ids=ids or [""] * n_genes,
        reader="hscseq.ingest loom (h5py)",
        counts_source=source,
        files=[path],
        obs=obs,
    )
