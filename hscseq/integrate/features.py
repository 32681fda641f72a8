"""Features: batch-aware ``seurat_v3`` highly variable genes on counts, minus exclusions and cell cycle."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import anndata as ad
import numpy as np
import pandas as pd

from hscseq._utils import input_error

logger = logging.getLogger(__name__)


def excluded_mask(adata: ad.AnnData, *, genes: Sequence[str]) -> tuple[np.ndarray, list[str]]:
    """Genes of ``adata`` matching ``genes`` and the requested names that matched nothing.

    Matching is case-insensitive against var_names, ``var["gene_symbol"]`` and ``var["gene_id"]`` so that a
    list given as human symbols (``GATA2``) or Ensembl IDs also hits mouse genes (``Gata2``) where the symbols
    agree up to case.
    """
    wanted = {str(g).strip().upper() for g in genes if str(g).strip()}
    mask = np.zeros(adata.n_vars, dtype=bool)
    hit: set[str] = set()
    columns = [pd.Index(adata.var_names)]
    columns += [pd.Index(adata.var[c].astype(str)) for c in ("gene_symbol", "gene_id") if c in adata.var]
    for col in columns:
        upper = col.str.upper()
        sel = upper.isin(wanted)
        mask |= np.asarray(sel)
        hit.update(upper[sel])
    return mask, sorted(wanted - hit)


def cell_cycle_genes() -> list[str]:
    """Cell-cycle genes of both species (Tirosh et al. 2016; see :func:`hscseq.qc.cell_cycle_genes`)."""
    from hscseq.qc import cell_cycle_genes as phase_genes

    return sorted({g for species in ("mouse", "human") for phase in phase_genes(species) for g in phase})


def _seurat_v3(view: ad.AnnData, *, layer: str, batch_key: str | None, n_top_genes: int) -> pd.DataFrame:
    """scanpy's ``seurat_v3`` ranking of the counts in ``view.layers[layer]`` (per batch with ``batch_key``).

    ``seurat_v3`` fits a loess per batch and batches of very few cells make it fail, so batches of < 50 cells
    are pooled. Returns scanpy's table indexed by gene.
    """
    import scanpy as sc

    sub = ad.AnnData(
        X=view.layers[layer],
        obs=view.obs[[batch_key]] if batch_key else None,
        var=pd.DataFrame(index=view.var_names),
    )
    if batch_key:
        sizes = sub.obs[batch_key].value_counts()
        small = sizes.index[sizes < 50]
        if len(small):
            logger.info("batches with < 50 cells pooled for HVG selection: %s", ", ".join(map(str, small)))
            col = sub.obs[batch_key].astype(str)
            sub.obs[batch_key] = col.where(~col.isin(set(map(str, small))), "_small_batches_")
    hvg = sc.pp.highly_variable_genes(
        sub, flavor="seurat_v3", n_top_genes=n_top_genes, batch_key=batch_key, inplace=False
    )
    hvg.index = sub.var_names
    return hvg


def select_features(
    adata: ad.AnnData,
    *,
    n_top_genes: int = 2000,
    batch_key: str | None = "batch",
    exclude_genes: Sequence[str] = (),
    exclude_cell_cycle: bool = True,
    layer: str = "counts",
    copy: bool = False,
) -> ad.AnnData | None:
    """Batch-aware ``seurat_v3`` highly variable genes on counts, minus an exclusion list.

    Parameters
    ----------
    adata
        Cells x genes with raw counts in ``layers[layer]``.
    n_top_genes
        Number of highly variable genes kept after removing the excluded genes (capped at the number of
        genes that are not excluded).
    batch_key
        obs column of the technical batch; genes are ranked within each batch and merged (scanpy's
        ``seurat_v3`` with ``batch_key``). ``None`` or a single batch ranks all cells together.
    exclude_genes
        Genes never used as features and marked in ``var["hscseq_excluded"]`` (matched as in
        :func:`excluded_mask`).
    exclude_cell_cycle
        Also keep the cell-cycle genes of :func:`cell_cycle_genes` out of the features (they stay measured
        and are *not* marked as excluded from signatures), so that clusters follow cell identity rather
        than cycling phase.
    layer
        Layer holding raw counts.
    copy
        Return a modified copy instead of working in place.

    Returns
    -------
    ``None``, or the modified copy when ``copy=True``. Sets ``var["highly_variable"]``,
    ``var["highly_variable_rank"]``, ``var["hscseq_excluded"]`` and ``uns["hvg"]["params"]``.
    """
    adata = adata.copy() if copy else adata
    if layer not in adata.layers:
        raise input_error(
            f"layers[{layer!r}] with raw counts is missing.",
            fix="call hscseq.integrate.normalize first (it keeps the counts in a layer).",
        )
    excluded, missing = excluded_mask(adata, genes=exclude_genes)
    if missing:
        logger.warning("exclude_genes not found among the measured genes: %s", ", ".join(missing))
    adata.var["hscseq_excluded"] = excluded
    cycling = (
        excluded_mask(adata, genes=cell_cycle_genes())[0] if exclude_cell_cycle else np.zeros_like(excluded)
    )
    candidates = ~excluded & ~cycling & (np.asarray((adata.layers[layer] > 0).sum(axis=0)).ravel() > 0)
    n_keep = int(min(n_top_genes, candidates.sum()))
    use_batch = batch_key if batch_key and adata.obs[batch_key].nunique() > 1 else None
    hvg = _seurat_v3(adata[:, candidates], layer=layer, batch_key=use_batch, n_top_genes=n_keep)
    adata.var["highly_variable"] = False
    adata.var.loc[hvg.index, "highly_variable"] = hvg["highly_variable"].to_numpy()
    adata.var["highly_variable_rank"] = np.nan
    adata.var.loc[hvg.index, "highly_variable_rank"] = hvg["highly_variable_rank"].to_numpy()
    adata.uns["hvg"] = {
        "params": {
            "flavor": "seurat_v3",
            "n_top_genes": n_keep,
            "batch_key": use_batch or "",
            "layer": layer,
            "exclude_genes": list(map(str, exclude_genes)),
            "n_excluded": int(excluded.sum()),
            "exclude_cell_cycle": bool(exclude_cell_cycle),
            "n_cell_cycle_removed": int(cycling.sum()),
        }
    }
    logger.info(
        "%d highly variable genes (%d excluded genes removed)",
        int(adata.var["highly_variable"].sum()),
        int(excluded.sum()),
    )
    return adata if copy else None
