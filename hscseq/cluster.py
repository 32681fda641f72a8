"""Clustering: neighbours on the integrated latent, UMAP, Leiden at several resolutions, markers, figures.

Stage ``cluster``: ``results/integrate/integrated.h5ad`` -> ``results/cluster/clustered.h5ad``,
``results/tables/markers.tsv``, ``results/figures/umap.png``, ``results/figures/markers_dotplot.png``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import anndata as ad
import numpy as np
import pandas as pd

from hscseq._plotting import finish, save_and_close
from hscseq._settings import StageSettings, schema_field
from hscseq._utils import capped_positions, input_error, write_h5ad, write_table

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ClusterSettings(StageSettings):
    """Settings of the cluster stage (config section ``cluster``; defaults and meanings in the schema)."""

    stage: ClassVar[str] = "cluster"
    resolutions: Sequence[float] = schema_field(stage, "resolutions")
    resolution: float = schema_field(stage, "resolution")
    n_neighbors: int = schema_field(stage, "n_neighbors")
    seed: int = schema_field(stage, "seed")
    min_logfc: float = schema_field(stage, "min_logfc")
    max_pval_adj: float = schema_field(stage, "max_pval_adj")
    min_in_group_fraction: float = schema_field(stage, "min_in_group_fraction")
    max_out_group_fraction: float = schema_field(stage, "max_out_group_fraction")
    n_markers: int = schema_field(stage, "n_markers")
    dotplot_genes: int = schema_field(stage, "dotplot_genes")
    max_cells_per_cluster: int | None = schema_field(stage, "max_cells_per_cluster")


def resolution_key(key: str, resolution: float) -> str:
    """obs column of one Leiden resolution, e.g. ``leiden_r0.5``, ``leiden_r1``, ``leiden_r1.5``."""
    return f"{key}_r{float(resolution):g}"


def cluster(
    adata: ad.AnnData,
    *,
    use_rep: str = "X_integrated",
    n_neighbors: int = 15,
    resolutions: Sequence[float] = (0.5, 1.0, 1.5),
    resolution: float = 1.0,
    seed: int = 0,
    umap: bool = True,
    key_added: str = "leiden",
    copy: bool = False,
) -> ad.AnnData | None:
    """kNN graph on a latent space, UMAP, and Leiden clusters at several resolutions.

    Parameters
    ----------
    adata
        Cells with a latent space in ``obsm[use_rep]``.
    use_rep
        obsm key of the latent space (the integrated one by default).
    n_neighbors
        Neighbours of the kNN graph.
    resolutions
        Leiden resolutions; each gives ``obs[key_added + "_r<res>"]`` (see :func:`resolution_key`).
    resolution
        The resolution whose clusters become ``obs[key_added]`` (added to ``resolutions`` if missing).
    seed
        Seed of the neighbour search, UMAP and Leiden.
    umap
        Compute ``obsm["X_umap"]``.
    key_added
        obs column of the chosen clustering; parameters in ``uns[key_added]["params"]``.
    copy
        Return a modified copy instead of working in place.

    Returns
    -------
    ``None``, or the modified copy when ``copy=True``. Sets ``obsp["distances"/"connectivities"]``,
    ``uns["neighbors"]``, ``obsm["X_umap"]``, the Leiden columns and ``uns[key_added]`` (params and the
    number of clusters per resolution).
    """
    import scanpy as sc

    if use_rep not in adata.obsm:
        raise input_error(f"obsm[{use_rep!r}] is missing.", fix="run the integrate stage first.")
    if adata.n_obs <= n_neighbors:
        raise input_error(
            f"{adata.n_obs} cells are too few for {n_neighbors} neighbours.",
            fix="lower cluster.n_neighbors or add cells.",
        )
    adata = adata.copy() if copy else adata
    resolutions = sorted({float(r) for r in resolutions} | {float(resolution)})
    sc.pp.neighbors(adata, use_rep=use_rep, n_neighbors=n_neighbors, random_state=seed)
    if umap:
        sc.tl.umap(adata, random_state=seed)
    n_clusters = {}
    for res in resolutions:
        col = resolution_key(key_added, res)
        sc.tl.leiden(
            adata,
            resolution=res,
            flavor="igraph",
            n_iterations=2,
            directed=False,
            random_state=seed,
            key_added=col,
        )
        adata.uns.pop(col, None)
        n_clusters[f"{res:g}"] = int(adata.obs[col].nunique())
        logger.info("Leiden resolution %g: %d clusters", res, n_clusters[f"{res:g}"])
    adata.obs[key_added] = adata.obs[resolution_key(key_added, resolution)].copy()
    adata.uns[key_added] = {
        "params": {
            "use_rep": use_rep,
            "n_neighbors": int(n_neighbors),
            "resolutions": resolutions,
            "resolution": float(resolution),
            "seed": int(seed),
            "flavor": "igraph",
        },
        "n_clusters": n_clusters,
    }
    return adata if copy else None


def marker_genes(
    adata: ad.AnnData,
    *,
    groupby: str = "leiden",
    layer: str | None = None,
    max_cells_per_cluster: int | None = 500,
    random_state: int = 0,
    key_added: str = "rank_genes_groups",
    copy: bool = False,
) -> ad.AnnData | None:
    """Wilcoxon rank-sum marker genes of each group against all other cells, on log-normalised expression.

    Parameters
    ----------
    adata
        Log-normalised X (or ``layer``), groups in ``obs[groupby]``.
    groupby
        obs column of the groups (clusters).
    layer
        Layer of log-normalised expression; ``None`` uses X.
    max_cells_per_cluster
        Rank genes on a seeded subsample of at most this many cells per group (every group keeps ``min(n,
        max_cells_per_cluster)`` cells; a group's 'rest' is then the union of the other groups' subsamples, so
        a large group weighs less in the rest than in the data; Seurat's
        ``FindMarkers(max.cells.per.ident=...)`` samples the group and the whole rest to the cap instead).
        Scores, fold changes, p-values and the expressing fractions ``pts`` / ``pts_rest`` all come from the
        subsample, and genes that no subsampled cell expresses are not ranked (they cannot be markers).
        ``None`` or 0: all cells. The default is the config's (README Performance: the measurement behind it).
    random_state
        Seed of the subsample.
    key_added
        ``uns`` key of the scanpy result (with the fraction of expressing cells, ``pts``).
    copy
        Return a modified copy instead of working in place.

    Returns
    -------
    ``None``, or the modified copy when ``copy=True``. Sets ``uns[key_added]`` (scanpy's
    ``rank_genes_groups`` result plus ``params``, which record ``max_cells_per_cluster``, ``random_state``
    and ``n_cells``, the cells of each group that were ranked); :func:`markers_table` filters it.
    """
    import scanpy as sc

    if groupby not in adata.obs:
        raise input_error(f"obs has no column {groupby!r}.", fix="run hscseq.cluster.cluster first.")
    if max_cells_per_cluster is not None and int(max_cells_per_cluster) < 0:
        raise input_error(
            f"max_cells_per_cluster={max_cells_per_cluster} is negative.", fix="use a count, 0 or None."
        )
    cap = int(max_cells_per_cluster or 0)
    adata = adata.copy() if copy else adata
    groups = adata.obs[groupby].value_counts()
    use = groups.index[groups >= 2].tolist()
    if len(use) < 2:
        logger.warning("fewer than two groups with >= 2 cells in %r: no marker genes", groupby)
        adata.uns[key_added] = {"params": {"groupby": groupby, "method": "wilcoxon", "groups": []}}
        return adata if copy else None
    ranked = _subsample_groups(adata, groupby, layer, cap, random_state) if cap else adata
    sc.tl.rank_genes_groups(
        ranked,
        groupby,
        groups=[str(g) for g in use],
        reference="rest",
        method="wilcoxon",
        use_raw=False,
        layer=layer if ranked is adata else None,
        pts=True,
        tie_correct=True,
        key_added=key_added,
    )
    adata.uns[key_added] = ranked.uns[key_added]
    adata.uns[key_added]["params"] = {
        **adata.uns[key_added]["params"],
        "layer": layer,
        "groups": [str(g) for g in use],
        "max_cells_per_cluster": cap,  # 0: all cells
        "random_state": int(random_state),
        "n_cells": {str(g): int(n) for g, n in ranked.obs[groupby].value_counts(sort=False).items() if n},
    }
    return adata if copy else None


def _subsample_groups(adata: ad.AnnData, groupby: str, layer: str | None, cap: int, seed: int) -> ad.AnnData:
    """A light AnnData (the expression of ``layer`` or X in X, ``obs[groupby]``) of at most ``cap`` cells per
    group, drawn without replacement with ``seed``, in the original cell order, and of the genes that some
    of these cells express."""
    codes = adata.obs[groupby].astype("category").cat.codes.to_numpy()
    groups = (np.flatnonzero(codes == code) for code in np.unique(codes))
    idx = capped_positions(groups, cap, np.random.default_rng(seed))
    x = (adata.X if layer is None else adata.layers[layer])[idx]
    # a gene no subsampled cell expresses cannot be a marker, and its all-tied ranks divide 0 by 0
    expressed = np.asarray((x != 0).sum(axis=0)).ravel() > 0
    obs = adata.obs[[groupby]].iloc[idx].copy()
    obs[groupby] = obs[groupby].astype("category").cat.remove_unused_categories()
    return ad.AnnData(X=x[:, expressed], obs=obs, var=pd.DataFrame(index=adata.var_names[expressed]))


def markers_table(
    adata: ad.AnnData,
    *,
    key: str = "rank_genes_groups",
    min_logfc: float = 1.0,
    max_pval_adj: float = 0.05,
    min_in_group_fraction: float = 0.25,
    max_out_group_fraction: float = 0.5,
    n_genes: int = 50,
) -> pd.DataFrame:
    """Filtered marker genes per cluster from :func:`marker_genes`.

    A marker is kept when log2 fold change >= ``min_logfc``, adjusted p <= ``max_pval_adj``, expressed in
    >= ``min_in_group_fraction`` of the cluster's cells and in <= ``max_out_group_fraction`` of the other
    cells; at most ``n_genes`` per cluster, by Wilcoxon score. Columns: ``cluster, rank, gene, score,
    logfoldchange, pval, pval_adj, pct_in, pct_out, excluded`` (gene on the configured exclusion list).
    """
    import scanpy as sc

    columns = [
        "cluster",
        "rank",
        "gene",
        "score",
        "logfoldchange",
        "pval",
        "pval_adj",
        "pct_in",
        "pct_out",
        "excluded",
    ]
    res = adata.uns.get(key, {})
    if "names" not in res:
        return pd.DataFrame(columns=columns)
    df = sc.get.rank_genes_groups_df(adata, group=None, key=key)
    if "group" not in df:
        df.insert(0, "group", res["names"].dtype.names[0])
    df = df.rename(
        columns={
            "group": "cluster",
            "names": "gene",
            "scores": "score",
            "logfoldchanges": "logfoldchange",
            "pvals": "pval",
            "pvals_adj": "pval_adj",
            "pct_nz_group": "pct_in",
            "pct_nz_reference": "pct_out",
        }
    )
    keep = (
        (df["logfoldchange"] >= min_logfc)
        & (df["pval_adj"] <= max_pval_adj)
        & (df["pct_in"] >= min_in_group_fraction)
        & (df["pct_out"] <= max_out_group_fraction)
    )
    df = df[keep].sort_values(["cluster", "score"], ascending=[True, False], kind="stable")
    df = df.groupby("cluster", observed=True, sort=False).head(n_genes).copy()
    df["rank"] = df.groupby("cluster", observed=True).cumcount() + 1
    excluded = (
        adata.var["hscseq_excluded"]
        if "hscseq_excluded" in adata.var
        else pd.Series(False, index=adata.var_names)
    )
    df["excluded"] = excluded.reindex(df["gene"]).fillna(False).astype(bool).to_numpy()
    order = sorted(df["cluster"].astype(str).unique(), key=lambda c: (int(c) if c.isdigit() else 10**9, c))
    df["cluster"] = pd.Categorical(df["cluster"].astype(str), categories=order)
    return df.sort_values(["cluster", "rank"])[columns].reset_index(drop=True)


# --------------------------------------------------------------------------------------------------------
# figures


def umap_figure(
    adata: ad.AnnData,
    *,
    colors: Sequence[str] = ("leiden", "sample", "condition", "reference_label"),
    show: bool | None = None,
    save: str | None = None,
):
    """Figure of the UMAP coloured by each of ``colors`` present in obs (one panel each).

    Parameters
    ----------
    adata
        Clustered object with ``obsm["X_umap"]``.
    colors
        obs columns to colour by (absent ones are skipped).
    show
        Show the figure (``plt.show()``) and return ``None``.
    save
        Path to write the figure to (format from the suffix).

    Returns
    -------
    The :class:`matplotlib.figure.Figure` (``None`` when ``show=True``).
    """
    import scanpy as sc

    if "X_umap" not in adata.obsm:
        raise input_error("obsm['X_umap'] is missing.", fix="run hscseq.cluster.cluster with umap=True.")
    present = [c for c in colors if c in adata.obs]
    # a light copy: obs of the coloured columns only (empty reference labels shown as missing)
    obs = pd.DataFrame(index=adata.obs_names)
    for c in present:
        col = adata.obs[c]
        if c == "reference_label":
            lab = col.astype(object)
            col = pd.Categorical(lab.where(lab.notna() & (lab.astype(str).str.strip() != ""), np.nan))
        obs[c] = col
    view = ad.AnnData(obs=obs, obsm={"X_umap": np.asarray(adata.obsm["X_umap"])})
    for c in present:
        if f"{c}_colors" in adata.uns:
            view.uns[f"{c}_colors"] = adata.uns[f"{c}_colors"]
    fig = sc.pl.umap(
        view,
        color=present,
        ncols=2,
        wspace=0.45,
        show=False,
        return_fig=True,
        legend_fontsize=7,
        frameon=False,
        na_color="#d9d9d9",
    )
    return finish(fig, show=show, save=save, dpi=120)


def dotplot_figure(
    adata: ad.AnnData,
    *,
    markers: pd.DataFrame,
    groupby: str = "leiden",
    n_genes: int = 3,
    show: bool | None = None,
    save: str | None = None,
):
    """Dot plot of the top ``n_genes`` markers of each cluster (a gene shown once, for its first cluster).

    Parameters
    ----------
    adata
        Clustered, log-normalised object.
    markers
        Marker table of :func:`marker_genes` (columns cluster, rank, gene).
    groupby
        obs column of the clusters.
    n_genes
        Markers shown per cluster.
    show
        Show the figure (``plt.show()``) and return ``None``.
    save
        Path to write the figure to (format from the suffix).

    Returns
    -------
    The :class:`matplotlib.figure.Figure` (a note when no marker passed the filters; ``None`` when
    ``show=True``).
    """
    import matplotlib.pyplot as plt
    import scanpy as sc

    var_names: dict[str, list[str]] = {}
    seen: set[str] = set()
    for cl, df in markers.groupby("cluster", observed=True, sort=True):
        genes = [g for g in df.sort_values("rank")["gene"] if g not in seen][:n_genes]
        seen.update(genes)
        if genes:
            var_names[str(cl)] = genes
    if not var_names:
        fig, ax = plt.subplots(figsize=(4, 1.5))
        ax.text(0.5, 0.5, "no marker genes passed the filters", ha="center", va="center")
        ax.axis("off")
    else:
        dot = sc.pl.dotplot(
            adata,
            var_names=var_names,
            groupby=groupby,
            standard_scale="var",
            use_raw=False,
            show=False,
            return_fig=True,
        )
        dot.make_figure()
        fig = dot.fig
    return finish(fig, show=show, save=save, dpi=120)


def _save_png(fig, path: str | os.PathLike) -> None:
    save_and_close(fig, path, dpi=120)


# --------------------------------------------------------------------------------------------------------
# stage file function


def run_cluster(
    *,
    integrated: str,
    clustered: str,
    markers: str,
    umap: str,
    dotplot: str,
    settings: ClusterSettings | Mapping[str, Any] | None,
) -> None:
    """Stage ``cluster``: neighbours, UMAP, Leiden, markers; write h5ad, markers TSV, UMAP and dot plot.

    ``settings`` is a :class:`ClusterSettings` or the ``cluster`` config section, validated against the
    schema (resolutions, resolution, n_neighbors, seed and the marker filters min_logfc, max_pval_adj,
    min_in_group_fraction, max_out_group_fraction, n_markers, dotplot_genes; max_cells_per_cluster caps the
    cells per cluster that the markers are ranked on).
    """
    s = ClusterSettings.coerce(settings)
    adata = ad.read_h5ad(integrated)
    if "X_integrated" not in adata.obsm:
        raise input_error(
            "obsm['X_integrated'] is missing.",
            path=integrated,
            fix="regenerate the file with the integrate stage.",
        )
    cluster(
        adata,
        use_rep="X_integrated",
        n_neighbors=int(s.n_neighbors),
        resolutions=s.resolutions,
        resolution=float(s.resolution),
        seed=int(s.seed),
    )
    marker_genes(
        adata, groupby="leiden", max_cells_per_cluster=s.max_cells_per_cluster, random_state=int(s.seed)
    )
    table = markers_table(
        adata,
        min_logfc=float(s.min_logfc),
        max_pval_adj=float(s.max_pval_adj),
        min_in_group_fraction=float(s.min_in_group_fraction),
        max_out_group_fraction=float(s.max_out_group_fraction),
        n_genes=int(s.n_markers),
    )
    logger.info("%d marker genes over %d clusters", len(table), table["cluster"].nunique())
    write_table(table, markers, index=False)
    _save_png(umap_figure(adata), umap)
    _save_png(dotplot_figure(adata, markers=table, n_genes=int(s.dotplot_genes)), dotplot)
    write_h5ad(adata, clustered)
