"""Integration stage: normalisation, features and exclusion list, scVI/scANVI/Harmony/none, scib metrics.

The data are the simulator's demo (20% scale): two mouse in vivo donors (each its own batch), mouse
engineered precursors with off-target states absent from the reference, and the human organoid timepoints
mapped to mouse symbols, after removing the simulated doublets and low-quality cells (what QC does).
"""

from __future__ import annotations

import json

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from sklearn.metrics import adjusted_rand_score

from hscseq import HscseqInputError
from hscseq import integrate as hi
from hscseq.cluster import cluster
from hscseq.genes import convert_symbols

# Lightning's notices about this machine (srun installed but unused) and about our few training batches
pytestmark = [
    pytest.mark.filterwarnings("ignore:The `srun` command is available:UserWarning"),
    pytest.mark.filterwarnings(
        "ignore:The number of training batches .* is smaller than the logging interval:UserWarning"
    ),
    pytest.mark.filterwarnings("ignore:Tensorflow not installed; ParametricUMAP:ImportWarning"),
]

#: scVI epochs on these ~770 cells (~30 s on one idle CPU thread; scvi-tools' rule would give 400). Measured
#: trade-off: at 100 epochs donors barely mix (iLISI ~0.11-0.16), at 150 they mix (~0.39) and both
#: off-target states stay separate, beyond ~180 the primitive-erythroid state starts merging with erythroid.
#: See the module docstring of hscseq.integrate.
EPOCHS = 150
#: Programming factors of the engineered cells (mixed case on purpose: matched case-insensitively).
FACTORS = ["GATA2", "Hlf", "Runx1", "not_a_gene"]


def merged_like(samples: dict[str, ad.AnnData]) -> ad.AnnData:
    """What the merge stage writes: QC'd samples on shared genes in the analysis species (mouse)."""
    parts = []
    for name, a in samples.items():
        a = a[~a.obs["is_doublet"] & ~a.obs["is_low_quality"]].copy()
        if a.obs["species"].iloc[0] == "human":
            mapped = convert_symbols(a.var_names, "human", "mouse")
            keep = [i for i, g in enumerate(mapped) if g]
            a = a[:, keep].copy()
            a.var_names = [mapped[i] for i in keep]
        a.obs_names = [f"{name}:{b}" for b in a.obs_names]
        parts.append(a)
    merged = ad.concat(parts, join="inner", merge=None)
    merged.X = sp.csr_matrix(merged.X, dtype=np.float32)
    invivo = merged.obs["condition"] == "in_vivo"
    merged.obs["reference_label"] = pd.Series(
        np.where(invivo, merged.obs["true_cell_type"].astype(str), np.nan),
        index=merged.obs_names,
        dtype=object,
    )
    for col in ("sample", "condition", "batch", "donor", "timepoint", "species"):
        merged.obs[col] = merged.obs[col].astype("category")
    merged.var["gene_symbol"] = merged.var_names
    merged.var["gene_id"] = merged.var["gene_ids"].astype(str) if "gene_ids" in merged.var else ""
    return merged


@pytest.fixture(scope="module")
def merged(demo_small) -> ad.AnnData:
    return merged_like(demo_small)


@pytest.fixture(scope="module")
def mouse(demo_small) -> ad.AnnData:
    """In vivo donors and engineered cells only: all mouse, so the engineered off-target states keep their
    embryonic globins (Hbb-y, Hbb-bh1 have no one-to-one human ortholog and vanish when the human organoids
    join; see the module docstring of hscseq.integrate)."""
    return merged_like({k: v for k, v in demo_small.items() if not k.startswith("organoid")})


@pytest.fixture(scope="module")
def prepared(mouse) -> ad.AnnData:
    adata = mouse.copy()
    hi.normalize(adata)
    hi.select_features(adata, n_top_genes=1000, exclude_genes=FACTORS)
    return adata


@pytest.fixture(scope="module")
def scvi_result(prepared, tmp_path_factory):
    adata = prepared.copy()
    model_dir = tmp_path_factory.mktemp("scvi") / "model"
    hi.integrate(adata, method="scvi", n_latent=20, max_epochs=EPOCHS, seed=0, threads=1, model_dir=model_dir)
    hi.integration_metrics(adata)
    cluster(adata, resolutions=[1.0], resolution=1.0, umap=False)
    return adata, model_dir


@pytest.fixture(scope="module")
def pca_result(prepared):
    adata = prepared.copy()
    hi.integrate(adata, method="none", seed=0)
    hi.integration_metrics(adata)
    return adata


# --------------------------------------------------------------------------------------------------------
# normalisation and features


def test_normalize_keeps_counts_and_log_normalises(merged):
    adata = hi.normalize(merged, copy=True)
    assert sp.isspmatrix_csr(adata.X)
    assert sp.issparse(adata.layers["counts"])
    assert (adata.layers["counts"] != merged.X).nnz == 0
    per_cell = np.asarray(adata.X.expm1().sum(axis=1)).ravel()
    np.testing.assert_allclose(per_cell, 1e4, rtol=1e-3)
    assert "counts" not in merged.layers  # copy=True left the input alone


def test_normalize_rejects_log_data(merged):
    adata = hi.normalize(merged, copy=True)
    with pytest.raises(HscseqInputError, match="raw counts"):
        hi.normalize(adata)  # X is log-normalised now


def test_features_are_batch_aware_and_drop_the_exclusion_list(prepared, mouse):
    var = prepared.var
    assert var["highly_variable"].sum() == 1000
    excluded = set(var.index[var["hscseq_excluded"]])
    assert excluded == {"Gata2", "Hlf", "Runx1"} & set(mouse.var_names)
    assert "Gata2" in excluded and "Hlf" in excluded
    assert not var.loc[list(excluded), "highly_variable"].any()
    # Hlf and Gata2 are HSC-programme genes: without the list they are highly variable
    plain = hi.select_features(hi.normalize(mouse, copy=True), n_top_genes=1000, copy=True)
    assert plain.var.loc[["Hlf", "Gata2"], "highly_variable"].all()
    assert not plain.var["hscseq_excluded"].any()
    # cell-cycle genes are measured but never features
    cc = [g for g in ("Mki67", "Top2a", "Mcm5", "Pcna") if g in var.index]
    assert cc and not var.loc[cc, "highly_variable"].any()
    assert prepared.uns["hvg"]["params"]["batch_key"] == "batch"


# --------------------------------------------------------------------------------------------------------
# scVI


def test_scvi_trains_and_saves_the_model(scvi_result, prepared):
    import scvi

    adata, model_dir = scvi_result
    params = adata.uns["integrated"]["params"]
    assert params["method"] == "scvi"
    assert 1 <= params["epochs_trained"] <= EPOCHS
    assert adata.obsm["X_scVI"].shape == (adata.n_obs, 20)
    np.testing.assert_array_equal(adata.obsm["X_integrated"], adata.obsm["X_scVI"])
    # the saved model reloads on the feature genes and gives the same latent
    hvg = prepared.var["highly_variable"].to_numpy()
    sub = ad.AnnData(
        X=prepared.layers["counts"][:, hvg],
        obs=prepared.obs[["batch"]].astype(str),
        var=pd.DataFrame(index=prepared.var_names[hvg]),
    )
    sub.layers["counts"] = sub.X
    model = scvi.model.SCVI.load(str(model_dir), adata=sub)
    elbo = model.history["elbo_train"].to_numpy().ravel()
    assert elbo[-1] < elbo[0]  # it learned something
    np.testing.assert_allclose(model.get_latent_representation(), adata.obsm["X_scVI"], atol=1e-4)


def test_step_budget_caps_the_epoch_rule_at_large_sizes_only():
    # scvi-tools' rule: 400 epochs up to 20k cells, then cells x epochs ~ 8 million
    assert hi.default_max_epochs(2_000) == 400
    assert hi.default_max_epochs(100_000) == 80
    for n in (2_000, 10_000, 100_000, 250_000):
        epochs = hi.default_max_epochs(n, max_steps=16_000, batch_size=128)
        steps_per_epoch = int(np.ceil(0.9 * n / 128))
        assert epochs <= hi.default_max_epochs(n)  # a cap, never more epochs than the rule
        # the budget is used up to the last epoch: fewer epochs would train fewer steps than the budget
        assert (
            epochs == hi.default_max_epochs(n)
            or (epochs - 1) * steps_per_epoch < 16_000 <= epochs * steps_per_epoch
        )
    assert hi.default_max_epochs(250_000, max_steps=16_000) == 10


def test_scvi_with_a_step_budget_trains_no_more_epochs_than_it_allows(prepared):
    adata = prepared.copy()
    hi.integrate(adata, method="scvi", n_latent=10, max_steps=100, early_stopping=False, seed=0, threads=1)
    params = adata.uns["integrated"]["params"]
    from hscseq import _scvi

    allowed = int(np.ceil(100 / np.ceil(0.9 * adata.n_obs / _scvi.batch_size(adata.n_obs))))
    assert allowed < EPOCHS  # the budget, not a small epoch count, ends training here
    assert params["epochs_trained"] == allowed
    assert params["max_steps"] == 100 and "100 optimiser steps" in params["epoch_rule"]


def test_scvi_mixes_donors(scvi_result, pca_result):
    """Batch mixing of the two in vivo donors (same composition, different batch effect).

    scib's scaled iLISI is 0 when each cell's neighbourhood holds one donor and 1 when the two are fully
    interleaved. Unintegrated PCA leaves the donors apart (~0.17 here); we require scVI to reach 0.3 (most
    neighbourhoods hold both donors) and to beat PCA by a wide margin (0.15).
    """
    scvi_ilisi = scvi_result[0].uns["integration_metrics"]["metrics"]["ilisi"]
    pca_ilisi = pca_result.uns["integration_metrics"]["metrics"]["ilisi"]
    assert scvi_ilisi >= 0.3
    assert scvi_ilisi >= pca_ilisi + 0.15


def test_scvi_clusters_recover_true_cell_types(scvi_result):
    adata = scvi_result[0]
    invivo = (adata.obs["condition"] == "in_vivo").to_numpy()
    ari = adjusted_rand_score(adata.obs["true_cell_type"][invivo], adata.obs["leiden"][invivo])
    assert ari >= 0.6
    assert adata.uns["integration_metrics"]["metrics"]["nmi"] >= 0.6


@pytest.mark.parametrize("state", ["hemogenic_endothelium", "primitive_erythroid"])
def test_engineered_offtarget_state_stays_a_separate_cluster(scvi_result, state):
    """Integrating on the technical batch must not pull engineered-only states onto reference cell types."""
    obs = scvi_result[0].obs
    table = pd.crosstab(obs["leiden"], obs["true_cell_type"])
    best = table[state].idxmax()
    purity = table.loc[best, state] / table.loc[best].sum()
    recall = table.loc[best, state] / table[state].sum()
    assert purity >= 0.9
    assert recall >= 0.8


# --------------------------------------------------------------------------------------------------------
# alternatives


def test_harmony_mixes_donors_better_than_pca(prepared, pca_result, tmp_path):
    adata = prepared.copy()
    hi.integrate(adata, method="harmony", n_pcs=30, seed=0, model_dir=tmp_path / "model")
    z = adata.obsm["X_pca_harmony"]
    assert z.shape == (adata.n_obs, 30)
    np.testing.assert_array_equal(adata.obsm["X_integrated"], z)
    hi.integration_metrics(adata)
    assert (
        adata.uns["integration_metrics"]["metrics"]["ilisi"]
        > pca_result.uns["integration_metrics"]["metrics"]["ilisi"] + 0.15
    )
    record = json.loads((tmp_path / "model" / "integration.json").read_text())
    assert record["method"] == "harmony"


def test_none_is_pca_of_the_features(pca_result):
    assert pca_result.uns["integrated"]["params"]["method"] == "none"
    np.testing.assert_array_equal(pca_result.obsm["X_integrated"], pca_result.obsm["X_pca"])
    # unintegrated: the donors stay apart, and the metrics say so
    assert pca_result.uns["integration_metrics"]["metrics"]["ilisi"] < hi.DEFAULT_METRIC_BARS["ilisi"]
    assert any("ilisi" in w for w in pca_result.uns["integration_metrics"]["warnings"])


def test_scanvi_uses_the_reference_labels(prepared, tmp_path):
    adata = prepared.copy()
    hi.integrate(
        adata, method="scanvi", n_latent=10, max_epochs=20, seed=0, threads=1, model_dir=tmp_path / "m"
    )
    params = adata.uns["integrated"]["params"]
    assert params["scanvi_epochs_trained"] == 7  # scvi-tools' rule: min(20, max(2, round(20 / 3)))
    np.testing.assert_array_equal(adata.obsm["X_integrated"], adata.obsm["X_scANVI"])
    labelled = adata.obs["reference_label"].notna().to_numpy()
    pred = adata.obs["scanvi_prediction"].astype(str).to_numpy()
    # 11 reference types (chance ~0.15); after only 20 scVI + 7 scANVI epochs most labels are recovered
    assert (pred[labelled] == adata.obs["reference_label"].to_numpy()[labelled]).mean() >= 0.6
    assert (tmp_path / "m" / "model.pt").is_file()


def test_scanvi_needs_reference_labels(prepared):
    adata = prepared.copy()
    adata.obs["reference_label"] = np.nan
    with pytest.raises(HscseqInputError, match="reference labels"):
        hi.integrate(adata, method="scanvi")


def test_batch_key_must_exist(prepared):
    with pytest.raises(HscseqInputError, match="batch column"):
        hi.integrate(prepared, method="none", batch_key="lane", copy=True)


# --------------------------------------------------------------------------------------------------------
# metrics and the stage file function


def test_metrics_table_flags_values_below_the_bars(pca_result):
    adata = pca_result.copy()
    hi.integration_metrics(adata, bars={"ilisi": 0.0, "ari": 1.0})
    table = hi.metrics_table(adata)
    assert list(table["metric"]) == [
        "ilisi",
        "graph_connectivity",
        "silhouette_batch",
        "clisi",
        "silhouette_label",
        "nmi",
        "ari",
    ]
    assert table["value"].between(0, 1).all()
    row = table.set_index("metric")
    assert not row.loc["ilisi", "warning"]
    assert row.loc["ari", "warning"]
    assert row["n_cells"].iloc[0] == (adata.obs["condition"] == "in_vivo").sum()
    assert (table["note"] == "").all()  # every value computed


def test_metrics_table_says_why_a_value_is_missing(pca_result):
    """One in vivo batch: batch mixing cannot be measured, and the table says so instead of a blank cell;
    no in vivo cell at all (an organoid run on the profile reference): every row says so."""
    adata = pca_result.copy()
    adata.obs["batch"] = np.where(adata.obs["condition"] == "in_vivo", "one", adata.obs["batch"].astype(str))
    hi.integration_metrics(adata)
    row = hi.metrics_table(adata).set_index("metric")
    assert np.isnan(row.loc["ilisi", "value"]) and "one in_vivo batch only" in row.loc["ilisi", "note"]
    assert np.isfinite(row.loc["nmi", "value"]) and row.loc["nmi", "note"] == ""
    adata.obs["condition"] = "organoid"
    hi.integration_metrics(adata)
    assert hi.metrics_table(adata)["note"].str.startswith("no in_vivo cells").all()


def _clustered_latent(n: int, *, seed: int = 0, n_labels: int = 4, n_batches: int = 2):
    """A latent of ``n`` cells: unequal label clusters, each batch shifted (silhouettes inside (0, 1))."""
    rng = np.random.default_rng(seed)
    lab = rng.choice(n_labels, size=n, p=rng.dirichlet(np.full(n_labels, 2.0)))
    bat = rng.integers(0, n_batches, size=n)
    x = rng.normal(scale=3.0, size=(n_labels, 8))[lab] + rng.normal(scale=0.8, size=(n_batches, 8))[bat]
    x = x + rng.normal(size=(n, 8))
    return x.astype(np.float32), np.array([f"b{b}" for b in bat]), np.array([f"t{t}" for t in lab])


def test_subsampled_silhouettes_agree_with_the_full_values():
    """The silhouettes (~N^2) above ``silhouette_max_cells`` come from a stratified subsample: on 1,600
    cells, where the full values are computable, an 800-cell estimate is within 0.02 of them (measured
    deviations <= 0.006 on 4,000 cells of 12 types, caps 1,000-2,000, 3 seeds), and the kNN metrics and
    NMI/ARI, which use every cell, are unchanged (to float noise). (Few types: scib-metrics compiles its
    silhouette once per type size.)"""
    x, batch, labels = _clustered_latent(1600, n_labels=3)
    full = hi.integration_metrics_core(x, batch, labels, silhouette_max_cells=None)
    sub = hi.integration_metrics_core(x, batch, labels, silhouette_max_cells=800, seed=1)
    assert 0.05 < full["silhouette_batch"] < 0.95 and 0.05 < full["silhouette_label"] < 0.95, full
    for name in ("silhouette_batch", "silhouette_label"):
        assert abs(sub[name] - full[name]) <= 0.02, (name, sub[name], full[name])
    for name in ("ilisi", "clisi", "graph_connectivity", "nmi", "ari"):
        assert sub[name] == pytest.approx(full[name], abs=1e-5)


def test_silhouettes_never_see_more_cells_than_the_cap(monkeypatch):
    """scib-metrics' silhouettes receive at most ``silhouette_max_cells`` cells, every label and every
    (label, batch) group among them, label shares as in the data; the count is recorded in the params."""
    import scib_metrics

    seen = {}

    def fake(name):
        def record(x, labels, *args, **kwargs):
            seen[name] = (len(x), labels.copy(), None if not args else args[0].copy())
            return 0.5

        return record

    monkeypatch.setattr(scib_metrics, "silhouette_label", fake("label"))
    monkeypatch.setattr(scib_metrics, "silhouette_batch", fake("batch"))
    x, batch, labels = _clustered_latent(3000, n_labels=6, n_batches=3)
    labels = labels.astype("<U8")
    labels[:12], batch[:12] = "rare", "b0"  # 12 cells in one batch: a share of 400 of 1.6, it keeps 10
    adata = ad.AnnData(np.zeros((len(x), 1), dtype=np.float32))
    adata.obsm["X_integrated"] = x
    adata.obs["batch"] = batch
    adata.obs["condition"] = "in_vivo"
    adata.obs["reference_label"] = labels
    hi.integration_metrics(adata, silhouette_max_cells=400)
    params = adata.uns["integration_metrics"]["params"]
    assert seen["label"][0] == seen["batch"][0] == params["n_silhouette_cells"] <= 400
    assert params["n_silhouette_cells"] >= 390 and params["n_cells"] == 3000
    assert params["silhouette_max_cells"] == 400
    codes = seen["batch"][1]  # the integer codes of the labels (sorted names), as scib receives them
    groups = {(a, b) for a, b in zip(codes, seen["batch"][2], strict=True)}
    assert len(groups) > 6 * 3  # every (type, batch) group and the rare type
    names = sorted(set(labels))
    assert np.sum(codes == names.index("rare")) == 10
    common = labels != "rare"
    full_share = pd.Series(labels[common]).value_counts(normalize=True).sort_index().to_numpy()
    sub = codes[codes != names.index("rare")]
    sub_share = np.bincount(sub)[np.bincount(sub) > 0] / len(sub)
    assert np.abs(sub_share - full_share).max() < 0.01
    assert any("subsample of" in note for note in adata.uns["integration_metrics"]["notes"])
    hi.integration_metrics(adata, silhouette_max_cells=None)
    assert seen["label"][0] == adata.uns["integration_metrics"]["params"]["n_silhouette_cells"] == 3000


def test_run_integrate_writes_outputs(merged, tmp_path):
    src = tmp_path / "merged.h5ad"
    merged.write_h5ad(src)
    out = tmp_path / "integrated.h5ad"
    settings = {
        "method": "harmony",
        "n_top_genes": 800,
        "exclude_genes": ["Gata2"],
        "n_pcs": 20,
        "seed": 0,
        "metric_bars": {"ilisi": 0.99},
    }
    hi.run_integrate(
        merged=str(src),
        integrated=str(out),
        model=str(tmp_path / "model"),
        metrics=str(tmp_path / "metrics.tsv"),
        settings=settings,
    )
    adata = ad.read_h5ad(out)
    assert adata.obsm["X_integrated"].shape == (merged.n_obs, 20)
    assert adata.var.loc["Gata2", "hscseq_excluded"]
    assert adata.var["highly_variable"].sum() == 800
    assert sp.issparse(adata.X) and sp.issparse(adata.layers["counts"])
    table = pd.read_csv(tmp_path / "metrics.tsv", sep="\t")
    assert set(table["method"]) == {"harmony"}
    assert table.set_index("metric").loc["ilisi", "warning"]
    assert (tmp_path / "model" / "integration.json").is_file()
    assert not list(tmp_path.glob(".*.part"))


def test_run_integrate_rejects_normalised_input(merged, tmp_path):
    adata = hi.normalize(merged, copy=True)
    src = tmp_path / "merged.h5ad"
    adata.write_h5ad(src)
    with pytest.raises(HscseqInputError, match="raw counts"):
        hi.run_integrate(
            merged=str(src),
            integrated=str(tmp_path / "i.h5ad"),
            model=str(tmp_path / "m"),
            metrics=str(tmp_path / "t.tsv"),
            settings={"method": "none"},
        )
    assert not (tmp_path / "i.h5ad").exists()


def test_integrate_and_metrics_run_on_12k_cells():
    """The whole-dataset steps above the size where approximate-neighbour code paths take over (~9k cells
    crashed the cluster stage with pynndescent 0.7): batch-aware HVGs, scVI (a few epochs, through the shared
    training helper) and scib metrics on 12k cells of three donors. Cell types must stay apart in the
    latent."""
    from hscseq import datasets

    samples = datasets.simulate(datasets.reference_specs(4000, n_donors=3), n_genes=2000, seed=5)
    adata = merged_like(samples)
    assert adata.n_obs >= 11_000  # QC-like removal of planted doublets and low-quality cells
    hi.normalize(adata)
    hi.select_features(adata, n_top_genes=500)
    hi.integrate(adata, method="scvi", n_latent=10, max_epochs=3, seed=0, threads=2)
    assert adata.uns["integrated"]["params"]["epochs_trained"] == 3
    hi.integration_metrics(adata)
    metrics = adata.uns["integration_metrics"]["metrics"]
    assert adata.uns["integration_metrics"]["params"]["n_cells"] == adata.n_obs
    assert metrics["clisi"] >= 0.9 and metrics["nmi"] >= 0.6, metrics
