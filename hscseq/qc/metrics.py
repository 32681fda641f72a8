"""Per-cell QC metrics: counts, detected genes, % mitochondrial / ribosomal / haemoglobin, complexity.

:func:`compute_metrics` is the numeric core (a count matrix and gene masks in, arrays out);
:func:`qc_metrics` is the AnnData wrapper.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from hscseq._utils import input_error

logger = logging.getLogger(__name__)

#: Gene-name patterns of each species (10x reference symbols).
GENE_PATTERNS: dict[str, dict[str, str]] = {
    "mouse": {
        "mt": r"^mt-",
        "ribo": r"^Rp[sl]\d|^Rp[sl]p\d|^Rps27a$",
        "hb": r"^Hb[ab]-|^Hbq\d",
    },
    "human": {
        "mt": r"^MT-",
        "ribo": r"^RP[SL]\d|^RP[SL]P\d|^RPS27A$",
        "hb": r"^HB(?:A1|A2|B|D|E1|G1|G2|M|Q1|Z)$",
    },
}


def _as_csr(x) -> sp.csr_matrix:
    return x.tocsr() if sp.issparse(x) else sp.csr_matrix(np.asarray(x))


def gene_masks(var_names: Sequence[str], species: str) -> dict[str, np.ndarray]:
    """Boolean masks of mitochondrial (``mt``), ribosomal (``ribo``) and haemoglobin (``hb``) genes.

    Parameters
    ----------
    var_names
        Gene symbols.
    species
        ``"mouse"`` or ``"human"``.

    Returns
    -------
    One boolean array per gene family, aligned with ``var_names``.
    """
    if species not in GENE_PATTERNS:
        raise input_error(
            f"unknown species {species!r} for QC gene patterns.",
            fix=f"set species to one of {sorted(GENE_PATTERNS)} in the sample sheet.",
        )
    names = pd.Index([str(g) for g in var_names])
    return {
        fam: np.asarray(names.str.contains(pat, regex=True)) for fam, pat in GENE_PATTERNS[species].items()
    }


def compute_metrics(counts, masks: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Per-cell metrics of a cells x genes count matrix (sparse or dense; never densified).

    Parameters
    ----------
    counts
        Raw counts, cells x genes.
    masks
        Gene-family masks (e.g. from :func:`gene_masks`); each gives ``pct_counts_<family>``.

    Returns
    -------
    ``total_counts``, ``n_genes_by_counts``, ``pct_counts_<family>`` (0-100) and ``complexity``
    (log1p genes / log1p counts; NaN for empty cells).
    """
    x = _as_csr(counts)
    total = np.asarray(x.sum(axis=1), dtype=np.float64).ravel()
    n_genes = np.asarray((x > 0).sum(axis=1)).ravel().astype(np.int64)
    out: dict[str, np.ndarray] = {"total_counts": total, "n_genes_by_counts": n_genes}
    with np.errstate(divide="ignore", invalid="ignore"):
        for fam, mask in masks.items():
            sub = np.asarray(x[:, np.flatnonzero(mask)].sum(axis=1), dtype=np.float64).ravel()
            out[f"pct_counts_{fam}"] = np.where(total > 0, 100.0 * sub / np.where(total > 0, total, 1), 0.0)
        out["complexity"] = np.where(total > 0, np.log1p(n_genes) / np.log1p(total), np.nan)
    return out


def qc_metrics(
    adata: ad.AnnData,
    *,
    species: str,
    layer: str | None = None,
    key_added: str = "qc_metrics",
    copy: bool = False,
) -> ad.AnnData | None:
    """Species-aware QC metrics per cell.

    Adds to ``obs``: ``total_counts``, ``n_genes_by_counts``, ``pct_counts_mt``, ``pct_counts_ribo``,
    ``pct_counts_hb``, ``complexity`` (log genes / log counts); to ``var``: boolean ``mt``, ``ribo``, ``hb``.

    Parameters
    ----------
    adata
        Raw counts in ``X`` (or in ``layer``).
    species
        ``"mouse"`` (``mt-``, ``Rps/Rpl``, ``Hba/Hbb``) or ``"human"`` (``MT-``, ``RPS/RPL``, ``HBA/HBB``).
    layer
        Layer holding the counts; ``None`` uses ``X``.
    key_added
        ``uns`` key receiving ``params`` and the number of genes of each family.
    copy
        Return a modified copy instead of writing in place.

    Returns
    -------
    The modified copy if ``copy=True``, else ``None``.
    """
    adata = adata.copy() if copy else adata
    masks = gene_masks(adata.var_names, species)
    counts = adata.layers[layer] if layer is not None else adata.X
    metrics = compute_metrics(counts, masks)
    for name, values in metrics.items():
        adata.obs[name] = values
    for fam, mask in masks.items():
        adata.var[fam] = mask
    n_family = {fam: int(mask.sum()) for fam, mask in masks.items()}
    if n_family["mt"] == 0:
        logger.warning(
            "no mitochondrial genes (%s) found among %d genes: %% mito is 0 for every cell and "
            "cannot flag damaged cells",
            GENE_PATTERNS[species]["mt"],
            adata.n_vars,
        )
    adata.uns[key_added] = {
        "params": {"species": species, "layer": layer or "X", "patterns": dict(GENE_PATTERNS[species])},
        "n_genes": n_family,
    }
    return adata if copy else None
