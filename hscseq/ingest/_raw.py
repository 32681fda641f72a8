"""What every reader shares: format names, constants, the ``_Raw`` record readers return, file helpers."""

from __future__ import annotations

import gzip
import io
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

#: Format names of the sample sheet's ``format`` column.
FORMATS = ("10x_h5", "10x_mtx", "starsolo", "h5ad", "loom", "csv", "tsv")

#: Sequencing technologies of the sample sheet's ``technology`` column.
TECHNOLOGIES = ("droplet", "plate")

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


def _decode(values) -> list[str]:
    return [v.decode() if isinstance(v, bytes) else str(v) for v in np.asarray(values).tolist()]


def _index_dtype(n: int) -> type:
    """int32 index arrays while they can hold ``n`` (scipy would otherwise copy them to a common dtype)."""
    return np.int32 if n < np.iinfo(np.int32).max else np.int64
