"""Cheap checks of HDF5 count matrices (10x .h5, h5ad, loom): metadata and the first stored values only."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import h5py
import numpy as np

from hscseq.ingest._raw import _COUNT_LAYERS, _GENE_EXPRESSION
from hscseq.ingest.h5ad import _gene_columns
from hscseq.ingest.loom import _counts_source
from hscseq.validate._base import _EXPORT_AGAIN, _RAW_COUNTS, N_VALUES, Peek, _Bad, _decode, _value_problem


def _peek_10x_h5(path: Path, peek: Peek, row: Mapping, settings: Mapping) -> list[str]:
    with h5py.File(path, "r") as f:
        if "matrix" in f:
            groups, v3 = [f["matrix"]], True
        else:
            groups = [f[k] for k in sorted(f) if isinstance(f[k], h5py.Group) and "barcodes" in f[k]]
            v3 = False
        if not groups:
            raise _Bad("no 'matrix' group and no genome group (not a Cell Ranger .h5).", _EXPORT_AGAIN)
        barcodes: list[str] = []
        for g in groups:
            need = ["shape", "data", "indices", "indptr", "barcodes"] + (["features"] if v3 else ["genes"])
            missing = [k for k in need if k not in g]
            if missing:
                raise _Bad(f"the group {g.name} lacks {missing}.", _EXPORT_AGAIN)
            n_features, n_cells = (int(x) for x in g["shape"][()])
            barcodes = _decode(g["barcodes"][()])
            if v3:
                ids, names = _decode(g["features/id"][()]), _decode(g["features/name"][()])
                types = (
                    _decode(g["features/feature_type"][()])
                    if "feature_type" in g["features"]
                    else [_GENE_EXPRESSION] * len(ids)
                )
            else:
                ids = _decode(g["genes"][()])
                names = _decode(g["gene_names"][()]) if "gene_names" in g else ids
                types = [_GENE_EXPRESSION] * len(ids)
            nnz = g["data"].shape[0]
            lies = []
            if len(barcodes) != n_cells:
                lies.append(f"{len(barcodes)} barcodes")
            if len(ids) != n_features:
                lies.append(f"{len(ids)} features")
            if g["indptr"].shape[0] != n_cells + 1:
                lies.append(f"an indptr of length {g['indptr'].shape[0]} (expected {n_cells + 1})")
            elif n_cells and int(g["indptr"][-1]) != nnz:
                lies.append(f"indptr ending at {int(g['indptr'][-1])} for {nnz} stored values")
            if g["indices"].shape[0] != nnz:
                lies.append(f"{g['indices'].shape[0]} indices for {nnz} values")
            if lies:
                raise _Bad(
                    f"the shape of {g.name} says {n_features} features x {n_cells} cells but it holds "
                    + ", ".join(lies)
                    + ".",
                    _EXPORT_AGAIN,
                )
            head_idx = g["indices"][: min(nnz, N_VALUES)]
            if head_idx.size and (head_idx.min() < 0 or head_idx.max() >= n_features):
                raise _Bad("feature indices outside the matrix dimensions.", _EXPORT_AGAIN)
            problem = _value_problem(g["data"][: min(nnz, N_VALUES)], "10x_h5", row)
            if problem:
                raise _Bad(f"the values are not raw counts: {g.name}/data holds {problem}.", _RAW_COUNTS)
            keep = [t == _GENE_EXPRESSION for t in types]
            if not any(keep):
                raise _Bad(
                    f"no 'Gene Expression' features (feature types: {sorted(set(types))}).",
                    "give the gene-expression matrix of this sample.",
                )
            peek.symbols += [n for n, k in zip(names, keep, strict=True) if k]
            peek.ids += [i for i, k in zip(ids, keep, strict=True) if k]
            if nnz == 0:
                peek.cells, peek.genes = n_cells, 0
                return barcodes
    peek.cells, peek.genes = len(barcodes), len(peek.symbols)
    return barcodes


def _slot_info(node) -> tuple[tuple[int, int], np.ndarray]:
    """(shape, first stored values) of an h5ad matrix slot (dense dataset or sparse group)."""
    if isinstance(node, h5py.Dataset):
        shape = tuple(int(x) for x in node.shape)
        if len(shape) != 2:
            raise _Bad(f"{node.name} is not a matrix (shape {shape}).", _EXPORT_AGAIN)
        rows = max(1, N_VALUES // max(shape[1], 1))
        return shape, np.asarray(node[: min(rows, shape[0])])
    shape = tuple(int(x) for x in node.attrs["shape"])
    return shape, np.asarray(node["data"][: min(node["data"].shape[0], N_VALUES)])


def _h5ad_index(group) -> list[str]:
    key = group.attrs.get("_index", "_index")
    return _decode(group[key][()])


def _h5ad_labels(obs, column: str) -> list[str] | None:
    if column not in obs:
        return None
    node = obs[column]
    if isinstance(node, h5py.Group) and "categories" in node:
        cats = _decode(node["categories"][()])
        used = np.unique(node["codes"][()])
        values = [cats[i] for i in used if i >= 0]
    else:
        values = _decode(np.unique(node[()]))
    return sorted({v for v in values if v.strip() and v.lower() != "nan"})


def _peek_h5ad(path: Path, peek: Peek, row: Mapping, settings: Mapping) -> list[str]:
    from anndata.io import read_elem

    counts_layer = str(settings.get("counts_layer", "auto"))
    with h5py.File(path, "r") as f:
        if "obs" not in f or "var" not in f or not isinstance(f["obs"], h5py.Group):
            raise _Bad(f"no obs/var groups (top-level keys {sorted(f)}).", _EXPORT_AGAIN)
        barcodes = _h5ad_index(f["obs"])
        slots = [("X", "X", "var")] if "X" in f else []
        layers = list(f["layers"]) if "layers" in f else []
        slots += [(f"layers[{k!r}]", f"layers/{k}", "var") for k in layers if k in _COUNT_LAYERS]
        slots += [(f"layers[{k!r}]", f"layers/{k}", "var") for k in layers if k not in _COUNT_LAYERS]
        if "raw" in f and "X" in f["raw"]:
            slots.append((".raw", "raw/X", "raw/var"))
        wanted = {"auto": None, "X": "X", "raw": ".raw"}.get(counts_layer, f"layers[{counts_layer!r}]")
        if wanted is not None and wanted not in [s[0] for s in slots]:
            raise _Bad(
                f"ingest.counts_layer is {counts_layer!r} but the file has no {wanted}.",
                f"set ingest.counts_layer to auto or one of {[s[0] for s in slots]}.",
            )
        found, why = None, {}
        for where, key, var_key in slots:
            if (wanted is not None and where != wanted) or (
                wanted is None and where.startswith("layers") and where[8:-2] not in _COUNT_LAYERS
            ):
                continue
            shape, head = _slot_info(f[key])
            problem = _value_problem(head, "h5ad", row)
            if shape[0] != len(barcodes):
                why[where] = f"{shape[0]} rows for {len(barcodes)} cells"
            elif problem is None:
                found = (where, shape, var_key)
                break
            else:
                why[where] = problem
        if found is None:
            detail = "; ".join(f"{k} holds {v}" for k, v in why.items()) or "no count matrix"
            raise _Bad(f"no raw counts found: {detail}.", _RAW_COUNTS)
        where, shape, var_key = found
        var = read_elem(f[var_key])
        peek.symbols, peek.ids = _gene_columns(var, var.index)
        peek.cells, peek.genes = shape
        if "feature_types" in var.columns:
            keep = var["feature_types"].astype(str).eq(_GENE_EXPRESSION).to_numpy()
            peek.symbols = [s for s, k in zip(peek.symbols, keep, strict=True) if k]
            peek.ids = [s for s, k in zip(peek.ids, keep, strict=True) if k]
        node = f[{"X": "X", ".raw": "raw/X"}.get(where, f"layers/{where[8:-2]}")]
        if isinstance(node, h5py.Group) and node["data"].shape[0] == 0:
            peek.genes = 0
        label_column = str(row.get("label_column") or "")
        if label_column:
            peek.labels = _h5ad_labels(f["obs"], label_column)
            if peek.labels is None:
                raise _Bad(
                    f"label_column {label_column!r} is not an obs column of this file "
                    f"(columns: {sorted(k for k in f['obs'] if not k.startswith('_'))}).",
                    "set label_column to one of the listed columns, or leave it empty.",
                )
    return barcodes


def _peek_loom(path: Path, peek: Peek, row: Mapping, settings: Mapping) -> list[str]:
    counts_layer = str(settings.get("counts_layer", "auto"))
    with h5py.File(path, "r") as f:
        if "matrix" not in f or "row_attrs" not in f or "col_attrs" not in f:
            raise _Bad(f"not a loom file (top-level keys {sorted(f)}).", _EXPORT_AGAIN)
        source = _counts_source(f, counts_layer)
        ds = f[source]
        n_genes, n_cells = ds.shape
        problem = _value_problem(ds[:, : max(1, min(n_cells, N_VALUES // max(n_genes, 1)))], "loom", row)
        if problem:
            raise _Bad(f"the values are not raw counts: {source} holds {problem}.", _RAW_COUNTS)

        def attr(group, keys):
            key = next((k for k in keys if k in group), None)
            return _decode(group[key][()]) if key else None

        barcodes = attr(f["col_attrs"], ("CellID", "obs_names", "cell_names", "Barcode", "barcode"))
        symbols = attr(f["row_attrs"], ("Gene", "var_names", "gene_names", "Symbol", "gene_symbol"))
        if barcodes is None or symbols is None:
            raise _Bad(
                "the loom file has no cell IDs (col_attrs/CellID) or gene names (row_attrs/Gene).",
                "write the loom with CellID and Gene attributes.",
            )
        if (len(symbols), len(barcodes)) != (n_genes, n_cells):
            raise _Bad(
                f"the matrix is {n_genes} genes x {n_cells} cells but the file names {len(symbols)} "
                f"genes and {len(barcodes)} cells.",
                _EXPORT_AGAIN,
            )
        peek.symbols = symbols
        peek.ids = attr(f["row_attrs"], ("Accession", "gene_ids", "gene_id")) or []
        peek.cells, peek.genes = n_cells, n_genes
        label_column = str(row.get("label_column") or "")
        if label_column:
            if label_column not in f["col_attrs"]:
                raise _Bad(
                    f"label_column {label_column!r} is not a col_attrs entry of this loom file.",
                    f"set label_column to one of {sorted(f['col_attrs'])}, or leave it empty.",
                )
            peek.labels = sorted({v for v in _decode(f["col_attrs"][label_column][()]) if v.strip()})
    return barcodes
