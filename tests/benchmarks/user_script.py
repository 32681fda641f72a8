"""The baseline of the benchmark: the plain scanpy + scVI script a competent user would write.

scanpy QC (fixed thresholds), ``sc.pp.scrublet`` per batch (threshold 0.25), seurat_v3 HVGs, scVI with
scvi-tools' default epoch rule, Leiden. Not part of hscseq and not collected by pytest; ``run.py`` calls it
on the same counts as the pipeline:

    python tests/benchmarks/user_script.py SAMPLE_SHEET OUT.h5ad
"""

from __future__ import annotations

import sys
import time

import anndata as ad
import pandas as pd
import scanpy as sc
import scvi


def main(sheet: str, out: str) -> None:
    start = time.perf_counter()
    rows = pd.read_csv(sheet, sep="\t", dtype=str, keep_default_na=False)
    parts = []
    for row in rows.itertuples():
        a = sc.read_h5ad(row.path)
        a.obs["sample"] = row.sample
        a.obs["batch"] = row.batch
        a.obs["condition"] = row.condition
        a.obs["label"] = a.obs[row.label_column].astype(str) if row.label_column else ""
        a.obs_names = [f"{row.sample}:{b}" for b in a.obs_names]
        parts.append(a)
    adata = ad.concat(parts, join="inner")
    adata.var["mt"] = adata.var_names.str.startswith(("mt-", "MT-"))
    sc.pp.calculate_qc_metrics(adata, qc_vars=["mt"], inplace=True, percent_top=None, log1p=False)
    adata = adata[(adata.obs["n_genes_by_counts"] >= 200) & (adata.obs["pct_counts_mt"] < 20)].copy()
    sc.pp.filter_genes(adata, min_cells=3)
    # threshold given: scanpy's automatic one needs scikit-image, which is not installed here
    sc.pp.scrublet(adata, batch_key="batch", threshold=0.25, random_state=0)
    adata = adata[~adata.obs["predicted_doublet"].to_numpy(bool)].copy()
    t_qc = time.perf_counter()
    adata.layers["counts"] = adata.X.copy()
    sc.pp.normalize_total(adata, target_sum=1e4)
    sc.pp.log1p(adata)
    sc.pp.highly_variable_genes(
        adata, n_top_genes=2000, flavor="seurat_v3", layer="counts", batch_key="batch"
    )
    hvg = adata[:, adata.var["highly_variable"]].copy()
    sc.pp.pca(hvg, n_comps=30, random_state=0)  # unintegrated baseline for the benchmark table
    scvi.settings.seed = 0
    scvi.model.SCVI.setup_anndata(hvg, layer="counts", batch_key="batch")
    model = scvi.model.SCVI(hvg)
    model.train()
    t_scvi = time.perf_counter()
    hvg.obsm["X_scVI"] = model.get_latent_representation()
    sc.pp.neighbors(hvg, use_rep="X_scVI")
    sc.tl.leiden(hvg, flavor="igraph", n_iterations=2, directed=False)
    end = time.perf_counter()
    res = ad.AnnData(obs=hvg.obs[["sample", "batch", "condition", "label", "leiden"]].copy())
    res.obsm["X_scVI"] = hvg.obsm["X_scVI"]
    res.obsm["X_pca"] = hvg.obsm["X_pca"]
    res.uns["timing"] = {
        "qc_doublets_s": t_qc - start,
        "scvi_s": t_scvi - t_qc,
        "total_s": end - start,
        "epochs": int(model.history["elbo_train"].shape[0]),
        "device": str(model.device),
    }
    res.write_h5ad(out)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
