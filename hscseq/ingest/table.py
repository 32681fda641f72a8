"""Reader of dense csv/tsv(.gz) tables, genes x cells or cells x genes, converted to sparse block by block."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from hscseq import genes
from hscseq._utils import input_error
from hscseq.ingest._raw import _BLOCK, _open_text, _Raw


def _split_line(line: str, sep: str) -> list[str]:
    return next(csv.reader([line.rstrip("\r\n")], delimiter=sep))


def _orientation(header: list[str], first_col: list[str]) -> str:
    def score(names):
        return max(genes.species_evidence(names).values()) if names else 0.0

    head, col = score(header[:500]), score(first_col[:500])
    if max(head, col) < 0.05:
        msg = (
            "neither the header nor the first column look like gene names; set ingest.table_orientation "
            "to genes_x_cells or cells_x_genes"
        )
        raise ValueError(msg)
    return "genes_x_cells" if col >= head else "cells_x_genes"


def _read_table(path: Path, *, sample: str, sep: str, orientation: str) -> _Raw:
    with _open_text(path) as fh:
        header = _split_line(fh.readline(), sep)
        first = fh.readline()
        if not first.strip():
            raise input_error(
                "the table has a header but no data rows (zero cells or genes).",
                sample=sample,
                path=path,
                fix="check that the export finished; the file is empty.",
            )
        n_fields = len(_split_line(first, sep))
    if len(header) == n_fields:
        header = header[1:]  # first field names the row-label column
    elif len(header) != n_fields - 1:
        raise input_error(
            f"the header has {len(header)} fields but the rows have {n_fields}.",
            sample=sample,
            path=path,
            fix="give a rectangular table: one header line, then one label and "
            "one value per column on every line.",
        )
    header = [h.strip() for h in header]
    labels: list[str] = []
    blocks = []
    reader = pd.read_csv(
        path,
        sep=sep,
        header=None,
        skiprows=1,
        index_col=0,
        chunksize=max(1, _BLOCK // n_fields),
        dtype={**{0: str}, **{i: np.float64 for i in range(1, n_fields)}},
        engine="c",
    )
    for chunk in reader:
        if chunk.shape[1] != len(header):
            msg = f"a row has {chunk.shape[1]} values instead of {len(header)}"
            raise ValueError(msg)
        labels += [str(x) for x in chunk.index]
        values = chunk.to_numpy(dtype=np.float64)
        blocks.append(
            sp.csr_matrix(values.astype(np.float32)) if np.isfinite(values).all() else _nan_csr(values)
        )
    M = sp.vstack(blocks, format="csr") if blocks else sp.csr_matrix((0, len(header)), dtype=np.float32)
    if orientation == "auto":
        orientation = _orientation(header, labels)
    if orientation == "genes_x_cells":
        X, barcodes, symbols = M.T.tocsr(), header, labels
    else:
        X, barcodes, symbols = M, labels, header
    return _Raw(
        X=X,
        barcodes=barcodes,
        symbols=symbols,
        ids=[""] * len(symbols),
        reader=f"hscseq.ingest dense table ({orientation})",
        counts_source="table",
        files=[path],
        notes={"orientation": orientation},
    )


def _nan_csr(values: np.ndarray) -> sp.csr_matrix:
    """Sparse block that keeps NaN/inf entries as explicit values (so validation can see them)."""
    mask = (values != 0) | ~np.isfinite(values)
    r, c = np.nonzero(mask)
    return sp.csr_matrix((values[r, c].astype(np.float32), (r, c)), shape=values.shape)
