"""Reader of h5ad files: the slot holding raw counts (X, a counts layer or ``.raw``) and its gene columns."""

from __future__ import annotations

from importlib.metadata import version as _version
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from hscseq import genes
from hscseq._utils import input_error
from hscseq.ingest._raw import _COUNT_LAYERS, _Raw
from hscseq.ingest.checks import _count_problem


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
