"""``read_sample``: one sample's count matrix, in any supported format, into the per-sample AnnData."""

from __future__ import annotations

import hashlib
import logging
import os
import zlib
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd

from hscseq import genes
from hscseq._utils import HscseqInputError, input_error
from hscseq.ingest._raw import _FORMAT_HELP, _READ_ERRORS, FORMATS, TECHNOLOGIES, _Raw
from hscseq.ingest.checks import _validate
from hscseq.ingest.detect import _require_input, detect_format
from hscseq.ingest.gene_ids import _harmonise_genes
from hscseq.ingest.h5ad import _read_h5ad
from hscseq.ingest.loom import _read_loom
from hscseq.ingest.mtx import _read_mtx
from hscseq.ingest.plate import _round_expected_counts, _rounds_expected_counts, _set_aside_spike_ins
from hscseq.ingest.table import _read_table
from hscseq.ingest.tenx_h5 import _read_10x_h5

logger = logging.getLogger(__name__)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _resolve_format(path: Path, fmt: str | None, *, sample: str) -> str:
    """The format to read ``path`` as: ``fmt`` checked, or detected when ``None``, ``""`` or ``"auto"``."""
    if fmt in (None, "", "auto"):
        fmt = detect_format(path, sample=sample)
    elif fmt not in FORMATS:
        raise input_error(f"unknown format {fmt!r}.", sample=sample, path=path, fix=_FORMAT_HELP)
    else:
        _require_input(path, sample)
    return fmt


def _read_raw(path: Path, fmt: str, *, sample: str, counts_layer: str, table_orientation: str) -> _Raw:
    """The reader of ``fmt``; a file it cannot parse becomes an input error naming the sample and file."""
    try:
        if fmt == "10x_h5":
            return _read_10x_h5(path)
        if fmt in ("10x_mtx", "starsolo"):
            return _read_mtx(
                path,
                sample=sample,
                reader_name="hscseq.ingest MTX" if fmt == "10x_mtx" else "hscseq.ingest STARsolo",
            )
        if fmt == "h5ad":
            return _read_h5ad(path, sample=sample, counts_layer=counts_layer)
        if fmt == "loom":
            return _read_loom(path, sample=sample, counts_layer=counts_layer)
        return _read_table(
            path, sample=sample, sep="," if fmt == "csv" else "\t", orientation=table_orientation
        )
    except HscseqInputError:
        raise
    except _READ_ERRORS as exc:
        what = "corrupt or truncated" if isinstance(exc, OSError | EOFError | zlib.error) else "unreadable"
        from hscseq.validate._base import describe  # what the file looks like, for a wrongly forced format

        raise input_error(
            f"the {fmt} input is {what}: {type(exc).__name__}: {exc} (the file looks like {describe(path)})",
            sample=sample,
            path=path,
            fix=f"check that the file is complete (copy it again and compare checksums) and that "
            f"it really is {fmt} (or set the sample sheet's 'format' column).",
        ) from exc


def _obs(
    raw: _Raw, *, sample: str, path: Path, label_column: str | None, spike_counts: np.ndarray | None
) -> pd.DataFrame:
    """Cells named ``{sample}:{barcode}``, with ``reference_label`` and ``spike_in_counts`` when present."""
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
    return obs


def _source_record(path: Path, raw: _Raw) -> dict:
    """Input provenance: resolved path, one SHA-256 (of the file or of the files' digests), per file."""
    root = path if path.is_dir() else path.parent
    digests = {str(f.relative_to(root)) if f.is_relative_to(root) else str(f): _sha256(f) for f in raw.files}
    sha = (
        next(iter(digests.values()))
        if len(digests) == 1
        else hashlib.sha256("".join(f"{d}  {n}\n" for n, d in sorted(digests.items())).encode()).hexdigest()
    )
    return {"source": str(path.resolve()), "sha256": sha, "files": digests}


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
    fmt = _resolve_format(path, fmt, sample=sample)
    logger.info("sample %s: reading %s as %s", sample, path, fmt)
    raw = _read_raw(path, fmt, sample=sample, counts_layer=counts_layer, table_orientation=table_orientation)
    if technology not in TECHNOLOGIES:
        raise input_error(
            f"unknown technology {technology!r}.", sample=sample, path=path, fix=f"use one of {TECHNOLOGIES}."
        )
    spike_counts = _set_aside_spike_ins(raw, sample=sample)
    if _rounds_expected_counts(fmt, technology):
        _round_expected_counts(raw, sample=sample)
    raw = _validate(raw, sample=sample, path=path)
    var, gene_info = _harmonise_genes(
        raw, sample=sample, path=path, species=species, min_known=min_known_gene_fraction
    )
    obs = _obs(raw, sample=sample, path=path, label_column=label_column, spike_counts=spike_counts)
    X = raw.X.astype(np.float32, copy=False)
    X.sort_indices()
    adata = ad.AnnData(X=X, obs=obs, var=var)
    adata.uns["hscseq"] = {
        "ingest": {
            **_source_record(path, raw),
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
