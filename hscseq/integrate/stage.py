"""The integrate stage's entry: normalise, select features, integrate, measure; write h5ad, model, metrics."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import anndata as ad

from hscseq._utils import atomic_path, input_error, write_h5ad, write_table
from hscseq.integrate._common import _check_counts
from hscseq.integrate.features import select_features
from hscseq.integrate.methods import integrate
from hscseq.integrate.metrics import integration_metrics, metrics_table
from hscseq.integrate.normalize import normalize
from hscseq.integrate.settings import IntegrateSettings


def run_integrate(
    *,
    merged: str,
    integrated: str,
    model: str,
    metrics: str,
    settings: IntegrateSettings | Mapping[str, Any] | None,
    threads: int = 1,
) -> None:
    """Stage ``integrate``: normalise, select features, integrate, measure; write h5ad, model and metrics.

    ``settings`` is an :class:`IntegrateSettings` or the ``integrate`` config section (validated against the
    schema: method, n_top_genes, exclude_genes, exclude_cell_cycle_genes, n_latent, gene_likelihood, n_pcs,
    max_epochs, max_steps, early_stopping, seed, silhouette_max_cells, metric_bars).
    """
    s = IntegrateSettings.coerce(settings)
    adata = ad.read_h5ad(merged)
    if adata.n_obs < 10:
        raise input_error(
            f"only {adata.n_obs} cells after QC and merge; too few to integrate.",
            path=merged,
            fix="check the QC thresholds and sample sheet.",
        )
    for col in ("batch", "condition"):
        if col not in adata.obs:
            raise input_error(
                f"obs has no {col!r} column.", path=merged, fix="regenerate the file with the merge stage."
            )
    _check_counts(adata.X, what="X", path=merged)
    normalize(adata)
    select_features(
        adata,
        n_top_genes=int(s.n_top_genes),
        batch_key="batch",
        exclude_genes=s.exclude_genes or (),
        exclude_cell_cycle=bool(s.exclude_cell_cycle_genes),
    )
    with atomic_path(model) as tmp:
        integrate(
            adata,
            method=s.method,
            batch_key="batch",
            labels_key="reference_label",
            n_latent=int(s.n_latent),
            gene_likelihood=s.gene_likelihood,
            n_pcs=int(s.n_pcs),
            max_epochs=s.max_epochs,
            max_steps=s.max_steps,
            early_stopping=bool(s.early_stopping),
            seed=int(s.seed),
            threads=threads,
            model_dir=tmp,
        )
    integration_metrics(
        adata, bars=s.metric_bars, silhouette_max_cells=s.silhouette_max_cells, seed=int(s.seed)
    )
    write_table(metrics_table(adata), metrics, index=False)
    write_h5ad(adata, integrated)
