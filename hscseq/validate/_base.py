"""Shared pieces of the cheap input checks: the Peek record, limits, value rule, file descriptions."""

from __future__ import annotations

import gzip
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np
import scipy.sparse as sp

from hscseq._utils import special_file_kind
from hscseq.ingest._raw import _HDF5_MAGIC
from hscseq.ingest.checks import _RAW_COUNTS_FIX, _count_problem
from hscseq.ingest.detect import _mtx_dir
from hscseq.ingest.plate import _rounds_expected_counts

logger = logging.getLogger(__name__)

#: Stored values checked per count slot (first values of the file, in storage order).
N_VALUES = 100_000
#: Data rows of a dense table checked value by value (the first column of every row is still read).
N_TABLE_ROWS = 200
#: A sample with fewer cells cannot get adaptive QC thresholds (median/MAD) or doublet calls.
MIN_CELLS = 20
#: Smallest possible MatrixMarket entry line ("1 1 1\n") and gzip's maximal compression ratio.
_MIN_ENTRY_BYTES = 6
_MAX_GZIP_RATIO = 1032
_FAMILIES = {"10x_mtx": "mtx", "starsolo": "mtx"}


@dataclass
class Peek:
    """What the cheap look at one sample found."""

    fmt: str = ""
    cells: int | None = None
    genes: int | None = None
    symbols: list[str] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)
    labels: list[str] | None = None  # distinct non-empty values of label_column
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


class _Bad(Exception):
    """A problem found while peeking (message without the sample/file prefix); ``fix`` says what to do."""

    def __init__(self, what: str, fix: str, path: Path | None = None):
        super().__init__(what)
        self.fix = fix
        self.path = path


_EXPORT_AGAIN = "the file is inconsistent or truncated: export or copy it again from its source."
_RAW_COUNTS = _RAW_COUNTS_FIX


def _decode(values) -> list[str]:
    return [v.decode() if isinstance(v, bytes) else str(v) for v in np.asarray(values).ravel().tolist()]


def _value_problem(values, fmt: str, row: Mapping) -> str | None:
    """Why these stored values of a ``fmt`` input are not raw counts (ingest's own rule for the sample-sheet
    row's technology: plate expected counts are accepted where ingest rounds them), or None."""
    arr = np.asarray(values, dtype=np.float64).ravel()
    expected = _rounds_expected_counts(fmt, str(row.get("technology") or "droplet"))
    return _count_problem(sp.csr_matrix(arr.reshape(1, -1)), expected_counts=expected) if arr.size else None


def describe(path: Path) -> str:
    """A short description of what ``path`` looks like (for 'wrong format' hints). Never opens a FIFO."""
    kind = special_file_kind(path)
    if kind:
        return kind
    if path.is_dir():
        names = sorted(p.name for p in path.iterdir())[:6]
        mtx = _mtx_dir(path)
        looks = f"a 10x/STARsolo MTX folder ({mtx})" if mtx else "a directory"
        return f"{looks} holding {names}"
    try:
        with open(path, "rb") as fh:
            head = fh.read(512)
    except OSError as exc:
        return f"an unreadable file ({exc})"
    if head.startswith(_HDF5_MAGIC):
        try:
            with h5py.File(path, "r") as f:
                return f"an HDF5 file with top-level keys {sorted(f.keys())[:8]}"
        except OSError:
            return "a damaged HDF5 file"
    if head.startswith(b"\x1f\x8b"):
        try:
            with gzip.open(path, "rb") as fh:
                head = fh.read(512)
        except (OSError, EOFError):
            return "a damaged gzip file"
        prefix = "a gzip-compressed "
    else:
        prefix = "a "
    if head.startswith(b"PK"):
        return "a ZIP archive (e.g. an Excel workbook)"
    if head.startswith(b"%%MatrixMarket"):
        return prefix + "MatrixMarket file"
    try:
        first = head.decode("utf-8").splitlines()[0] if head.strip() else ""
    except UnicodeDecodeError:
        return prefix + "binary file"
    if "\t" in first:
        return prefix + "tab-separated text table"
    if "," in first:
        return prefix + "comma-separated text table"
    return prefix + f"text file starting {first[:40]!r}" if first else "an empty file"
