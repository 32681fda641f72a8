"""The missing HSC programme: the native HSC genes that HSC-like cells of a sample lack.

Numeric core: :func:`programme_deficit` (reference HSCs versus query cells, per gene); AnnData wrapper:
:func:`missing_programme`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from hscseq._labels import DEFAULT_HSC_LABELS
from hscseq.score.likeness import _reference_hsc_mask

logger = logging.getLogger(__name__)


def programme_deficit(
    reference: np.ndarray,
    query: np.ndarray,
    *,
    min_reference_detection: float = 0.1,
    established_ratio: float = 0.5,
) -> dict[str, np.ndarray]:
    """Compare programme genes between reference HSCs and query cells (log-normalised, cells x genes).

    For each gene: detection rates, mean log expression, ``expression_ratio`` = mean linear expression in
    query / reference (``expm1`` of log values), ``detection_ratio`` and ``established`` (both ratios >=
    ``established_ratio``). Genes detected in fewer than ``min_reference_detection`` of reference cells are
    not part of the programme (``in_programme`` False).
    """
    reference = np.asarray(reference, dtype=float)
    query = np.asarray(query, dtype=float)
    det_r = (reference > 0).mean(axis=0)
    det_q = (query > 0).mean(axis=0) if len(query) else np.full(reference.shape[1], np.nan)
    lin_r = np.expm1(reference).mean(axis=0)
    lin_q = np.expm1(query).mean(axis=0) if len(query) else np.full(reference.shape[1], np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        expr_ratio = np.where(lin_r > 0, lin_q / lin_r, np.nan)
        det_ratio = np.where(det_r > 0, det_q / det_r, np.nan)
    in_programme = det_r >= min_reference_detection
    established = in_programme & (expr_ratio >= established_ratio) & (det_ratio >= established_ratio)
    return {
        "detection_reference": det_r,
        "detection_query": det_q,
        "mean_reference": reference.mean(axis=0),
        "mean_query": query.mean(axis=0) if len(query) else np.full(reference.shape[1], np.nan),
        "expression_ratio": expr_ratio,
        "detection_ratio": det_ratio,
        "in_programme": in_programme,
        "established": established,
    }


def _dense_genes(adata: ad.AnnData, cells: np.ndarray, genes: Sequence[str], layer: str | None) -> np.ndarray:
    """Dense values of ``genes`` in ``cells`` (a small block: programme genes of some cells)."""
    X = adata.layers[layer] if layer is not None else adata.X
    gidx = adata.var_names.get_indexer(genes)
    sub = X[cells][:, gidx]
    return sub.toarray() if sp.issparse(sub) else np.asarray(sub)


def _sample_deficit(
    sample: str,
    genes: Sequence[str],
    reference: np.ndarray,
    query: np.ndarray,
    *,
    min_reference_detection: float,
    established_ratio: float,
) -> tuple[pd.DataFrame, dict]:
    """One sample's per-gene comparison (missing genes ranked: lowest expression, then detection ratio)
    and its row of the sample table (programme share, missing genes in rank order)."""
    res = programme_deficit(
        reference, query, min_reference_detection=min_reference_detection, established_ratio=established_ratio
    )
    df = pd.DataFrame({"sample": sample, "gene": genes, **res})
    missing = df[df["in_programme"] & ~df["established"]].sort_values(
        ["expression_ratio", "detection_ratio"], kind="stable"
    )
    df["missing_rank"] = pd.Series(np.arange(1, len(missing) + 1), index=missing.index)
    n_prog = int(df["in_programme"].sum())
    row = {
        "sample": sample,
        "n_query_cells": len(query),
        "hsc_programme_share": df["established"].sum() / n_prog if n_prog else np.nan,
        "missing_genes": ",".join(missing["gene"]),
    }
    return df, row


def missing_programme(
    adata: ad.AnnData,
    genes: Sequence[str],
    *,
    query_key: str = "hsc_like",
    sample_key: str = "sample",
    condition_key: str = "condition",
    label_key: str = "reference_label",
    reference_condition: str = "in_vivo",
    hsc_labels: Sequence[str] = DEFAULT_HSC_LABELS,
    layer: str | None = None,
    min_reference_detection: float = 0.1,
    established_ratio: float = 0.5,
    min_query_cells: int = 10,
    key_added: str = "missing_programme",
    copy: bool = False,
) -> ad.AnnData | None:
    """The native HSC genes that HSC-like cells of each sample lack compared with in vivo HSCs.

    Reference = in vivo cells labelled HSC (else in vivo cells with ``obs[query_key]``). Query = cells of a
    sample with ``obs[query_key]``. Per gene: detection rate and mean in both, expression ratio (linear
    scale), ``established`` when both expression and detection ratios reach ``established_ratio``. Missing
    genes are ranked by expression ratio (lowest first), then detection ratio. The programme share =
    established genes / genes of the programme (detected in >= ``min_reference_detection`` of reference
    HSCs).

    Parameters
    ----------
    adata
        Log-normalised cells x genes with ``obs[query_key]``.
    genes
        The programme genes (e.g. the HSC signature genes scored).
    query_key
        Boolean ``obs`` column selecting the cells to compare (HSC-like cells).
    sample_key
        ``obs`` column of samples.
    condition_key
        ``obs`` column of the condition.
    label_key
        ``obs`` column of reference labels.
    reference_condition
        Condition of the in vivo reference.
    hsc_labels
        Reference labels counted as HSCs.
    layer
        Layer with log-normalised values instead of ``X``.
    min_reference_detection
        Genes detected in fewer reference HSCs are not counted in the programme.
    established_ratio
        Minimum query/reference expression and detection ratio of an established gene.
    min_query_cells
        Samples with fewer query cells get no comparison (NaN share).
    key_added
        ``uns`` key of the results.
    copy
        Return a modified copy instead of writing into ``adata``.

    Returns
    -------
    ``None``, or the modified copy when ``copy=True``. Writes ``uns[key_added]`` with ``genes`` (one row per
    sample and gene: detection/mean in reference and query, ratios, established, rank among the missing),
    ``samples`` (n_query_cells, hsc_programme_share, missing_genes comma-separated and ranked) and ``params``.
    """
    adata = adata.copy() if copy else adata
    genes = [g for g in genes if g in adata.var_names]
    ref = _reference_hsc_mask(
        adata,
        condition_key=condition_key,
        label_key=label_key,
        reference_condition=reference_condition,
        hsc_labels=hsc_labels,
    )
    query_all = adata.obs[query_key].to_numpy(dtype=bool)
    if ref.sum() < min_query_cells and condition_key in adata.obs:
        ref = query_all & (adata.obs[condition_key].astype(str).to_numpy() == reference_condition)
        logger.warning(
            "too few labelled reference HSCs: the missing programme compares with in vivo %s cells", query_key
        )
    gene_rows, sample_rows = [], []
    samples = adata.obs[sample_key].astype(str).to_numpy()
    ref_values = _dense_genes(adata, np.flatnonzero(ref), genes, layer) if ref.any() and genes else None
    for s in pd.unique(samples):
        q = np.flatnonzero((samples == s) & query_all)
        if ref_values is None or len(q) < min_query_cells:
            sample_rows.append(
                {"sample": s, "n_query_cells": len(q), "hsc_programme_share": np.nan, "missing_genes": ""}
            )
            continue
        df, row = _sample_deficit(
            s,
            genes,
            ref_values,
            _dense_genes(adata, q, genes, layer),
            min_reference_detection=min_reference_detection,
            established_ratio=established_ratio,
        )
        gene_rows.append(df)
        sample_rows.append(row)
    genes_df = (
        pd.concat(gene_rows, ignore_index=True)
        if gene_rows
        else pd.DataFrame(columns=["sample", "gene", "missing_rank"])
    )
    adata.uns[key_added] = {
        "params": {
            "query_key": query_key,
            "min_reference_detection": min_reference_detection,
            "established_ratio": established_ratio,
            "min_query_cells": min_query_cells,
            "n_reference_cells": int(ref.sum()),
            "layer": layer,
        },
        "genes": genes_df,
        "samples": pd.DataFrame(sample_rows),
    }
    return adata if copy else None
