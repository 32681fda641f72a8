"""Ingest: read one sample's count matrix in any common format into the per-sample AnnData of the contract.

Supported formats (auto-detected, or forced with the sample sheet's ``format`` column):

- ``10x_h5``: Cell Ranger HDF5, v3 (``matrix/features``; feature-barcoding files keep Gene Expression and set
  the other feature types aside) and v2 (one group per genome).
- ``10x_mtx``: Cell Ranger MTX directories, v3 (``features.tsv.gz``) and v2 (``genes.tsv``), gzipped or not;
  the matrix directory itself or a Cell Ranger output folder above it (``outs/filtered_feature_bc_matrix``,
  ``filtered_gene_bc_matrices/<genome>``).
- ``starsolo``: STARsolo ``Solo.out/Gene/filtered`` (or the STAR output folder holding ``Solo.out``).
- ``h5ad``: counts in X, ``layers["counts"]`` (or ``raw_counts``/``umi_counts``) or ``.raw`` (the first
  that holds counts is used and reported).
- ``loom``: main matrix (or ``layers/counts``), genes in rows.
- ``csv``/``tsv`` (optionally ``.gz``): dense tables, genes x cells or cells x genes (detected from which
  axis carries gene names, or declared with ``table_orientation``).

The output (docs/architecture.md): raw integer counts as CSR float32 in X, obs_names ``{sample}:{barcode}``,
var_names unique gene symbols, var ``gene_symbol``/``gene_id``, provenance in ``uns["hscseq"]["ingest"]``.
Reading stays sparse end to end (dense inputs are converted block by block).
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import logging
import os
import re
import zlib
from dataclasses import dataclass, field
from importlib.metadata import version as _version
from pathlib import Path

import anndata as ad
import h5py
import numpy as np
import pandas as pd
import scipy.sparse as sp

from hscseq import genes
from hscseq._utils import HscseqInputError, input_error, write_h5ad

logger = logging.getLogger(__name__)

#: Format names of the sample sheet's ``format`` column.
FORMATS = ("10x_h5", "10x_mtx", "starsolo", "h5ad", "loom", "csv", "tsv")

_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
_GENE_EXPRESSION = "Gene Expression"
_COUNT_LAYERS = ("counts", "raw_counts", "umi_counts")
_BLOCK = 250_000  # values checked / converted per block (bounds temporary memory)
_READ_ERRORS = (
    OSError,
    EOFError,
    zlib.error,
    gzip.BadGzipFile,
    UnicodeDecodeError,
    KeyError,
    pd.errors.ParserError,
    pd.errors.EmptyDataError,
    ValueError,
    IndexError,
    TypeError,
)

_FORMAT_HELP = (
    "give a Cell Ranger .h5 or MTX directory, a STARsolo Solo.out folder, an .h5ad, a .loom or a "
    ".csv/.tsv(.gz) table, or set the sample sheet's 'format' column to one of "
    f"{', '.join(FORMATS)}."
)


@dataclass
class _Raw:
    """What a reader found, before validation and gene harmonisation."""

    X: sp.csr_matrix  # cells x features
    barcodes: list[str]
    symbols: list[str]
    ids: list[str]
    reader: str
    counts_source: str
    files: list[Path]
    feature_types: list[str] | None = None
    obs: pd.DataFrame | None = None
    notes: dict = field(default_factory=dict)


# --------------------------------------------------------------------------------------------------------
# format detection


def _open_text(path: Path):
    if path.name.endswith(".gz"):
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8")
    return open(path, encoding="utf-8")


def _first(directory: Path, *names: str) -> Path | None:
    for name in names:
        for candidate in (directory / name, directory / f"{name}.gz"):
            if candidate.is_file():
                return candidate
    return None


def _mtx_dir(path: Path) -> Path | None:
    """The directory holding ``matrix.mtx[.gz]`` at or below a Cell Ranger / STARsolo output path."""
    candidates = [
        path,
        path / "filtered_feature_bc_matrix",
        path / "outs" / "filtered_feature_bc_matrix",
        path / "Solo.out" / "Gene" / "filtered",
        path / "Gene" / "filtered",
    ]
    for parent in (path / "filtered_gene_bc_matrices", path / "outs" / "filtered_gene_bc_matrices"):
        if parent.is_dir():
            candidates.extend(sorted(p for p in parent.iterdir() if p.is_dir()))
    for c in candidates:
        if c.is_dir() and _first(c, "matrix.mtx"):
            return c
    return None


def _is_starsolo(directory: Path) -> bool:
    parts = directory.resolve().parts
    return "Solo.out" in parts or (
        directory.parent.name in ("Gene", "GeneFull") and directory.name in ("filtered", "raw")
    )


def detect_format(path: str | os.PathLike, *, sample: str | None = None) -> str:
    """Detect the format of a count matrix cheaply (file signature, HDF5 top-level keys, names).

    Parameters
    ----------
    path
        File or directory of one sample.
    sample
        Sample name, used in error messages only.

    Returns
    -------
    One of :data:`FORMATS`.
    """
    path = Path(path)
    if not path.exists():
        raise input_error(
            "the count matrix does not exist.",
            sample=sample,
            path=path,
            fix="correct the 'path' column of the sample sheet.",
        )
    if path.is_dir():
        mtx = _mtx_dir(path)
        if mtx is None:
            raise input_error(
                "the directory holds no matrix.mtx(.gz) (not a 10x MTX or STARsolo folder).",
                sample=sample,
                path=path,
                fix=_FORMAT_HELP,
            )
        return "starsolo" if _is_starsolo(mtx) else "10x_mtx"
    try:
        with open(path, "rb") as fh:
            head = fh.read(8)
    except OSError as exc:
        raise input_error(
            f"the file cannot be read ({exc}).",
            sample=sample,
            path=path,
            fix="check the file's permissions and that it is fully copied.",
        ) from exc
    name = path.name.lower()
    if head == _HDF5_MAGIC:
        try:
            with h5py.File(path, "r") as f:
                keys = set(f.keys())
                if "matrix" in keys and isinstance(f["matrix"], h5py.Dataset):
                    return "loom"
                if "matrix" in keys or any(isinstance(f[k], h5py.Group) and "barcodes" in f[k] for k in keys):
                    return "10x_h5"
                if "X" in keys or "obs" in keys:
                    return "h5ad"
        except OSError as exc:
            raise input_error(
                f"the HDF5 file is corrupt or truncated ({exc}).",
                sample=sample,
                path=path,
                fix="copy the file again from its source and check its checksum.",
            ) from exc
        raise input_error(
            f"HDF5 file with unrecognised layout (top-level keys {sorted(keys)}).",
            sample=sample,
            path=path,
            fix=_FORMAT_HELP,
        )
    if name.endswith((".h5", ".h5ad", ".loom", ".hdf5")):
        raise input_error(
            "the file is not a valid HDF5 file (corrupt, truncated or mislabelled).",
            sample=sample,
            path=path,
            fix="copy the file again from its source.",
        )
    stem = name[:-3] if name.endswith(".gz") else name
    if stem.endswith(".csv"):
        return "csv"
    if stem.endswith((".tsv", ".txt", ".tab")):
        return "tsv"
    raise input_error("unknown count-matrix format.", sample=sample, path=path, fix=_FORMAT_HELP)


# --------------------------------------------------------------------------------------------------------
# readers (each returns a _Raw; none densifies the whole matrix)


def _decode(values) -> list[str]:
    return [v.decode() if isinstance(v, bytes) else str(v) for v in np.asarray(values).tolist()]


def _index_dtype(n: int) -> type:
    """int32 index arrays while they can hold ``n`` (scipy would otherwise copy them to a common dtype)."""
    return np.int32 if n < np.iinfo(np.int32).max else np.int64


def _csr_from_csc_parts(data, indices, indptr, n_features: int, n_cells: int, what: str) -> sp.csr_matrix:
    """The Cell Ranger genes x cells CSC arrays *are* a cells x genes CSR matrix: no copy needed."""
    if len(indptr) != n_cells + 1 or indptr[-1] != len(data) or len(indices) != len(data):
        msg = f"{what}: inconsistent sparse arrays (indptr/indices/data lengths disagree with shape)"
        raise ValueError(msg)
    if len(indices) and (indices.min() < 0 or indices.max() >= n_features):
        msg = f"{what}: feature indices out of range"
        raise ValueError(msg)
    return sp.csr_matrix((data, indices, indptr), shape=(n_cells, n_features))


def _read_10x_h5(path: Path) -> _Raw:
    with h5py.File(path, "r") as f:
        if "matrix" in f:
            groups, version = [f["matrix"]], 3
        else:
            groups, version = [f[k] for k in sorted(f.keys()) if "barcodes" in f[k]], 2
        mats, symbols, ids, types, barcodes = [], [], [], [], None
        for g in groups:
            n_features, n_cells = (int(x) for x in g["shape"][()])
            data = g["data"].astype(np.float32)[()]
            indices = g["indices"].astype(_index_dtype(max(len(g["data"]), n_features)))[()]
            indptr = g["indptr"].astype(_index_dtype(len(g["data"])))[()]
            mats.append(_csr_from_csc_parts(data, indices, indptr, n_features, n_cells, g.name))
            bc = _decode(g["barcodes"][()])
            if barcodes is not None and bc != barcodes:
                msg = "genome groups of a v2 .h5 have different barcodes"
                raise ValueError(msg)
            barcodes = bc
            if version == 3:
                feat = g["features"]
                ids += _decode(feat["id"][()])
                symbols += _decode(feat["name"][()])
                types += (
                    _decode(feat["feature_type"][()])
                    if "feature_type" in feat
                    else [_GENE_EXPRESSION] * n_features
                )
            else:
                ids += _decode(g["genes"][()])
                symbols += _decode(g["gene_names"][()])
                types += [_GENE_EXPRESSION] * n_features
    X = mats[0] if len(mats) == 1 else sp.hstack(mats, format="csr")
    return _Raw(
        X=X,
        barcodes=barcodes,
        symbols=symbols,
        ids=ids,
        feature_types=types,
        reader=f"hscseq.ingest 10x HDF5 v{version}",
        counts_source=f"{'matrix' if version == 3 else 'genome groups'}",
        files=[path],
    )


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


def _count_problem(X: sp.spmatrix) -> str | None:
    """Why the stored values of ``X`` are not raw counts (NaN/inf, negative, non-integer), or None."""
    data = X.data
    for start in range(0, len(data), _BLOCK):
        block = data[start : start + _BLOCK]
        if not np.all(np.isfinite(block)):
            return "NaN or infinite values"
        if np.any(block < 0):
            return f"negative values (minimum {float(data.min()):g})"
        if np.any(block != np.round(block)):
            bad = block[block != np.round(block)][:3]
            return f"non-integer values (e.g. {', '.join(f'{v:g}' for v in bad)})"
    return None


def _as_csr(X) -> sp.csr_matrix:
    if sp.issparse(X):
        return sp.csr_matrix(X)
    if hasattr(X, "to_memory"):
        X = X.to_memory()
    return sp.csr_matrix(np.asarray(X))


def _gene_columns(var: pd.DataFrame, names: pd.Index) -> tuple[list[str], list[str]]:
    """(symbols, ids) from an AnnData var table, whatever its column names."""
    names = [str(n) for n in names]
    sym_col = next(
        (
            c
            for c in ("gene_symbol", "gene_symbols", "feature_name", "symbol", "gene_name", "Gene")
            if c in var.columns
        ),
        None,
    )
    id_col = next(
        (
            c
            for c in ("gene_id", "gene_ids", "ensembl_gene_id", "feature_id", "Accession")
            if c in var.columns
        ),
        None,
    )
    ids = var[id_col].astype(str).tolist() if id_col else [""] * len(names)
    if sym_col:
        symbols = var[sym_col].astype(str).tolist()
    elif sum(genes.is_ensembl(n) for n in names) > len(names) / 2:
        ids, symbols = names, names
    else:
        symbols = names
    return symbols, ids


def _read_h5ad(path: Path, *, sample: str, counts_layer: str) -> _Raw:
    adata = ad.read_h5ad(path)
    candidates: list[tuple[str, object, pd.DataFrame, pd.Index]] = [
        ("X", adata.X, adata.var, adata.var_names)
    ]
    candidates += [
        (f"layers[{k!r}]", adata.layers[k], adata.var, adata.var_names)
        for k in _COUNT_LAYERS
        if k in adata.layers
    ]
    candidates += [
        (f"layers[{k!r}]", adata.layers[k], adata.var, adata.var_names)
        for k in adata.layers
        if k not in _COUNT_LAYERS
    ]
    if adata.raw is not None:
        candidates.append((".raw", adata.raw.X, adata.raw.var, adata.raw.var_names))
    wanted = {"auto": None, "X": "X", "raw": ".raw"}.get(counts_layer, f"layers[{counts_layer!r}]")
    problems = {}
    for where, X, var, names in candidates:
        if wanted is not None and where != wanted:
            continue
        if wanted is None and where.startswith("layers") and where[8:-2] not in _COUNT_LAYERS:
            continue
        X = _as_csr(X)
        problem = _count_problem(X)
        if problem is None:
            symbols, ids = _gene_columns(var, names)
            types = var["feature_types"].astype(str).tolist() if "feature_types" in var.columns else None
            return _Raw(
                X=X,
                barcodes=[str(b) for b in adata.obs_names],
                symbols=symbols,
                ids=ids,
                feature_types=types,
                reader=f"anndata {_version('anndata')} read_h5ad",
                counts_source=where,
                files=[path],
                obs=adata.obs,
            )
        problems[where] = problem
    if wanted is not None and wanted not in {c[0] for c in candidates}:
        raise input_error(
            f"ingest.counts_layer is {counts_layer!r} but the file has no {wanted}.",
            sample=sample,
            path=path,
            fix=f"set ingest.counts_layer to auto or one of {[c[0] for c in candidates]}.",
        )
    # explain, and point at any slot that does hold counts
    good = [c[0] for c in candidates if c[0] not in problems and _count_problem(_as_csr(c[1])) is None]
    detail = "; ".join(f"{k} holds {v}" for k, v in problems.items())
    hint = (
        f"{', '.join(good)} hold(s) raw integer counts: set ingest.counts_layer to auto (or to that slot)."
        if good
        else "give the raw UMI counts (e.g. in layers['counts'] or .raw), not normalised or "
        "log-transformed values; re-export them from the tool that made this file."
    )
    raise input_error(
        f"no raw counts found: {detail}. These look like normalised/log-transformed values, not counts.",
        sample=sample,
        path=path,
        fix=hint,
    )


def _read_loom(path: Path, *, sample: str, counts_layer: str) -> _Raw:
    with h5py.File(path, "r") as f:
        source = "matrix"
        if counts_layer not in ("auto", "X") and f"layers/{counts_layer}" in f:
            source = f"layers/{counts_layer}"
        elif counts_layer == "auto" and "layers/counts" in f:
            source = "layers/counts"
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


# --------------------------------------------------------------------------------------------------------
# validation, gene harmonisation, assembly


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


#: ERCC spike-in controls (External RNA Controls Consortium): ERCC-00002 ... ERCC-00171.
_SPIKE_IN = re.compile(r"^ERCC-\d{5}$", re.IGNORECASE)

#: Sequencing technologies of the sample sheet's ``technology`` column.
TECHNOLOGIES = ("droplet", "plate")


def _set_aside_spike_ins(raw: _Raw, *, sample: str) -> np.ndarray | None:
    """Remove ERCC spike-ins from the features; return their per-cell counts (None if there are none)."""
    names = [s or i for s, i in zip(raw.symbols, raw.ids, strict=True)]
    spike = np.array([bool(_SPIKE_IN.match(str(n).strip())) for n in names], dtype=bool)
    if not spike.any():
        return None
    counts = np.asarray(raw.X[:, np.flatnonzero(spike)].sum(axis=1)).ravel()
    keep = np.flatnonzero(~spike)
    raw.X = raw.X[:, keep]
    raw.symbols = [raw.symbols[i] for i in keep]
    raw.ids = [raw.ids[i] for i in keep]
    if raw.feature_types is not None:
        raw.feature_types = [raw.feature_types[i] for i in keep]
    raw.notes["set_aside_spike_ins"] = int(spike.sum())
    logger.info("sample %s: set aside %d ERCC spike-ins (obs['spike_in_counts'])", sample, int(spike.sum()))
    return counts


def _round_expected_counts(raw: _Raw, *, sample: str) -> None:
    """Plate data: non-integer expected counts (RSEM / Salmon) rounded to the nearest integer (half to even).

    Values that round to 0 are dropped from the sparse matrix. Negative or non-finite values stay errors.
    """
    data = raw.X.data
    fractional = np.isfinite(data) & (data >= 0) & (data != np.round(data))
    if not fractional.any():
        return
    raw.X.data = np.where(fractional, np.rint(data), data)
    raw.X.eliminate_zeros()
    raw.notes["rounded_expected_counts"] = int(fractional.sum())
    logger.info(
        "sample %s: rounded %d non-integer expected counts to the nearest integer (plate technology)",
        sample,
        int(fractional.sum()),
    )


def _validate(raw: _Raw, *, sample: str, path: Path) -> _Raw:
    if raw.feature_types is not None:
        types = np.asarray(raw.feature_types)
        keep = types == _GENE_EXPRESSION
        if not keep.any():
            raise input_error(
                f"no 'Gene Expression' features (feature types: {sorted(set(types))}).",
                sample=sample,
                path=path,
                fix="give the gene-expression matrix of this sample.",
            )
        if not keep.all():
            other = pd.Series(types[~keep]).value_counts().to_dict()
            logger.info(
                "sample %s: set aside %d non-gene-expression features %s; kept %d Gene Expression",
                sample,
                int((~keep).sum()),
                other,
                int(keep.sum()),
            )
            raw.notes["set_aside_features"] = {str(k): int(v) for k, v in other.items()}
            idx = np.flatnonzero(keep)
            raw.X = raw.X[:, idx]
            raw.symbols = [raw.symbols[i] for i in idx]
            raw.ids = [raw.ids[i] for i in idx]
    n_cells, n_genes = raw.X.shape
    if n_cells == 0 or n_genes == 0 or raw.X.nnz == 0:
        raise input_error(
            f"the count matrix is empty ({n_cells} cells x {n_genes} genes, {raw.X.nnz} non-zero values).",
            sample=sample,
            path=path,
            fix="point the sample sheet at the filtered matrix of a run that produced cells.",
        )
    if len(raw.barcodes) != n_cells or len(raw.symbols) != n_genes:
        raise input_error(
            f"{len(raw.barcodes)} barcodes / {len(raw.symbols)} gene names for a "
            f"{n_cells} x {n_genes} matrix.",
            sample=sample,
            path=path,
            fix="the file is inconsistent: export it again.",
        )
    dup = pd.Index(raw.barcodes)
    if dup.has_duplicates:
        examples = dup[dup.duplicated()].unique()[:3].tolist()
        raise input_error(
            f"{int(dup.duplicated().sum())} duplicated cell barcodes (e.g. {examples}).",
            sample=sample,
            path=path,
            fix="each cell must appear once: if several libraries were concatenated, give each "
            "its own row in the sample sheet (or make barcodes unique, e.g. with a suffix).",
        )
    problem = _count_problem(raw.X)
    if problem is not None:
        raise input_error(
            f"the values are not raw counts: {raw.counts_source} holds {problem}.",
            sample=sample,
            path=path,
            fix="give raw UMI counts (integers >= 0), not normalised/log-transformed data; for an "
            "h5ad put them in X, layers['counts'] or .raw.",
        )
    return raw


def _harmonise_genes(
    raw: _Raw, *, sample: str, path: Path, species: str, min_known: float
) -> tuple[pd.DataFrame, dict]:
    ids = [genes.strip_version(i.strip()) if i else "" for i in raw.ids]
    symbols = [s.strip() or i for s, i in zip(raw.symbols, ids, strict=True)]
    # Ensembl IDs in place of symbols: look the symbols up
    as_ids = [genes.is_ensembl(s) for s in symbols]
    if any(as_ids):
        looked_up = genes.ensembl_to_symbols([s for s, e in zip(symbols, as_ids, strict=True) if e], species)
        it = iter(looked_up)
        new = []
        for s, e in zip(symbols, as_ids, strict=True):
            if e:
                found = next(it)
                new.append(found if found else s)
            else:
                new.append(s)
        ids = [
            i or (genes.strip_version(s) if e else "") for i, s, e in zip(ids, symbols, as_ids, strict=True)
        ]
        symbols = new
    evidence = {
        sp_: max(
            genes.known_gene_fraction(symbols, sp_),
            genes.known_gene_fraction([i for i in ids if i] or [""], sp_),
        )
        for sp_ in genes.SPECIES
    }
    declared = evidence[species]
    other_name, other = max(((k, v) for k, v in evidence.items() if k != species), key=lambda kv: kv[1])
    logger.info(
        "sample %s: %.1f%% of %d genes known as %s genes (%s: %.1f%%)",
        sample,
        100 * declared,
        len(symbols),
        species,
        other_name,
        100 * other,
    )
    if declared < min_known:
        if other >= min_known and other > declared:
            raise input_error(
                f"the sample sheet declares species {species!r} but the gene names are "
                f"{other_name}: {100 * other:.0f}% are known {other_name} genes and only "
                f"{100 * declared:.0f}% are {species} (e.g. {symbols[:3]}).",
                sample=sample,
                path=path,
                fix=f"set species to {other_name!r} in the sample sheet if that is what this sample is.",
            )
        raise input_error(
            f"only {100 * declared:.0f}% of the {len(symbols)} gene names are known {species} "
            f"symbols or Ensembl IDs (minimum {100 * min_known:.0f}%; e.g. {symbols[:3]}).",
            sample=sample,
            path=path,
            fix="give gene symbols or Ensembl gene IDs of the declared species (check the "
            "species column, and whether the table is transposed), or lower "
            "ingest.min_known_gene_fraction if you are sure.",
        )
    resolved, renames = genes.resolve_symbols(symbols, species)
    table_ids = genes.symbols_to_ensembl(resolved, species)
    ids = [i if i else t for i, t in zip(ids, table_ids, strict=True)]
    unique = genes.make_unique(resolved)
    n_dup = sum(a != b for a, b in zip(unique, resolved, strict=True))
    if n_dup:
        logger.info(
            "sample %s: %d duplicated gene symbols made unique with -1, -2, ... suffixes", sample, n_dup
        )
    var = pd.DataFrame({"gene_symbol": resolved, "gene_id": ids}, index=pd.Index(unique, name=None))
    info = {
        "known_gene_fraction": {k: float(v) for k, v in evidence.items()},
        "n_renamed_symbols": len(renames),
        "renamed_symbols": dict(list(renames.items())[:200]),
        "n_duplicated_symbols": int(n_dup),
        "n_with_gene_id": int(sum(bool(i) for i in ids)),
    }
    return var, info


def read_sample(
    path: str | os.PathLike,
    *,
    sample: str,
    species: str,
    fmt: str | None = None,
    label_column: str | None = None,
    min_known_gene_fraction: float = 0.5,
    counts_layer: str = "auto",
    table_orientation: str = "auto",
    technology: str = "droplet",
) -> ad.AnnData:
    """Read one sample's count matrix in any supported format into the per-sample AnnData.

    Parameters
    ----------
    path
        File or directory (see :data:`FORMATS` and the module docstring).
    sample
        Sample name: prefixes cell names (``{sample}:{barcode}``) and names the sample in errors.
    species
        Declared species (``mouse`` or ``human``); checked against the gene names.
    fmt
        Force a format (one of :data:`FORMATS`); ``None``, ``""`` or ``"auto"`` detects it.
    label_column
        obs column (h5ad/loom) copied to ``obs["reference_label"]``.
    min_known_gene_fraction
        Minimum share of genes that must be known symbols/Ensembl IDs of ``species``.
    counts_layer
        h5ad/loom: ``auto`` (X, then ``layers["counts"]``, then ``.raw``), ``X``, ``raw`` or a layer name.
    table_orientation
        csv/tsv: ``auto``, ``genes_x_cells`` or ``cells_x_genes``.
    technology
        ``droplet`` or ``plate``: plate data may hold non-integer expected counts (RSEM / Salmon), rounded
        to the nearest integer (half to even). Any technology: ERCC spike-ins (``ERCC-00002`` ...) are set
        aside, their per-cell total in ``obs["spike_in_counts"]``.

    Returns
    -------
    Cells x genes AnnData: raw counts (CSR float32) in X, obs_names ``{sample}:{barcode}``, var
    ``gene_symbol``/``gene_id``, provenance in ``uns["hscseq"]["ingest"]``.
    """
    from hscseq import __version__

    path = Path(path)
    genes._check_species(species)
    if fmt in (None, "", "auto"):
        fmt = detect_format(path, sample=sample)
    elif fmt not in FORMATS:
        raise input_error(f"unknown format {fmt!r}.", sample=sample, path=path, fix=_FORMAT_HELP)
    elif not path.exists():
        raise input_error(
            "the count matrix does not exist.",
            sample=sample,
            path=path,
            fix="correct the 'path' column of the sample sheet.",
        )
    logger.info("sample %s: reading %s as %s", sample, path, fmt)
    try:
        if fmt == "10x_h5":
            raw = _read_10x_h5(path)
        elif fmt in ("10x_mtx", "starsolo"):
            raw = _read_mtx(
                path,
                sample=sample,
                reader_name="hscseq.ingest MTX" if fmt == "10x_mtx" else "hscseq.ingest STARsolo",
            )
        elif fmt == "h5ad":
            raw = _read_h5ad(path, sample=sample, counts_layer=counts_layer)
        elif fmt == "loom":
            raw = _read_loom(path, sample=sample, counts_layer=counts_layer)
        else:
            raw = _read_table(
                path, sample=sample, sep="," if fmt == "csv" else "\t", orientation=table_orientation
            )
    except HscseqInputError:
        raise
    except _READ_ERRORS as exc:
        what = "corrupt or truncated" if isinstance(exc, OSError | EOFError | zlib.error) else "unreadable"
        raise input_error(
            f"the {fmt} input is {what}: {type(exc).__name__}: {exc}",
            sample=sample,
            path=path,
            fix=f"check that the file is complete (copy it again and compare checksums) and that "
            f"it really is {fmt} (or set the sample sheet's 'format' column).",
        ) from exc
    if technology not in TECHNOLOGIES:
        raise input_error(
            f"unknown technology {technology!r}.", sample=sample, path=path, fix=f"use one of {TECHNOLOGIES}."
        )
    spike_counts = _set_aside_spike_ins(raw, sample=sample)
    if technology == "plate":
        _round_expected_counts(raw, sample=sample)
    raw = _validate(raw, sample=sample, path=path)
    var, gene_info = _harmonise_genes(
        raw, sample=sample, path=path, species=species, min_known=min_known_gene_fraction
    )
    obs = pd.DataFrame(index=pd.Index([f"{sample}:{b}" for b in raw.barcodes]))
    if label_column:
        if raw.obs is None or label_column not in raw.obs.columns:
            available = [] if raw.obs is None else list(raw.obs.columns)
            raise input_error(
                f"label_column {label_column!r} is not an obs column of this file (columns: {available}).",
                sample=sample,
                path=path,
                fix="set label_column to one of the listed columns, or leave it empty.",
            )
        labels = raw.obs[label_column].astype(object).where(raw.obs[label_column].notna(), "").astype(str)
        obs["reference_label"] = pd.Categorical(labels.to_numpy())
    if spike_counts is not None:
        obs["spike_in_counts"] = spike_counts.astype(np.float32)
    X = raw.X.astype(np.float32, copy=False)
    X.sort_indices()
    adata = ad.AnnData(X=X, obs=obs, var=var)
    root = path if path.is_dir() else path.parent
    digests = {str(f.relative_to(root)) if f.is_relative_to(root) else str(f): _sha256(f) for f in raw.files}
    sha = (
        next(iter(digests.values()))
        if len(digests) == 1
        else hashlib.sha256("".join(f"{d}  {n}\n" for n, d in sorted(digests.items())).encode()).hexdigest()
    )
    adata.uns["hscseq"] = {
        "ingest": {
            "source": str(path.resolve()),
            "sha256": sha,
            "files": digests,
            "format": fmt,
            "reader": raw.reader,
            "counts_source": raw.counts_source,
            "hscseq_version": __version__,
            "species": species,
            "technology": technology,
            "n_cells": int(adata.n_obs),
            "n_genes": int(adata.n_vars),
            "nnz": int(X.nnz),
            **gene_info,
            **raw.notes,
        }
    }
    logger.info(
        "sample %s: %d cells x %d genes from %s (%s; counts from %s)",
        sample,
        adata.n_obs,
        adata.n_vars,
        path,
        raw.reader,
        raw.counts_source,
    )
    return adata


def run_ingest(*, counts: str, h5ad: str, sample: dict, settings: dict) -> None:
    """Snakemake entry point: read ``counts``, add the sample-sheet columns, write ``h5ad`` atomically.

    Parameters
    ----------
    counts
        Count matrix path (the sample sheet's ``path``).
    h5ad
        Output per-sample h5ad.
    sample
        Sample-sheet row (sample, path, species, condition, batch, format, timepoint, donor, label_column).
    settings
        The ``ingest`` config section.
    """
    name = str(sample["sample"])
    adata = read_sample(
        counts,
        sample=name,
        species=str(sample["species"]),
        fmt=sample.get("format") or None,
        label_column=sample.get("label_column") or None,
        min_known_gene_fraction=float(settings.get("min_known_gene_fraction", 0.5)),
        counts_layer=str(settings.get("counts_layer", "auto")),
        table_orientation=str(settings.get("table_orientation", "auto")),
        technology=str(sample.get("technology") or "droplet"),
    )
    for col in ("sample", "species", "condition", "batch", "timepoint", "donor"):
        value = sample.get(col, "")
        value = "" if value is None or (isinstance(value, float) and np.isnan(value)) else str(value)
        adata.obs[col] = pd.Categorical([value] * adata.n_obs)
    write_h5ad(adata, h5ad)
    logger.info("sample %s: wrote %s", name, h5ad)
