"""Cheap checks of text count matrices (10x/STARsolo MTX folders, dense CSV/TSV tables).

MTX: the header, the barcode and feature lists, and the first ``N_VALUES`` entries; an entry count the
dimensions or the file size cannot hold is refused before anything is allocated. Tables: the header and the
first ``N_TABLE_ROWS`` rows value by value, then only the first field of every line (names and counts).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from hscseq._utils import special_file_kind
from hscseq.ingest._raw import _FORMAT_HELP, _GENE_EXPRESSION, _first, _open_text
from hscseq.ingest.detect import _mtx_dir
from hscseq.ingest.mtx import _mtx_header, _read_lines
from hscseq.ingest.table import _orientation, _split_line
from hscseq.validate._base import (
    _EXPORT_AGAIN,
    _MAX_GZIP_RATIO,
    _MIN_ENTRY_BYTES,
    _RAW_COUNTS,
    N_TABLE_ROWS,
    N_VALUES,
    Peek,
    _Bad,
    _value_problem,
)

_MTX_NAMES = ("matrix.mtx", "barcodes.tsv", "features.tsv", "genes.tsv")


def refuse_special_children(path: Path) -> None:
    """Refuse a FIFO/socket/device named like an MTX file in ``path`` or a Cell Ranger/STARsolo subfolder."""
    subdirs = ("", "filtered_feature_bc_matrix", "outs/filtered_feature_bc_matrix", "Solo.out/Gene/filtered")
    for sub in subdirs:
        if (path / sub).is_dir():
            _refuse_special_children(path / sub)


def _refuse_special_children(directory: Path) -> None:
    for child in directory.iterdir():
        if child.name.removesuffix(".gz") in _MTX_NAMES:
            kind = special_file_kind(child)
            if kind:
                raise _Bad(
                    f"{child.name} is {kind}, not a regular file; it was not opened.",
                    "copy the real matrix files into the folder.",
                    path=child,
                )


def _mtx_entries(matrix: Path, n_header: int, n: int) -> np.ndarray:
    """The first ``n`` entries (row, col, value) of a MatrixMarket file as floats (truncation raises)."""
    rows = []
    with _open_text(matrix) as fh:
        for line in itertools.islice(fh, n_header, n_header + n):
            fields = line.split()
            if len(fields) != 3:
                raise _Bad(
                    f"an entry line of {matrix.name} has {len(fields)} fields instead of 3 "
                    f"({line.strip()!r}).",
                    _EXPORT_AGAIN,
                    path=matrix,
                )
            rows.append([float(x) for x in fields])
    if len(rows) < n:
        raise _Bad(
            f"{matrix.name} holds only {len(rows)} entries but its header announces more (truncated?).",
            _EXPORT_AGAIN,
            path=matrix,
        )
    return np.asarray(rows, dtype=np.float64).reshape(-1, 3)


def peek_mtx(path: Path, peek: Peek, row: Mapping, settings: Mapping) -> list[str]:
    if not path.is_dir():
        raise _Bad(
            "the path is a file, but an MTX/STARsolo input is a folder (matrix.mtx, barcodes, features).",
            "give the folder holding matrix.mtx(.gz), or fix the 'format' column.",
        )
    _refuse_special_children(path)
    directory = _mtx_dir(path)
    if directory is None:
        raise _Bad("the directory holds no matrix.mtx(.gz) (not a 10x MTX or STARsolo folder).", _FORMAT_HELP)
    _refuse_special_children(directory)
    matrix = _first(directory, "matrix.mtx")
    barcode_file = _first(directory, "barcodes.tsv")
    feature_file = _first(directory, "features.tsv", "genes.tsv")
    if barcode_file is None or feature_file is None:
        raise _Bad(
            "the MTX directory lacks barcodes.tsv(.gz) or features.tsv(.gz)/genes.tsv.",
            "copy the whole Cell Ranger/STARsolo matrix folder (matrix, barcodes, features).",
            path=directory,
        )
    try:
        _field, n_features, n_cells, nnz, n_header = _mtx_header(matrix)
    except ValueError as exc:
        raise _Bad(
            f"{matrix.name} has no valid MatrixMarket header ({exc}).", _EXPORT_AGAIN, path=matrix
        ) from exc
    size = matrix.stat().st_size
    capacity = size * (_MAX_GZIP_RATIO if matrix.name.endswith(".gz") else 1) // _MIN_ENTRY_BYTES
    if nnz < 0 or nnz > n_features * n_cells or nnz > capacity:
        limit = "its dimensions" if nnz > n_features * n_cells else f"a {size}-byte file"
        raise _Bad(
            f"the header announces {nnz} entries for {n_features} features x {n_cells} cells, more than "
            f"{limit} can hold (corrupt header); nothing was allocated.",
            "the file is corrupt: copy the whole matrix folder again from its source.",
            path=matrix,
        )
    barcodes = [r[0] for r in _read_lines(barcode_file)]
    features = _read_lines(feature_file)
    if (n_features, n_cells) != (len(features), len(barcodes)):
        raise _Bad(
            f"matrix.mtx is {n_features} features x {n_cells} cells but {feature_file.name} lists "
            f"{len(features)} features and {barcode_file.name} lists {len(barcodes)} barcodes.",
            "the three files come from different runs or were truncated: copy the whole folder again.",
            path=directory,
        )
    entries = _mtx_entries(matrix, n_header - 1, min(nnz, N_VALUES))
    if entries.size:
        r, c = entries[:, 0], entries[:, 1]
        if r.min() < 1 or r.max() > n_features or c.min() < 1 or c.max() > n_cells:
            raise _Bad("entry indices outside the matrix dimensions.", _EXPORT_AGAIN, path=matrix)
        problem = _value_problem(entries[:, 2], "10x_mtx", row)  # STARsolo: the same reader
        if problem:
            raise _Bad(
                f"the values are not raw counts: {matrix.name} holds {problem}.", _RAW_COUNTS, path=matrix
            )
    types = [r[2] if len(r) > 2 else _GENE_EXPRESSION for r in features]
    keep = [t == _GENE_EXPRESSION for t in types]
    peek.ids = [r[0] for r, k in zip(features, keep, strict=True) if k]
    peek.symbols = [(r[1] if len(r) > 1 else r[0]) for r, k in zip(features, keep, strict=True) if k]
    peek.cells, peek.genes = n_cells, (len(peek.symbols) if nnz else 0)
    return barcodes


def peek_table(path: Path, peek: Peek, row: Mapping, settings: Mapping, sep: str) -> list[str]:
    if path.is_dir():
        raise _Bad("the path is a directory, but a csv/tsv input is a file.", "give the table file itself.")
    with _open_text(path) as fh:
        first_line = fh.readline()
        other = "\t" if sep == "," else ","
        if sep not in first_line and other in first_line:
            name = {"\t": "tab", ",": "comma"}
            raise _Bad(
                f"the 'format' says {name[sep]}-separated but the header line is {name[other]}-separated.",
                f"set the sample sheet's 'format' to {'tsv' if other == chr(9) else 'csv'} "
                "(or leave it empty).",
            )
        header = [h.strip() for h in _split_line(first_line, sep)]
        head_rows = [_split_line(line, sep) for line in itertools.islice(fh, N_TABLE_ROWS) if line.strip()]
        labels = [r[0] for r in head_rows]
        labels += [line.split(sep, 1)[0].strip().strip('"') for line in fh if line.strip()]
    if not head_rows:
        raise _Bad(
            "the table has a header but no data rows (zero cells or genes).",
            "check that the export finished; the file is empty.",
        )
    n_fields = len(head_rows[0])
    if len(header) == n_fields:
        header = header[1:]
    if len(header) != n_fields - 1 or any(len(r) != n_fields for r in head_rows):
        bad = next((i for i, r in enumerate(head_rows, start=2) if len(r) != len(header) + 1), 2)
        raise _Bad(
            f"the table is not rectangular: the header names {len(header)} columns but line {bad} has "
            f"{len(head_rows[bad - 2]) - 1 if bad - 2 < len(head_rows) else n_fields - 1} values.",
            "give a rectangular table: one header line, then one label and one value per column on "
            "every line.",
        )
    try:
        values = np.array([[float(x) if x.strip() else np.nan for x in r[1:]] for r in head_rows])
    except ValueError as exc:
        raise _Bad(f"a value in the first rows is not a number ({exc}).", _RAW_COUNTS) from exc
    problem = _value_problem(values.ravel()[:N_VALUES], "csv" if sep == "," else "tsv", row)
    if problem:
        raise _Bad(f"the values are not raw counts: the table holds {problem}.", _RAW_COUNTS)
    orientation = str(settings.get("table_orientation", "auto"))
    if orientation == "auto":
        try:
            orientation = _orientation(header, labels)
        except ValueError as exc:
            raise _Bad(
                f"{exc}.", "set ingest.table_orientation, or give gene symbols / Ensembl IDs."
            ) from exc
    if orientation == "genes_x_cells":
        peek.symbols, barcodes = labels, header
    else:
        peek.symbols, barcodes = header, labels
    peek.ids = []
    peek.cells, peek.genes = len(barcodes), len(peek.symbols)
    return barcodes
