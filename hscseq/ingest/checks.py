"""The raw-count rule and the checks every reader's result passes (feature types, shape, barcodes, counts)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from hscseq._utils import input_error
from hscseq.ingest._raw import _BLOCK, _GENE_EXPRESSION, _Raw

logger = logging.getLogger(__name__)

#: What to do about values that are not raw counts (ingest's message and the pre-run check's).
_RAW_COUNTS_FIX = (
    "give raw UMI counts (integers >= 0), not normalised/log-transformed data; for an h5ad put them in "
    "X, layers['counts'] or .raw. Plate-based expected counts (RSEM / Salmon) in any format but h5ad: set "
    "the sample sheet's technology to plate (they are then rounded)."
)


def _count_problem(X: sp.spmatrix, *, expected_counts: bool = False) -> str | None:
    """Why the stored values of ``X`` are not raw counts (NaN/inf, negative, non-integer), or None.

    With ``expected_counts`` (plate data that ingest rounds, see
    :func:`hscseq.ingest.plate._rounds_expected_counts`) non-integer values are accepted; NaN, infinite and
    negative values never are.
    """
    data = X.data
    for start in range(0, len(data), _BLOCK):
        block = data[start : start + _BLOCK]
        if not np.all(np.isfinite(block)):
            return "NaN or infinite values"
        if np.any(block < 0):
            return f"negative values (minimum {float(data.min()):g})"
        if not expected_counts and np.any(block != np.round(block)):
            bad = block[block != np.round(block)][:3]
            return f"non-integer values (e.g. {', '.join(f'{v:g}' for v in bad)})"
    return None


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
            fix=_RAW_COUNTS_FIX,
        )
    return raw
