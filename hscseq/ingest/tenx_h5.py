"""Reader of Cell Ranger HDF5: v3 (``matrix/features``, feature types kept), v2 (one group per genome)."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import scipy.sparse as sp

from hscseq.ingest._raw import _GENE_EXPRESSION, _decode, _index_dtype, _Raw


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
