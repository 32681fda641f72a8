"""scVI -> scANVI on the reference and scArches surgery for the query."""

from __future__ import annotations

import logging

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

logger = logging.getLogger(__name__)


def _scanvi_latent_and_probs(
    adata: ad.AnnData,
    ref_mask: np.ndarray,
    labels: np.ndarray,
    holdout: np.ndarray,
    batch: np.ndarray,
    *,
    layer: str | None,
    max_epochs: int,
    n_latent: int,
    seed: int,
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Train scVI -> scANVI on reference cells (minus ``holdout``), scArches surgery for everything else.

    Returns the latent of all cells, label probabilities of all cells and the label order.
    """
    import scvi
    import torch

    scvi.settings.seed = seed
    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    counts = adata.layers[layer] if layer else adata.X
    counts = sp.csr_matrix(counts)
    train = ref_mask & ~holdout
    obs = pd.DataFrame(
        {"_batch": batch.astype(str), "_label": np.where(train, labels, "_unlabelled")}, index=adata.obs_names
    )
    ref = ad.AnnData(X=counts[train], obs=obs.loc[train].copy())
    ref.var_names = adata.var_names
    scvi.model.SCVI.setup_anndata(ref, batch_key="_batch", labels_key="_label")
    vae = scvi.model.SCVI(ref, n_latent=n_latent)
    trainer = {"accelerator": "cpu", "enable_progress_bar": False}
    vae.train(max_epochs=max_epochs, **trainer)
    lvae = scvi.model.SCANVI.from_scvi_model(vae, unlabeled_category="_unlabelled")
    lvae.train(max_epochs=max(1, max_epochs // 2), n_samples_per_label=100, **trainer)
    query = ad.AnnData(X=counts[~train], obs=obs.loc[~train].copy())
    query.var_names = adata.var_names
    query.obs["_label"] = "_unlabelled"
    scvi.model.SCANVI.prepare_query_anndata(query, lvae)
    qmodel = scvi.model.SCANVI.load_query_data(query, lvae)
    qmodel.train(max_epochs=max_epochs, plan_kwargs={"weight_decay": 0.0}, **trainer)
    latent = np.zeros((adata.n_obs, n_latent), dtype=np.float32)
    latent[train] = lvae.get_latent_representation(ref)
    latent[~train] = qmodel.get_latent_representation(query)
    p_ref = lvae.predict(ref, soft=True)
    p_q = qmodel.predict(query, soft=True)
    order = [c for c in p_ref.columns if c != "_unlabelled"]
    probs = np.zeros((adata.n_obs, len(order)))
    probs[train] = p_ref[order].to_numpy()
    probs[~train] = p_q[order].to_numpy()
    probs /= np.clip(probs.sum(axis=1, keepdims=True), 1e-12, None)
    return latent, probs, order
