"""Measurements behind the performance defaults (not collected by pytest; see README "Performance").

``python tests/benchmarks/levers.py doublets --seeds 0 1 2`` compares doublet steps on the simulator's
planted doublets (precision, recall, AUC, seconds) per sample; ``python tests/benchmarks/levers.py epochs``
compares scVI epoch / batch-size rules by scib-metrics totals on in vivo cells against the simulator's truth.
Each writes a TSV next to this file under ``results/`` and prints it.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd

from hscseq import datasets, integrate, qc

OUT = Path(__file__).parent / "results"

#: scib-metrics' Benchmarker: total = 0.4 * batch correction + 0.6 * bio conservation.
BATCH = ("ilisi", "graph_connectivity", "silhouette_batch")
BIO = ("clisi", "silhouette_label", "nmi", "ari")


def scib_total(m: dict[str, float]) -> tuple[float, float, float]:
    """(batch, bio, total) as scib-metrics' Benchmarker aggregates them."""
    batch = float(np.mean([m[k] for k in BATCH]))
    bio = float(np.mean([m[k] for k in BIO]))
    return batch, bio, 0.4 * batch + 0.6 * bio


def _auc(score: np.ndarray, truth: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(truth, score))


def doublets(
    seeds: list[int], n_cells: int, n_genes: int, solo_epochs: int, solo_steps: list[int]
) -> pd.DataFrame:
    """Doublet steps on one simulated sample per seed; ``solo_steps`` adds Scrublet + SOLO with each SOLO
    training capped at that many optimiser steps (``qc.solo_max_steps``)."""
    variants = {
        "scrublet+solo rank (default)": {"methods": ("scrublet", "solo"), "rule": "rank"},
        **{
            f"scrublet+solo rank, SOLO {n} steps": {
                "methods": ("scrublet", "solo"),
                "rule": "rank",
                "solo_max_steps": n,
            }
            for n in solo_steps
        },
        "scrublet rank-count": {"methods": ("scrublet",), "rule": "rank"},
        "scrublet threshold": {"methods": ("scrublet",), "rule": "scrublet"},
    }
    rows = []
    for seed in seeds:
        spec = datasets.reference_specs(n_cells, n_donors=1)[0]
        adata = datasets.simulate([spec], n_genes=n_genes, seed=seed)[spec.sample]
        truth = adata.obs["is_doublet"].to_numpy(bool)
        for name, kw in variants.items():
            start = time.perf_counter()
            res = qc.detect_doublets(
                adata, **kw, solo_max_epochs=solo_epochs, threads=2, random_state=seed, copy=True
            )
            secs = time.perf_counter() - start
            called = res.obs["predicted_doublet"].to_numpy(bool)
            tp = int((called & truth).sum())
            solo = res.uns["doublets"]["methods"].get("solo", {})
            rows.append(
                {
                    "seed": seed,
                    "cells": adata.n_obs,
                    "planted": int(truth.sum()),
                    "variant": name,
                    "solo_epochs": str(solo.get("epochs", "-")),
                    "called": int(called.sum()),
                    "precision": tp / max(1, called.sum()),
                    "recall": tp / max(1, truth.sum()),
                    "auc": _auc(res.obs["doublet_score"].to_numpy(float), truth),
                    "seconds": round(secs, 1),
                }
            )
            print(rows[-1], flush=True)
    return pd.DataFrame(rows)


def scrublet_knn(seeds: list[int], n_cells: int, n_genes: int) -> pd.DataFrame:
    """Scrublet's kNN: exact (scikit-learn) vs approximate (pynndescent) on one large sample."""
    rows = []
    for seed in seeds:
        spec = datasets.reference_specs(n_cells, n_donors=1)[0]
        adata = datasets.simulate([spec], n_genes=n_genes, seed=seed)[spec.sample]
        truth = adata.obs["is_doublet"].to_numpy(bool)
        rate = qc.expected_doublet_rate(adata.n_obs)
        for approx in (False, True, False):  # exact twice: the first call may pay numba compilation
            start = time.perf_counter()
            scores, called, _ = qc._run_scrublet(adata, rate=rate, seed=seed, approx_neighbors=approx)
            secs = time.perf_counter() - start
            tp = int((called & truth).sum())
            rows.append(
                {
                    "seed": seed,
                    "cells": adata.n_obs,
                    "approx_neighbors": approx,
                    "precision": tp / max(1, called.sum()),
                    "recall": tp / max(1, truth.sum()),
                    "auc": _auc(scores, truth),
                    "seconds": round(secs, 1),
                }
            )
            print(rows[-1], flush=True)
    return pd.DataFrame(rows)


def _epochs_of(cfg: str, n_cells: int) -> tuple[int, int]:
    """``EPOCHSxBATCH`` (0 epochs = scvi-tools' rule) or ``sSTEPSxBATCH`` (scvi-tools' rule capped at a budget
    of optimiser steps, :func:`hscseq.integrate.default_max_epochs` with ``max_steps``)."""
    ep, bs = cfg.split("x")
    if ep.startswith("s"):
        return integrate.default_max_epochs(n_cells, max_steps=int(ep[1:]), batch_size=int(bs)), int(bs)
    return int(ep), int(bs)


def epochs(seeds: list[int], n_cells: int, n_genes: int, configs: list[str]) -> pd.DataFrame:
    import anndata as ad
    import scanpy as sc

    rows = []
    for seed in seeds:
        specs = [*datasets.reference_specs(n_cells // 4, n_donors=3), datasets.engineered_spec(n_cells // 4)]
        samples = datasets.simulate(specs, n_genes=n_genes, batch_effect=0.5, seed=seed)
        adata = ad.concat(list(samples.values()), index_unique="-")
        keep = ~(adata.obs["is_doublet"] | adata.obs["is_low_quality"]).to_numpy()
        adata = adata[keep].copy()
        integrate.normalize(adata)
        sc.pp.highly_variable_genes(
            adata, n_top_genes=2000, flavor="seurat_v3", layer="counts", batch_key="batch"
        )
        hvg = adata.var["highly_variable"].to_numpy()
        invivo = (adata.obs["condition"] == "in_vivo").to_numpy()
        truth = adata.obs["true_cell_type"].astype(str).to_numpy()
        batch = adata.obs["batch"].astype(str).to_numpy()
        pcs = integrate.pca(adata.X[:, hvg], n_comps=30, seed=seed)
        m = integrate.integration_metrics_core(pcs[invivo], batch[invivo], truth[invivo])
        rows.append(
            {
                "seed": seed,
                "cells": adata.n_obs,
                "config": "unintegrated PCA",
                "epochs": 0,
                "batch_size": 0,
                "seconds": 0.0,
                **dict(zip(("batch", "bio", "total"), scib_total(m), strict=True)),
            }
        )
        print(rows[-1], flush=True)
        for cfg in configs:
            max_ep, bs = _epochs_of(cfg, adata.n_obs)
            sub = ad.AnnData(X=adata.layers["counts"][:, hvg], obs=adata.obs[["batch"]].copy())
            sub.layers["counts"] = sub.X
            start = time.perf_counter()
            model, latent = integrate.train_scvi(
                sub, max_epochs=max_ep or None, batch_size=bs, seed=seed, threads=2, accelerator="cpu"
            )
            secs = time.perf_counter() - start
            m = integrate.integration_metrics_core(latent[invivo], batch[invivo], truth[invivo])
            rows.append(
                {
                    "seed": seed,
                    "cells": adata.n_obs,
                    "config": cfg,
                    "epochs": int(model.history["elbo_train"].shape[0]),
                    "batch_size": bs,
                    "seconds": round(secs, 1),
                    **dict(zip(("batch", "bio", "total"), scib_total(m), strict=True)),
                }
            )
            print(rows[-1], flush=True)
    return pd.DataFrame(rows)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("what", choices=["doublets", "epochs", "scrublet"])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--cells", type=int, default=3000)
    p.add_argument("--genes", type=int, default=5000)
    p.add_argument("--solo-epochs", type=int, default=100)
    p.add_argument("--solo-steps", type=int, nargs="*", default=[], help="SOLO step budgets to compare")
    p.add_argument(
        "--configs",
        nargs="+",
        default=["0x128", "100x128", "100x512"],
        help="scVI runs as EPOCHSxBATCH (0 epochs = scvi-tools' rule) or sSTEPSxBATCH (rule capped at STEPS)",
    )
    p.add_argument("--tag", default="")
    a = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    OUT.mkdir(exist_ok=True)
    if a.what == "doublets":
        df = doublets(a.seeds, a.cells, a.genes, a.solo_epochs, a.solo_steps)
        summary = df.groupby("variant")[["precision", "recall", "auc", "seconds"]].mean()
    elif a.what == "scrublet":
        df = scrublet_knn(a.seeds, a.cells, a.genes)
        summary = df.groupby("approx_neighbors")[["precision", "recall", "auc", "seconds"]].mean()
    else:
        df = epochs(a.seeds, a.cells, a.genes, a.configs)
        summary = df.groupby("config")[["epochs", "seconds", "batch", "bio", "total"]].mean()
    path = OUT / f"{a.what}{a.tag}.tsv"
    df.to_csv(path, sep="\t", index=False)
    print(df.to_string(index=False))
    print(summary.round(3).to_string())
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
