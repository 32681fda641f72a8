"""``integrate``: the AnnData wrapper that builds the batch-corrected latent with one of :data:`METHODS`."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd

from hscseq._utils import input_error
from hscseq.integrate._common import _UNLABELLED, METHODS, _labels
from hscseq.integrate.models import train_scanvi, train_scvi
from hscseq.integrate.pca import harmony, pca
from hscseq.integrate.settings import DEFAULT_SETTINGS as _D

logger = logging.getLogger(__name__)


def integrate(
    adata: ad.AnnData,
    *,
    method: str = _D.method,
    batch_key: str = "batch",
    labels_key: str = "reference_label",
    n_latent: int = _D.n_latent,
    gene_likelihood: str = _D.gene_likelihood,
    n_pcs: int = _D.n_pcs,
    max_epochs: int | None = _D.max_epochs,
    max_steps: int | None = _D.max_steps,
    early_stopping: bool = _D.early_stopping,
    layer: str = "counts",
    seed: int = _D.seed,
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
    max_steps
        With ``max_epochs=None``: cap scvi-tools' rule at the epochs that reach this many optimiser
        steps (default 16,000: changes nothing below ~5.7k cells, 46 instead of 174 epochs at 46k; README
        Performance); ``None``: scvi-tools' rule uncapped.
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
    labels = _checked_labels(adata, method=method, batch_key=batch_key, labels_key=labels_key)
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
        model, final = _scvi_latent(
            adata,
            hvg,
            labels,
            params,
            method=method,
            batch_key=batch_key,
            labels_key=labels_key,
            layer=layer,
            n_latent=n_latent,
            gene_likelihood=gene_likelihood,
            max_epochs=max_epochs,
            max_steps=max_steps,
            early_stopping=early_stopping,
            seed=seed,
            accelerator=accelerator,
            threads=threads,
        )
        if model_dir is not None:
            model.save(str(model_dir), overwrite=False, save_anndata=False)
            extra["files"] = sorted(p.name for p in Path(model_dir).iterdir())
    else:
        final = _pca_latent(adata, hvg, params, method=method, batch_key=batch_key, n_pcs=n_pcs, seed=seed)
        if model_dir is not None:
            _write_pca_note(model_dir, params, method=method)
    adata.obsm["X_" + key_added] = np.asarray(final, dtype=np.float32)
    adata.uns[key_added] = {"params": params, **extra}
    logger.info("integration %s: latent of %d dimensions", method, final.shape[1])
    return adata if copy else None


def _checked_labels(adata: ad.AnnData, *, method: str, batch_key: str, labels_key: str) -> pd.Series:
    """Refuse an unknown method or missing inputs; return the reference labels (:func:`_labels`)."""
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
    return labels


def _scvi_latent(
    adata: ad.AnnData,
    hvg: np.ndarray,
    labels: pd.Series,
    params: dict[str, Any],
    *,
    method: str,
    batch_key: str,
    labels_key: str,
    layer: str,
    n_latent: int,
    gene_likelihood: str,
    max_epochs: int | None,
    max_steps: int | None,
    early_stopping: bool,
    seed: int,
    accelerator: str,
    threads: int | None,
):
    """scVI (then scANVI for ``method="scanvi"``) on the counts of the features; return ``(model, latent)``.

    Sets ``obsm["X_scVI"]`` (and ``obsm["X_scANVI"]``, ``obs["scanvi_prediction"]``) and adds the training
    parameters to ``params``.
    """
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
        max_steps=max_steps,
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
            "max_steps": max_steps if max_steps is None else int(max_steps),
            "epoch_rule": _epoch_rule(max_epochs, max_steps),
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
    return model, latent


def _epoch_rule(max_epochs: int | None, max_steps: int | None) -> str:
    if max_epochs is not None:
        return "config max_epochs"
    rule = "min(400, round(20000 / n_cells * 400))"
    if max_steps is None:
        return rule
    return f"{rule}, capped at the epochs that reach {int(max_steps)} optimiser steps"


def _pca_latent(
    adata: ad.AnnData,
    hvg: np.ndarray,
    params: dict[str, Any],
    *,
    method: str,
    batch_key: str,
    n_pcs: int,
    seed: int,
) -> np.ndarray:
    """PCA of the log-normalised features (``obsm["X_pca"]``), Harmony-corrected for ``method="harmony"``."""
    pcs = pca(adata.X[:, hvg], n_comps=n_pcs, seed=seed)
    adata.obsm["X_pca"] = pcs
    params["n_pcs"] = int(pcs.shape[1])
    if method != "harmony":
        return pcs
    corrected = harmony(pcs, adata.obs[batch_key].to_numpy(), seed=seed)
    adata.obsm["X_pca_harmony"] = corrected
    return corrected


def _write_pca_note(model_dir: str | os.PathLike, params: dict[str, Any], *, method: str) -> None:
    """``integration.json`` in a new ``model_dir``: what was done, as there is no trained model to save."""
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
