"""Cluster stage: neighbours, UMAP, Leiden at several resolutions, Wilcoxon markers, figures.

Runs on the simulator's in vivo donors and engineered cells, integrated with Harmony (cheap; the scVI
latent is tested in tests/test_integrate.py).
"""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import adjusted_rand_score

from hscseq import HscseqInputError
from hscseq import cluster as hc
from hscseq import integrate as hi

pytestmark = pytest.mark.filterwarnings("ignore:Tensorflow not installed; ParametricUMAP:ImportWarning")


@pytest.fixture(scope="module")
def integrated(demo_small) -> ad.AnnData:
    parts = []
    for name in ("invivo_donor1", "invivo_donor2", "engineered_7TF"):
        a = demo_small[name]
        a = a[~a.obs["is_doublet"] & ~a.obs["is_low_quality"]].copy()
        a.obs_names = [f"{name}:{b}" for b in a.obs_names]
        parts.append(a)
    adata = ad.concat(parts, join="inner", merge=None)
    invivo = adata.obs["condition"] == "in_vivo"
    adata.obs["reference_label"] = pd.Series(
        np.where(invivo, adata.obs["true_cell_type"].astype(str), np.nan), index=adata.obs_names, dtype=object
    )
    for col in ("sample", "condition", "batch"):
        adata.obs[col] = adata.obs[col].astype("category")
    hi.normalize(adata)
    hi.select_features(adata, n_top_genes=800, exclude_genes=["Gata2"])
    hi.integrate(adata, method="harmony", n_pcs=30, seed=0)
    return adata


@pytest.fixture(scope="module")
def clustered(integrated) -> ad.AnnData:
    adata = integrated.copy()
    hc.cluster(adata, resolutions=[0.5, 1.5], resolution=1.0, seed=0)
    hc.marker_genes(adata)
    return adata


def test_leiden_at_each_resolution_and_the_chosen_one(clustered):
    obs = clustered.obs
    for col in ("leiden_r0.5", "leiden_r1", "leiden_r1.5"):  # the chosen resolution is added when missing
        assert col in obs
    pd.testing.assert_series_equal(obs["leiden"], obs["leiden_r1"], check_names=False)
    n = clustered.uns["leiden"]["n_clusters"]
    assert n["0.5"] <= n["1"] <= n["1.5"]  # finer resolution, more clusters
    assert clustered.uns["leiden"]["params"]["use_rep"] == "X_integrated"
    assert clustered.obsm["X_umap"].shape == (clustered.n_obs, 2)


def test_clusters_follow_true_cell_types(clustered):
    invivo = (clustered.obs["condition"] == "in_vivo").to_numpy()
    ari = adjusted_rand_score(clustered.obs["true_cell_type"][invivo], clustered.obs["leiden"][invivo])
    assert ari >= 0.6


def test_clustering_is_reproducible(integrated, clustered):
    again = hc.cluster(integrated, resolutions=[1.0], seed=0, umap=False, copy=True)
    assert adjusted_rand_score(again.obs["leiden"], clustered.obs["leiden"]) == 1.0
    assert "leiden" not in integrated.obs  # copy=True left the input alone


def test_markers_name_the_programme_of_each_cell_type(clustered):
    table = hc.markers_table(clustered)
    assert list(table.columns) == [
        "cluster", "rank", "gene", "score", "logfoldchange", "pval", "pval_adj", "pct_in", "pct_out",
        "excluded",
    ]  # fmt: skip
    assert (table["logfoldchange"] >= 1).all() and (table["pval_adj"] <= 0.05).all()
    assert (table["pct_in"] >= 0.25).all() and (table["pct_out"] <= 0.5).all()
    assert (
        table.groupby("cluster", observed=True)["rank"]
        .apply(lambda r: list(r) == list(range(1, len(r) + 1)))
        .all()
    )
    from hscseq.datasets import PROGRAMMES

    obs = clustered.obs
    for cell_type, probe in (("B", "Cd79a"), ("hemogenic_endothelium", "Cdh5"), ("neutrophil", "Ltf")):
        best = pd.crosstab(obs["leiden"], obs["true_cell_type"])[cell_type].idxmax()
        top = table.loc[table["cluster"] == best, "gene"].head(15).tolist()
        assert probe in PROGRAMMES[cell_type]
        assert len(set(top) & set(PROGRAMMES[cell_type])) >= 3, (cell_type, top)


def test_capped_markers_rank_at_most_the_cap_per_cluster_and_still_name_the_programmes(clustered):
    """``max_cells_per_cluster`` (Seurat's ``max.cells.per.ident``): each cluster is ranked on a seeded
    subsample of at most the cap, the cells ranked are recorded, the same seed gives the same result, and
    the top markers of each true cell type are still its programme's genes."""
    cap = 40
    sizes = clustered.obs["leiden"].value_counts()
    assert (sizes > cap).sum() >= 3  # the cap really subsamples several clusters
    capped = hc.marker_genes(clustered, max_cells_per_cluster=cap, random_state=1, copy=True)
    params = capped.uns["rank_genes_groups"]["params"]
    assert params["max_cells_per_cluster"] == cap and params["random_state"] == 1
    assert params["n_cells"] == {str(g): min(int(n), cap) for g, n in sizes.items()}
    default = clustered.uns["rank_genes_groups"]["params"]  # the fixture ranks with the default cap
    assert default["max_cells_per_cluster"] == 500 and sizes.max() < 500
    assert default["n_cells"] == {str(g): int(n) for g, n in sizes.items()}
    everyone = hc.marker_genes(clustered, max_cells_per_cluster=None, copy=True)
    assert everyone.uns["rank_genes_groups"]["params"]["max_cells_per_cluster"] == 0
    # pts come from the subsample: a fraction of at most `cap` cells is a multiple of 1 / n
    big = str(sizes.index[0])
    pts = capped.uns["rank_genes_groups"]["pts"][big].to_numpy()
    np.testing.assert_allclose(pts * cap, np.round(pts * cap), atol=1e-6)

    again = hc.marker_genes(clustered, max_cells_per_cluster=cap, random_state=1, copy=True)
    other = hc.marker_genes(clustered, max_cells_per_cluster=cap, random_state=2, copy=True)
    table, same = hc.markers_table(capped), hc.markers_table(again)
    pd.testing.assert_frame_equal(table, same)
    assert not table[["gene", "score"]].equals(hc.markers_table(other)[["gene", "score"]])

    from hscseq.datasets import PROGRAMMES

    obs = clustered.obs
    for cell_type in ("B", "hemogenic_endothelium", "neutrophil", "erythroid"):
        best = pd.crosstab(obs["leiden"], obs["true_cell_type"])[cell_type].idxmax()
        top = table.loc[table["cluster"] == best, "gene"].head(15).tolist()
        assert len(set(top) & set(PROGRAMMES[cell_type])) >= 3, (cell_type, top)


def test_a_cap_above_every_cluster_ranks_all_cells(clustered):
    sizes = clustered.obs["leiden"].value_counts()
    capped = hc.marker_genes(clustered, max_cells_per_cluster=int(sizes.max()), random_state=5, copy=True)
    pd.testing.assert_frame_equal(hc.markers_table(capped), hc.markers_table(clustered))
    with pytest.raises(HscseqInputError, match="negative"):
        hc.marker_genes(clustered, max_cells_per_cluster=-1, copy=True)


def test_markers_table_filters_are_applied(clustered):
    loose = hc.markers_table(
        clustered, min_logfc=0, max_pval_adj=1, min_in_group_fraction=0, max_out_group_fraction=1, n_genes=5
    )
    assert loose.groupby("cluster", observed=True).size().max() == 5
    everything = hc.markers_table(clustered, n_genes=10_000)
    strict = hc.markers_table(clustered, min_logfc=3, n_genes=10_000)
    assert 0 < len(strict) < len(everything)
    assert (strict["logfoldchange"] >= 3).all()
    assert set(strict["gene"] + "|" + strict["cluster"].astype(str)) <= set(
        everything["gene"] + "|" + everything["cluster"].astype(str)
    )


def test_excluded_genes_are_flagged_in_markers(clustered):
    table = hc.markers_table(clustered, n_genes=200)
    assert set(table.loc[table["excluded"], "gene"]) <= {"Gata2"}


def test_cluster_needs_the_latent(integrated):
    adata = integrated.copy()
    del adata.obsm["X_integrated"]
    with pytest.raises(HscseqInputError, match="X_integrated"):
        hc.cluster(adata)


def test_run_cluster_writes_outputs(integrated, tmp_path):
    src = tmp_path / "integrated.h5ad"
    integrated.write_h5ad(src)
    out = {k: tmp_path / v for k, v in {"clustered": "c.h5ad", "markers": "m.tsv", "umap": "u.png",
                                          "dotplot": "d.png"}.items()}  # fmt: skip
    settings = {"resolutions": [0.5, 1.0], "resolution": 0.5, "n_neighbors": 10, "seed": 0, "n_markers": 10,
                "max_cells_per_cluster": 30}  # fmt: skip
    hc.run_cluster(integrated=str(src), **{k: str(v) for k, v in out.items()}, settings=settings)
    adata = ad.read_h5ad(out["clustered"])
    assert (adata.obs["leiden"] == adata.obs["leiden_r0.5"]).all()
    ranked = adata.uns["rank_genes_groups"]["params"]
    assert ranked["max_cells_per_cluster"] == 30 and max(ranked["n_cells"].values()) == 30
    markers = pd.read_csv(out["markers"], sep="\t")
    assert set(markers["cluster"].astype(str)) <= set(adata.obs["leiden"].astype(str))
    assert markers.groupby("cluster").size().max() <= 10
    for key in ("umap", "dotplot"):
        assert out[key].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert out[key].stat().st_size > 10_000
    assert not list(tmp_path.glob(".*.part"))


def test_cluster_runs_above_the_approximate_neighbour_threshold():
    """12k cells take scanpy's approximate (pynndescent) neighbour path, which crashed above ~9k cells with
    pynndescent 0.7 (it returns a scipy ``csr_array`` scanpy 1.11 cannot read). Eight separated groups in a
    20-d latent must come back as eight Leiden clusters."""
    rng = np.random.default_rng(0)
    n_cells, n_groups = 12_000, 8
    truth = rng.integers(n_groups, size=n_cells)
    centres = rng.normal(scale=2.0, size=(n_groups, 20))  # separated, yet one connected graph
    latent = (centres[truth] + rng.normal(size=(n_cells, 20))).astype(np.float32)
    adata = ad.AnnData(obs=pd.DataFrame(index=[f"c{i}" for i in range(n_cells)]))
    adata.obsm["X_integrated"] = latent
    hc.cluster(adata, resolutions=[0.2], resolution=0.2, seed=0, umap=True)
    assert adata.obsp["distances"].shape == (n_cells, n_cells)
    assert adjusted_rand_score(truth, adata.obs["leiden"]) >= 0.95
    assert np.isfinite(adata.obsm["X_umap"]).all()
