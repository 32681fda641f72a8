"""Numeric cores of the ``scvi`` and ``scanvi`` methods: scvi-tools models trained, latents as arrays."""

from __future__ import annotations

import logging

import anndata as ad
import numpy as np

from hscseq import _scvi
from hscseq.integrate._common import _UNLABELLED

logger = logging.getLogger(__name__)


def default_max_epochs(
    n_cells: int, *, max_steps: int | None = None, batch_size: int = _scvi.DEFAULT_BATCH_SIZE
) -> int:
    """scvi-tools' epoch rule for scVI, ``min(400, round(20000 / n_cells * 400))``, optionally capped at the
    fewest epochs that reach ``max_steps`` optimiser steps of ``batch_size`` cells (90% of cells train; the
    last epoch may overshoot the budget by less than one epoch's steps).

    scvi-tools' rule keeps cells x epochs near 8 million above 20,000 cells, so the number of optimiser
    steps (and the time) grows with the data; a step budget keeps it constant instead.
    """
    epochs = int(min(400, round(20000 / max(n_cells, 1) * 400)))
    return _scvi.epochs_for_steps(n_cells, epochs, max_steps=max_steps, batch_size=batch_size)


def train_scvi(
    adata: ad.AnnData,
    *,
    batch_key: str = "batch",
    layer: str = "counts",
    n_latent: int = 20,
    gene_likelihood: str = "nb",
    max_epochs: int | None = None,
    max_steps: int | None = None,
    early_stopping: bool = True,
    seed: int = 0,
    accelerator: str = "auto",
    threads: int | None = None,
    batch_size: int | None = None,
    lr: float | None = None,
):
    """Train scVI on the counts of ``adata`` (already subset to features); return ``(model, latent)``.

    ``latent`` is a cells x ``n_latent`` array; nothing is written to ``adata`` apart from scvi-tools'
    registration. The KL warm-up lasts scvi-tools' 400 epochs capped at the epochs trained, so that short
    runs (few configured epochs, or the epoch rule on large data) end with the full KL weight: without it
    the encoder keeps batch information and donors stay apart. ``lr``: Adam's learning rate (scvi-tools'
    default, 1e-3, when None).
    """
    import scvi

    size = _scvi.batch_size(adata.n_obs) if batch_size is None else int(batch_size)
    rule = default_max_epochs(adata.n_obs, max_steps=max_steps, batch_size=size)
    epochs = rule if max_epochs is None else int(max_epochs)
    scvi.settings.seed = seed
    scvi.model.SCVI.setup_anndata(adata, layer=layer, batch_key=batch_key)
    model = scvi.model.SCVI(adata, n_latent=n_latent, gene_likelihood=gene_likelihood)
    logger.info("training scVI: %d cells, %d genes, up to %d epochs", adata.n_obs, adata.n_vars, epochs)
    plan = {"n_epochs_kl_warmup": min(400, epochs)} | ({} if lr is None else {"lr": float(lr)})
    _scvi.train(
        model,
        max_epochs=epochs,
        seed=seed,
        batch_size=batch_size,
        early_stopping=early_stopping,
        threads=threads,
        accelerator=accelerator,
        plan_kwargs=plan,
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
