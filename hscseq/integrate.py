"""Integration: normalisation, batch-aware features, a batch-corrected latent space and its measured quality.

Stage ``integrate`` of the pipeline (``results/merge/merged.h5ad`` -> ``results/integrate/integrated.h5ad``).

- :func:`normalize` keeps raw counts in ``layers["counts"]`` and log-normalises X (sparse throughout).
- :func:`select_features` picks batch-aware ``seurat_v3`` highly variable genes on the counts and removes an
  exclusion list (e.g. the transcription factors used to program the cells, whose forced expression would
  make similarity circular) from them, marking those genes in ``var["hscseq_excluded"]`` so that the score
  stage drops them from signatures too.
- :func:`integrate` builds the latent space with scVI (default), scANVI (when reference labels exist),
  Harmony on PCA, or plain PCA (``none``), into ``obsm["X_integrated"]`` plus the method's own key. The
  integration key is the *technical* batch, never the condition, so states present only in engineered or
  organoid samples are not forced onto the reference.
- :func:`integration_metrics` measures batch mixing and label conservation with scib-metrics on the in vivo
  cells; :func:`metrics_table` gives the table written to ``results/tables/integration_metrics.tsv``.

scVI epoch rule: unless ``max_epochs`` is given, scvi-tools' own rule is used,
``min(400, round(20000 / n_cells * 400))`` (:func:`default_max_epochs`), with early stopping on the
validation ELBO (patience 45 epochs, scvi-tools' default). scANVI then trains
``min(20, max(2, round(scvi_epochs / 3)))`` epochs, also scvi-tools' rule. The accelerator is chosen by
Lightning (``"auto"``: a GPU when one is present, else CPU).

Known trade-off (measured on the simulator, see ``tests/test_integrate.py``): the longer scVI trains, the
better the donors mix, but an engineered-only state that resembles a reference type (primitive erythroid
vs adult erythroid) can end up merged with it, most easily when its distinguishing genes are lost at the
merge (the embryonic globins ``Hbb-y``/``Hbb-bh1`` have no one-to-one human ortholog, so they vanish when
human organoid samples are joined to a mouse reference). Harmony merges such states readily. Read the
UMAP and the off-target scores together with the integration metrics.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from hscseq import _scvi
from hscseq._utils import atomic_path, check_raw_counts, input_error, write_h5ad, write_table

logger = logging.getLogger(__name__)

METHODS = ("scvi", "scanvi", "harmony", "none")

#: Default bars below which a metric is flagged in the report (scib-metrics scales, all in [0, 1]).
#: Unintegrated PCA of the simulator's two in vivo donors scores iLISI ~0.1-0.17; scVI and Harmony reach
#: 0.4-0.9. Label conservation below these bars means that cell types
#: were merged or scattered by the correction.
DEFAULT_METRIC_BARS: dict[str, float] = {
    "ilisi": 0.2,
    "graph_connectivity": 0.8,
    "silhouette_batch": 0.8,
    "clisi": 0.8,
    "silhouette_label": 0.5,
    "nmi": 0.5,
    "ari": 0.3,
}

_METRIC_TYPES = {
    "ilisi": "batch",
    "graph_connectivity": "batch",
    "silhouette_batch": "batch",
    "clisi": "bio",
    "silhouette_label": "bio",
    "nmi": "bio",
    "ari": "bio",
}

_UNLABELLED = "Unknown"


# --------------------------------------------------------------------------------------------------------
# normalisation and features


def _check_counts(x, *, what: str, path: str | None = None) -> None:
    """Raise when ``x`` does not look like raw counts (:func:`hscseq._utils.check_raw_counts`)."""
    check_raw_counts(
        x,
        what=what,
        path=path,
        fix="give the merged raw UMI counts in X (the merge stage writes them there).",
    )


def normalize(
    adata: ad.AnnData, *, target_sum: float = 1e4, counts_layer: str = "counts", copy: bool = False
) -> ad.AnnData | None:
    """Keep raw counts in a layer and log-normalise X.

    Parameters
    ----------
    adata
        Cells x genes with raw counts in X (sparse CSR is kept sparse).
    target_sum
        Counts per cell after normalisation, before ``log1p``.
    counts_layer
        Layer that receives a copy of the raw counts.
    copy
        Return a modified copy instead of working in place.

    Returns
    -------
    ``None``, or the modified copy when ``copy=True``. Sets ``layers[counts_layer]``, X (log1p of normalised
    counts, float32) and ``uns["normalize"]["params"]``.
    """
    import scanpy as sc

    adata = adata.copy() if copy else adata
    _check_counts(adata.X, what="X")
    if sp.issparse(adata.X) and not sp.isspmatrix_csr(adata.X):
        adata.X = sp.csr_matrix(adata.X)
    adata.X = adata.X.astype(np.float32)
    adata.layers[counts_layer] = adata.X.copy()
    sc.pp.normalize_total(adata, target_sum=target_sum)
    sc.pp.log1p(adata)
    adata.uns.pop("log1p", None)
    adata.uns["normalize"] = {
        "params": {"target_sum": float(target_sum), "counts_layer": counts_layer, "log1p": True}
    }
    return adata if copy else None


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
    import scanpy as sc

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
    sub = adata[:, candidates]
    sub = ad.AnnData(
        X=sub.layers[layer],
        obs=adata.obs[[use_batch]] if use_batch else None,
        var=pd.DataFrame(index=sub.var_names),
    )
    if use_batch:
        # seurat_v3 fits a loess per batch; batches of very few cells make it fail, so they are pooled
        sizes = sub.obs[use_batch].value_counts()
        small = sizes.index[sizes < 50]
        if len(small):
            logger.info("batches with < 50 cells pooled for HVG selection: %s", ", ".join(map(str, small)))
            col = sub.obs[use_batch].astype(str)
            sub.obs[use_batch] = col.where(~col.isin(set(map(str, small))), "_small_batches_")
    hvg = sc.pp.highly_variable_genes(
        sub, flavor="seurat_v3", n_top_genes=n_keep, batch_key=use_batch, inplace=False
    )
    hvg.index = sub.var_names
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


# --------------------------------------------------------------------------------------------------------
# numeric cores: arrays in, arrays out


def default_max_epochs(n_cells: int) -> int:
    """scvi-tools' epoch rule for scVI: ``min(400, round(20000 / n_cells * 400))``."""
    return int(min(400, round(20000 / max(n_cells, 1) * 400)))


def pca(x, *, n_comps: int = 50, seed: int = 0) -> np.ndarray:
    """PCA scores (cells x ``n_comps``) of a log-normalised matrix, sparse input never densified."""
    import scanpy as sc

    n_comps = int(min(n_comps, x.shape[0] - 1, x.shape[1] - 1))
    return np.asarray(sc.pp.pca(x, n_comps=n_comps, random_state=seed), dtype=np.float32)


def harmony(pcs: np.ndarray, batch: np.ndarray, *, seed: int = 0, max_iter: int = 20) -> np.ndarray:
    """Harmony-corrected PCs (cells x PCs) from ``harmonypy.run_harmony``; ``batch``: one label per cell."""
    import harmonypy

    meta = pd.DataFrame({"batch": pd.Categorical(np.asarray(batch).astype(str))})
    ho = harmonypy.run_harmony(
        np.asarray(pcs, dtype=np.float64),
        meta,
        ["batch"],
        random_state=seed,
        max_iter_harmony=max_iter,
        verbose=False,
    )
    z = np.asarray(ho.Z_corr)
    # harmonypy 2.x returns cells x PCs; 0.0.x returned PCs x cells
    if z.shape != pcs.shape:
        z = z.T
    if z.shape != pcs.shape:
        msg = f"harmonypy returned an embedding of shape {z.shape} for input {pcs.shape}"
        raise RuntimeError(msg)
    return z.astype(np.float32)


def train_scvi(
    adata: ad.AnnData,
    *,
    batch_key: str = "batch",
    layer: str = "counts",
    n_latent: int = 20,
    gene_likelihood: str = "nb",
    max_epochs: int | None = None,
    early_stopping: bool = True,
    seed: int = 0,
    accelerator: str = "auto",
    threads: int | None = None,
    batch_size: int | None = None,
):
    """Train scVI on the counts of ``adata`` (already subset to features); return ``(model, latent)``.

    ``latent`` is a cells x ``n_latent`` array; nothing is written to ``adata`` apart from scvi-tools'
    registration. The KL warm-up lasts scvi-tools' 400 epochs capped at the epochs trained, so that short
    runs (few configured epochs, or the epoch rule on large data) end with the full KL weight: without it
    the encoder keeps batch information and donors stay apart.
    """
    import scvi

    epochs = default_max_epochs(adata.n_obs) if max_epochs is None else int(max_epochs)
    scvi.settings.seed = seed
    scvi.model.SCVI.setup_anndata(adata, layer=layer, batch_key=batch_key)
    model = scvi.model.SCVI(adata, n_latent=n_latent, gene_likelihood=gene_likelihood)
    logger.info("training scVI: %d cells, %d genes, up to %d epochs", adata.n_obs, adata.n_vars, epochs)
    _scvi.train(
        model,
        max_epochs=epochs,
        seed=seed,
        batch_size=batch_size,
        early_stopping=early_stopping,
        threads=threads,
        accelerator=accelerator,
        plan_kwargs={"n_epochs_kl_warmup": min(400, epochs)},
    )
    return model, np.asarray(model.get_latent_representation(), dtype=np.float32)


def train_scanvi(
    scvi_model,
    *,
    labels_key: str,
    unlabeled_category: str = _UNLABELLED,
    max_epochs: int | None = None,
    seed: int = 0,
    accelerator: str = "auto",
    threads: int | None = None,
):
    """Fine-tune a trained scVI model into scANVI; return ``(model, latent, predictions)``."""
    import scvi

    scvi.settings.seed = seed
    model = scvi.model.SCANVI.from_scvi_model(
        scvi_model, unlabeled_category=unlabeled_category, labels_key=labels_key
    )
    scvi_epochs = scvi_model.history["elbo_train"].shape[0]
    epochs = int(min(20, max(2, round(scvi_epochs / 3)))) if max_epochs is None else int(max_epochs)
    logger.info("training scANVI: %d epochs", epochs)
    _scvi.train(
        model,
        max_epochs=epochs,
        seed=seed,
        threads=threads,
        accelerator=accelerator,
        n_samples_per_label=100,
    )
    latent = np.asarray(model.get_latent_representation(), dtype=np.float32)
    return model, latent, np.asarray(model.predict())


# --------------------------------------------------------------------------------------------------------
# AnnData wrapper


def _labels(adata: ad.AnnData, labels_key: str) -> pd.Series:
    """Reference labels as strings, unlabelled cells as :data:`_UNLABELLED`."""
    if labels_key not in adata.obs:
        return pd.Series(_UNLABELLED, index=adata.obs_names)
    lab = adata.obs[labels_key].astype(object)
    lab = lab.where(lab.notna(), "").astype(str).str.strip()
    return lab.where(~lab.isin(["", "nan", "NaN", "None"]), _UNLABELLED)


def integrate(
    adata: ad.AnnData,
    *,
    method: str = "scvi",
    batch_key: str = "batch",
    labels_key: str = "reference_label",
    n_latent: int = 20,
    gene_likelihood: str = "nb",
    n_pcs: int = 50,
    max_epochs: int | None = None,
    early_stopping: bool = True,
    layer: str = "counts",
    seed: int = 0,
    accelerator: str = "auto",
    threads: int | None = None,
    model_dir: str | os.PathLike | None = None,
    key_added: str = "integrated",
    copy: bool = False,
) -> ad.AnnData | None:
    """Batch-corrected latent space of the highly variable genes.

    Parameters
    ----------
    adata
        Log-normalised X, raw counts in ``layers[layer]``, ``var["highly_variable"]`` (see
        :func:`select_features`).
    method
        ``"scvi"`` (scVI on counts), ``"scanvi"`` (scVI fine-tuned with ``labels_key``; needs labelled
        cells), ``"harmony"`` (Harmony on PCA of X) or ``"none"`` (PCA of X).
    batch_key
        obs column of the technical batch that is corrected. Never the condition: engineered-only states
        must survive integration.
    labels_key
        obs column of reference cell-type labels (empty/NaN for unlabelled cells); used by scANVI only.
    n_latent
        Latent dimensions of scVI/scANVI.
    gene_likelihood
        scVI count distribution: ``"nb"`` (default here: UMI counts are not zero-inflated, and on the
        simulator ZINB merged the engineered primitive-erythroid state into reference erythroid cells),
        ``"zinb"`` (scvi-tools' default) or ``"poisson"``.
    n_pcs
        Principal components for ``harmony`` and ``none``.
    max_epochs
        scVI epochs; ``None`` uses scvi-tools' rule (:func:`default_max_epochs`). For scANVI the
        fine-tuning epochs follow scvi-tools' rule from the scVI epochs actually trained.
    early_stopping
        Stop scVI when the validation ELBO stops improving.
    layer
        Layer of raw counts (scVI/scANVI).
    seed
        Seed of scvi-tools, PCA and Harmony.
    accelerator
        Lightning accelerator; ``"auto"`` takes a GPU when one is present.
    threads
        Torch CPU threads (``None``: leave as is).
    model_dir
        Directory (must not exist) that receives the trained scVI/scANVI model; for ``harmony``/``none`` a
        ``integration.json`` describing what was done. ``None``: nothing saved.
    key_added
        Latent written to ``obsm["X_" + key_added]``; parameters to ``uns[key_added]["params"]``.
    copy
        Return a modified copy instead of working in place.

    Returns
    -------
    ``None``, or the modified copy when ``copy=True``. Sets ``obsm["X_" + key_added]``, the method's own
    key (``X_scVI``, ``X_scANVI``, ``X_pca_harmony`` or ``X_pca``), for scANVI ``obs["scanvi_prediction"]``,
    and ``uns[key_added]["params"]`` (method, batch key, epochs trained, ...).
    """
    if method not in METHODS:
        raise input_error(f"unknown integration method {method!r}.", fix=f"use one of {list(METHODS)}.")
    if batch_key not in adata.obs:
        raise input_error(
            f"obs has no batch column {batch_key!r}.",
            fix="the merge stage writes obs['batch'] from the sample sheet's 'batch' column.",
        )
    if "highly_variable" not in adata.var:
        raise input_error(
            "var['highly_variable'] is missing.", fix="call hscseq.integrate.select_features first."
        )
    labels = _labels(adata, labels_key)
    if method == "scanvi" and (labels != _UNLABELLED).sum() == 0:
        raise input_error(
            f"method 'scanvi' needs reference labels in obs[{labels_key!r}], but no cell has one.",
            fix="set label_column for the in vivo samples in the sample sheet, or use "
            "integrate.method: scvi.",
        )
    adata = adata.copy() if copy else adata
    hvg = adata.var["highly_variable"].to_numpy(dtype=bool)
    params: dict[str, Any] = {
        "method": method,
        "batch_key": batch_key,
        "n_features": int(hvg.sum()),
        "seed": int(seed),
    }
    n_batches = adata.obs[batch_key].nunique()
    if n_batches < 2 and method != "none":
        logger.warning(
            "only one batch in obs[%r]: %s still runs, but there is nothing to correct", batch_key, method
        )
    extra: dict[str, Any] = {}
    if method in ("scvi", "scanvi"):
        if layer not in adata.layers:
            raise input_error(
                f"layers[{layer!r}] with raw counts is missing.", fix="call hscseq.integrate.normalize first."
            )
        sub = ad.AnnData(
            X=adata.layers[layer][:, hvg],
            obs=pd.DataFrame(
                {batch_key: adata.obs[batch_key].astype(str).to_numpy(), "_labels": labels.to_numpy()},
                index=adata.obs_names,
            ),
            var=pd.DataFrame(index=adata.var_names[hvg]),
        )
        sub.layers[layer] = sub.X
        model, latent = train_scvi(
            sub,
            batch_key=batch_key,
            layer=layer,
            n_latent=n_latent,
            gene_likelihood=gene_likelihood,
            max_epochs=max_epochs,
            early_stopping=early_stopping,
            seed=seed,
            accelerator=accelerator,
            threads=threads,
        )
        epochs = int(model.history["elbo_train"].shape[0])
        params.update(
            {
                "n_latent": int(n_latent),
                "gene_likelihood": gene_likelihood,
                "max_epochs": max_epochs if max_epochs is None else int(max_epochs),
                "epochs_trained": epochs,
                "early_stopping": bool(early_stopping),
                "epoch_rule": "min(400, round(20000 / n_cells * 400))"
                if max_epochs is None
                else "config max_epochs",
                "accelerator": str(model.device),
            }
        )
        adata.obsm["X_scVI"] = latent
        if method == "scanvi":
            model, latent, pred = train_scanvi(
                model, labels_key="_labels", seed=seed, accelerator=accelerator, threads=threads
            )
            adata.obsm["X_scANVI"] = latent
            adata.obs["scanvi_prediction"] = pd.Categorical(pred)
            params["labels_key"] = labels_key
            params["scanvi_epochs_trained"] = int(model.history["elbo_train"].shape[0])
        final = latent
        if model_dir is not None:
            model.save(str(model_dir), overwrite=False, save_anndata=False)
            extra["files"] = sorted(p.name for p in Path(model_dir).iterdir())
    else:
        pcs = pca(adata.X[:, hvg], n_comps=n_pcs, seed=seed)
        adata.obsm["X_pca"] = pcs
        params["n_pcs"] = int(pcs.shape[1])
        final = pcs
        if method == "harmony":
            final = harmony(pcs, adata.obs[batch_key].to_numpy(), seed=seed)
            adata.obsm["X_pca_harmony"] = final
        if model_dir is not None:
            Path(model_dir).mkdir(parents=True)
            (Path(model_dir) / "integration.json").write_text(
                json.dumps(
                    {
                        **params,
                        "note": "no trained model: the latent is PCA of the log-normalised highly variable "
                        "genes" + (", corrected by harmonypy.run_harmony" if method == "harmony" else ""),
                    },
                    indent=2,
                )
            )
    adata.obsm["X_" + key_added] = np.asarray(final, dtype=np.float32)
    adata.uns[key_added] = {"params": params, **extra}
    logger.info("integration %s: latent of %d dimensions", method, final.shape[1])
    return adata if copy else None


# --------------------------------------------------------------------------------------------------------
# integration quality (scib-metrics)


def integration_metrics_core(
    x: np.ndarray,
    batch: np.ndarray | None,
    labels: np.ndarray | None,
    *,
    n_neighbors: int = 90,
    seed: int = 0,
) -> dict[str, float]:
    """scib-metrics on an embedding: batch (iLISI, graph connectivity, silhouette batch) and bio (cLISI,
    silhouette label, NMI/ARI of k-means clusters vs labels) scores, all scaled to [0, 1].

    ``batch``/``labels`` ``None`` (or a single category) give NaN for the metrics that need them; graph
    connectivity and silhouette batch need labels too (they are computed within each label).
    """
    import scib_metrics
    from scib_metrics.nearest_neighbors import NeighborsResults
    from sklearn.neighbors import NearestNeighbors

    x = np.asarray(x, dtype=np.float32)
    out = dict.fromkeys(_METRIC_TYPES, np.nan)
    k = int(min(n_neighbors, x.shape[0] - 1))
    if k < 2:
        return out
    nn = NearestNeighbors(n_neighbors=k + 1).fit(x)
    dist, idx = nn.kneighbors(x)
    neigh = NeighborsResults(indices=idx[:, 1:], distances=dist[:, 1:])
    has_batch = batch is not None and len(np.unique(batch)) > 1
    has_labels = labels is not None and len(np.unique(labels)) > 1
    batch = None if batch is None else pd.Categorical(np.asarray(batch).astype(str)).codes
    labels = None if labels is None else pd.Categorical(np.asarray(labels).astype(str)).codes
    if has_batch:
        out["ilisi"] = float(scib_metrics.ilisi_knn(neigh, batch))
    if has_labels:
        out["clisi"] = float(scib_metrics.clisi_knn(neigh, labels))
        out["silhouette_label"] = float(scib_metrics.silhouette_label(x, labels))
        out["graph_connectivity"] = float(scib_metrics.graph_connectivity(neigh, labels))
        nmi_ari = scib_metrics.nmi_ari_cluster_labels_kmeans(x, labels)
        out["nmi"] = float(nmi_ari["nmi"])
        out["ari"] = float(nmi_ari["ari"])
    if has_batch and has_labels:
        out["silhouette_batch"] = float(scib_metrics.silhouette_batch(x, labels, batch))
    return out


def integration_metrics(
    adata: ad.AnnData,
    *,
    embed: str = "X_integrated",
    batch_key: str = "batch",
    labels_key: str = "reference_label",
    condition_key: str = "condition",
    reference_condition: str = "in_vivo",
    bars: Mapping[str, float] | None = None,
    n_neighbors: int = 90,
    seed: int = 0,
    key_added: str = "integration_metrics",
    copy: bool = False,
) -> ad.AnnData | None:
    """Integration quality on the reference (in vivo) cells, with warnings below configurable bars.

    Parameters
    ----------
    adata
        Cells with an embedding in ``obsm[embed]``.
    embed
        obsm key of the embedding.
    batch_key
        obs column of the technical batch.
    labels_key
        obs column of the reference cell-type labels (unlabelled cells are left out of bio metrics).
    condition_key
        obs column of the condition.
    reference_condition
        Condition of the reference cells on which the metrics are computed.
    bars
        Minimum acceptable value per metric (see :data:`DEFAULT_METRIC_BARS`, which fills missing keys).
    n_neighbors
        Neighbours of the kNN graph used by iLISI, cLISI and graph connectivity (scib uses 90).
    seed
        Seed (k-means for NMI/ARI is seeded by scib-metrics itself).
    key_added
        ``uns`` key of the result.
    copy
        Return a modified copy instead of working in place.

    Returns
    -------
    ``None``, or the modified copy when ``copy=True``. Sets ``uns[key_added]`` with ``metrics``
    (``{name: value}``), ``bars``, ``warnings`` (one sentence per metric below its bar, for the report)
    and ``params``. :func:`metrics_table` turns it into a table.
    """
    if embed not in adata.obsm:
        raise input_error(f"obsm[{embed!r}] is missing.", fix="run hscseq.integrate.integrate first.")
    adata = adata.copy() if copy else adata
    bars_full = {**DEFAULT_METRIC_BARS, **(bars or {})}
    ref = (
        (adata.obs[condition_key].astype(str) == reference_condition).to_numpy()
        if condition_key in adata.obs
        else np.ones(adata.n_obs, dtype=bool)
    )
    labels = _labels(adata, labels_key).to_numpy()
    use = ref & (labels != _UNLABELLED) if (labels[ref] != _UNLABELLED).any() else ref
    notes = []
    if not use.any():
        notes.append(f"no {reference_condition} cells: integration metrics not computed")
        values = dict.fromkeys(_METRIC_TYPES, np.nan)
    else:
        lab = labels[use] if (labels[use] != _UNLABELLED).any() else None
        if lab is None:
            notes.append(f"no reference labels in obs[{labels_key!r}]: bio-conservation metrics not computed")
        batch = adata.obs[batch_key].astype(str).to_numpy()[use]
        if len(np.unique(batch)) < 2:
            notes.append(f"one {reference_condition} batch only: batch-mixing metrics not computed")
        values = integration_metrics_core(
            adata.obsm[embed][use], batch, lab, n_neighbors=n_neighbors, seed=seed
        )
    warnings = []
    for name, value in values.items():
        if np.isfinite(value) and value < bars_full[name]:
            kind = "batch mixing" if _METRIC_TYPES[name] == "batch" else "label conservation"
            warnings.append(f"{kind}: {name} = {value:.3f} is below the bar {bars_full[name]:g}")
    for w in warnings:
        logger.warning("integration quality: %s", w)
    adata.uns[key_added] = {
        "metrics": {k: float(v) for k, v in values.items()},
        "bars": {k: float(bars_full[k]) for k in _METRIC_TYPES},
        "warnings": warnings,
        "notes": notes,
        "params": {
            "embed": embed,
            "batch_key": batch_key,
            "labels_key": labels_key,
            "condition_key": condition_key,
            "reference_condition": reference_condition,
            "n_cells": int(use.sum()),
            "n_neighbors": int(n_neighbors),
            "seed": int(seed),
        },
    }
    return adata if copy else None


def metrics_table(adata: ad.AnnData, *, key: str = "integration_metrics") -> pd.DataFrame:
    """Table of :func:`integration_metrics`: one row per metric.

    Columns: ``metric``, ``type`` (batch | bio), ``value``, ``bar``, ``warning`` (True when below the bar),
    ``method`` (integration method), ``n_cells`` (reference cells measured).
    """
    res = adata.uns[key]
    method = adata.uns.get("integrated", {}).get("params", {}).get("method", "")
    rows = []
    for name, kind in _METRIC_TYPES.items():
        value = float(res["metrics"][name])
        bar = float(res["bars"][name])
        rows.append(
            {
                "metric": name,
                "type": kind,
                "value": value,
                "bar": bar,
                "warning": bool(np.isfinite(value) and value < bar),
                "method": method,
                "n_cells": int(res["params"]["n_cells"]),
            }
        )
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------------------------------------
# stage file function


def run_integrate(
    *, merged: str, integrated: str, model: str, metrics: str, settings: dict, threads: int = 1
) -> None:
    """Stage ``integrate``: normalise, select features, integrate, measure; write h5ad, model and metrics.

    ``settings`` is the ``integrate`` config section (method, n_top_genes, exclude_genes, n_latent, n_pcs,
    max_epochs, early_stopping, seed, metric_bars).
    """
    settings = dict(settings)
    method = settings.get("method", "scvi")
    if method not in METHODS:
        raise input_error(
            f"unknown integration method {method!r}.",
            path="config/config.yaml",
            fix=f"set integrate.method to one of {list(METHODS)}.",
        )
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
        n_top_genes=int(settings.get("n_top_genes", 2000)),
        batch_key="batch",
        exclude_genes=settings.get("exclude_genes") or (),
        exclude_cell_cycle=bool(settings.get("exclude_cell_cycle_genes", True)),
    )
    seed = int(settings.get("seed", 0))
    with atomic_path(model) as tmp:
        integrate(
            adata,
            method=method,
            batch_key="batch",
            labels_key="reference_label",
            n_latent=int(settings.get("n_latent", 20)),
            gene_likelihood=settings.get("gene_likelihood", "nb"),
            n_pcs=int(settings.get("n_pcs", 50)),
            max_epochs=settings.get("max_epochs"),
            early_stopping=bool(settings.get("early_stopping", True)),
            seed=seed,
            threads=threads,
            model_dir=tmp,
        )
    integration_metrics(adata, bars=settings.get("metric_bars") or {}, seed=seed)
    write_table(metrics_table(adata), metrics, index=False)
    write_h5ad(adata, integrated)
