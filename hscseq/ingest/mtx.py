"""Reader of MatrixMarket folders: Cell Ranger MTX (v3 ``features.tsv``, v2 ``genes.tsv``) and STARsolo."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from hscseq._utils import input_error
from hscseq.ingest._raw import _BLOCK, _FORMAT_HELP, _GENE_EXPRESSION, _first, _index_dtype, _open_text, _Raw
from hscseq.ingest.detect import _mtx_dir


def _read_lines(path: Path) -> list[list[str]]:
    with _open_text(path) as fh:
        return [line.rstrip("\n").rstrip("\r").split("\t") for line in fh if line.strip()]


def _mtx_header(path: Path) -> tuple[str, int, int, int, int]:
    """(field, n_rows, n_cols, nnz, header line count) from a MatrixMarket coordinate file."""
    with _open_text(path) as fh:
        banner = fh.readline()
        if not banner.startswith("%%MatrixMarket"):
            msg = "not a MatrixMarket file (no %%MatrixMarket banner)"
            raise ValueError(msg)
        tokens = banner.lower().split()
        if "coordinate" not in tokens:
            msg = "only MatrixMarket 'coordinate' (sparse) matrices are supported"
            raise ValueError(msg)
        fmt_field = tokens[3] if len(tokens) > 3 else "real"
        n_header = 1
        line = fh.readline()
        while line.startswith("%"):
            n_header += 1
            line = fh.readline()
        n_rows, n_cols, nnz = (int(x) for x in line.split())
        return fmt_field, n_rows, n_cols, nnz, n_header + 1


def _read_mtx_body(path: Path, n_header: int, n_features: int, n_cells: int, nnz: int) -> sp.csr_matrix:
    """Read the coordinate entries block by block into cells x features CSR.

    Entries are written straight into the final index/value arrays; Cell Ranger and STARsolo files are
    ordered by cell, so the CSR row pointer is a cumulative count (other orders are sorted once).
    """
    rows = np.empty(nnz, dtype=np.int32)  # feature index -> CSR column indices
    cols = np.empty(nnz, dtype=np.int32)  # cell index -> CSR rows
    vals = np.empty(nnz, dtype=np.float32)
    pos, ordered, last = 0, True, -1
    reader = pd.read_csv(
        path,
        sep=r"\s+",
        header=None,
        skiprows=n_header,
        chunksize=_BLOCK // 5,
        dtype={0: np.int32, 1: np.int32, 2: np.float64},
        engine="c",
    )
    for chunk in reader:
        n = len(chunk)
        if pos + n > nnz or chunk.shape[1] != 3:
            msg = f"the entries do not match the header ({nnz} entries of 3 fields)"
            raise ValueError(msg)
        rows[pos : pos + n] = chunk[0].to_numpy() - 1
        c = chunk[1].to_numpy() - 1
        cols[pos : pos + n] = c
        vals[pos : pos + n] = chunk[2].to_numpy()
        ordered = ordered and n > 0 and c[0] >= last and bool(np.all(c[1:] >= c[:-1]))
        last = int(c[-1]) if n else last
        pos += n
    if pos != nnz:
        msg = f"the header announces {nnz} entries but the file holds {pos} (truncated?)"
        raise ValueError(msg)
    if nnz and (rows.min() < 0 or rows.max() >= n_features or cols.min() < 0 or cols.max() >= n_cells):
        msg = "entry indices outside the matrix dimensions"
        raise ValueError(msg)
    if not ordered:
        return sp.coo_matrix((vals, (cols, rows)), shape=(n_cells, n_features)).tocsr()
    indptr = np.zeros(n_cells + 1, dtype=_index_dtype(nnz))
    np.cumsum(np.bincount(cols, minlength=n_cells), out=indptr[1:])
    del cols
    X = sp.csr_matrix((vals, rows, indptr), shape=(n_cells, n_features))
    X.sum_duplicates()
    return X


def _read_mtx(path: Path, *, sample: str, reader_name: str) -> _Raw:
    directory = _mtx_dir(path) if path.is_dir() else None
    if directory is None:
        raise input_error(
            "no matrix.mtx(.gz) found in the directory.", sample=sample, path=path, fix=_FORMAT_HELP
        )
    matrix = _first(directory, "matrix.mtx")
    barcode_file = _first(directory, "barcodes.tsv")
    feature_file = _first(directory, "features.tsv", "genes.tsv")
    if barcode_file is None or feature_file is None:
        raise input_error(
            "the MTX directory lacks barcodes.tsv(.gz) or features.tsv(.gz)/genes.tsv.",
            sample=sample,
            path=directory,
            fix="copy the whole Cell Ranger/STARsolo matrix folder (matrix, barcodes, features).",
        )
    barcodes = [r[0] for r in _read_lines(barcode_file)]
    features = _read_lines(feature_file)
    _field, n_features, n_cells, nnz, n_header = _mtx_header(matrix)
    if (n_features, n_cells) != (len(features), len(barcodes)):
        raise input_error(
            f"matrix.mtx is {n_features} features x {n_cells} cells but {feature_file.name} lists "
            f"{len(features)} features and {barcode_file.name} lists {len(barcodes)} barcodes.",
            sample=sample,
            path=directory,
            fix="the three files come from different runs or were truncated: copy the whole folder again.",
        )
    if nnz > n_features * n_cells:
        raise input_error(
            f"the matrix.mtx header announces {nnz} entries, more than its {n_features} x {n_cells} "
            "dimensions "
            "can hold (corrupt header).",
            sample=sample,
            path=matrix,
            fix="the file is corrupt: copy the whole matrix folder again from its source.",
        )
    X = _read_mtx_body(matrix, n_header, n_features, n_cells, nnz)
    ids = [r[0] for r in features]
    symbols = [r[1] if len(r) > 1 else r[0] for r in features]
    types = [r[2] if len(r) > 2 else _GENE_EXPRESSION for r in features]
    version = "v3" if feature_file.name.startswith("features") else "v2"
    return _Raw(
        X=X,
        barcodes=barcodes,
        symbols=symbols,
        ids=ids,
        feature_types=types,
        reader=f"{reader_name} ({version}, {directory.name})",
        counts_source=matrix.name,
        files=[matrix, barcode_file, feature_file],
    )
