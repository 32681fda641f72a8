"""Writers of real input formats (10x h5, 10x MTX v2/v3, dense tables, h5ad), used for the demo and the
ingest test fixtures, and :func:`sha256sums` of a written folder.
"""

from __future__ import annotations

import gzip
import hashlib
import io
from collections.abc import Sequence
from pathlib import Path

import anndata as ad
import h5py
import numpy as np
import pandas as pd
import scipy.sparse as sp

from hscseq._utils import atomic_path


def _gzip_bytes(data: bytes) -> bytes:
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0, filename="") as fh:
        fh.write(data)
    return buf.getvalue()


def write_10x_h5(adata: ad.AnnData, path: str | Path, *, genome: str = "mm10") -> None:
    """Write raw counts as a Cell Ranger v3 ``filtered_feature_bc_matrix.h5``."""
    matrix = sp.csc_matrix(adata.X.T).astype(np.int32)  # genes x cells, columns = cells
    with atomic_path(path) as tmp, h5py.File(tmp, "w", track_order=False) as f:
        g = f.create_group("matrix")
        g.create_dataset("barcodes", data=np.array(adata.obs_names, dtype="S"))
        g.create_dataset("data", data=matrix.data, compression="gzip", compression_opts=4)
        g.create_dataset(
            "indices", data=matrix.indices.astype(np.int64), compression="gzip", compression_opts=4
        )
        g.create_dataset("indptr", data=matrix.indptr.astype(np.int64))
        g.create_dataset("shape", data=np.array(matrix.shape, dtype=np.int32))
        feat = g.create_group("features")
        n = adata.n_vars
        feat.create_dataset("id", data=np.array(_gene_ids(adata), dtype="S"))
        feat.create_dataset("name", data=np.array(adata.var_names, dtype="S"))
        feat.create_dataset("feature_type", data=np.array(["Gene Expression"] * n, dtype="S"))
        feat.create_dataset("genome", data=np.array([genome] * n, dtype="S"))
        feat.create_dataset("_all_tag_keys", data=np.array(["genome"], dtype="S"))


def _gene_ids(adata: ad.AnnData) -> list[str]:
    ids = adata.var["gene_ids"] if "gene_ids" in adata.var else pd.Series("", index=adata.var_names)
    return [i if i else s for i, s in zip(ids, adata.var_names, strict=True)]


def write_10x_mtx(adata: ad.AnnData, directory: str | Path, *, version: int = 3) -> None:
    """Write raw counts as a Cell Ranger MTX directory (v3: gzipped, ``features.tsv.gz``; v2: plain)."""
    matrix = sp.coo_matrix(adata.X.T)
    header = (
        "%%MatrixMarket matrix coordinate integer general\n%\n"
        f"{matrix.shape[0]} {matrix.shape[1]} {matrix.nnz}\n"
    )
    order = np.lexsort((matrix.row, matrix.col))
    lines = np.char.add(
        np.char.add(
            np.char.add((matrix.row[order] + 1).astype(str), " "),
            np.char.add((matrix.col[order] + 1).astype(str), " "),
        ),
        matrix.data[order].astype(np.int64).astype(str),
    )
    mtx = (header + "\n".join(lines.tolist()) + "\n").encode()
    barcodes = ("\n".join(adata.obs_names) + "\n").encode()
    ids = _gene_ids(adata)
    if version == 3:
        features = "".join(f"{i}\t{s}\tGene Expression\n" for i, s in zip(ids, adata.var_names, strict=True))
        files = {
            "matrix.mtx.gz": _gzip_bytes(mtx),
            "barcodes.tsv.gz": _gzip_bytes(barcodes),
            "features.tsv.gz": _gzip_bytes(features.encode()),
        }
    else:
        genes = "".join(f"{i}\t{s}\n" for i, s in zip(ids, adata.var_names, strict=True))
        files = {"matrix.mtx": mtx, "barcodes.tsv": barcodes, "genes.tsv": genes.encode()}
    with atomic_path(directory) as tmp:
        tmp.mkdir()
        for name, data in files.items():
            (tmp / name).write_bytes(data)


def write_dense_table(adata: ad.AnnData, path: str | Path) -> None:
    """Write raw counts as a dense genes x cells TSV (gzipped when the name ends in .gz)."""
    df = pd.DataFrame(adata.X.T.toarray().astype(np.int64), index=adata.var_names, columns=adata.obs_names)
    text = df.to_csv(sep="\t").encode()
    with atomic_path(path) as tmp:
        tmp.write_bytes(_gzip_bytes(text) if str(path).endswith(".gz") else text)


def _strip_truth(adata: ad.AnnData, keep: Sequence[str] = ()) -> ad.AnnData:
    out = ad.AnnData(X=adata.X.copy(), obs=adata.obs[list(keep)].copy(), var=adata.var[["gene_ids"]].copy())
    return out


def write_h5ad_sample(
    adata: ad.AnnData, path: str | Path, *, counts_in: str = "X", keep_obs: Sequence[str] = ()
) -> None:
    """Write an h5ad as a lab would: counts in X, or in ``layers["counts"]`` with log-normalised X."""
    out = _strip_truth(adata, keep_obs)
    if counts_in == "layers":
        out.layers["counts"] = out.X.copy()
        lib = np.asarray(out.X.sum(axis=1)).ravel()
        norm = sp.diags(1e4 / np.maximum(lib, 1)) @ out.X
        out.X = sp.csr_matrix(norm).log1p().astype(np.float32)
    with atomic_path(path) as tmp:
        out.write_h5ad(tmp.with_suffix(".h5ad"), compression="gzip")
        tmp.with_suffix(".h5ad").rename(tmp)


def sha256sums(directory: str | Path) -> dict[str, str]:
    """sha256 of every file below ``directory`` (relative path -> hex digest)."""
    directory = Path(directory)
    return {
        str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }
