"""External reference h5ad: reading, checking and joining with the query."""

from __future__ import annotations

import logging
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from hscseq._utils import input_error
from hscseq.fidelity.parts import (
    _counts,
)

logger = logging.getLogger(__name__)


def _load_external_reference(
    path: str, adata: ad.AnnData, *, label_key: str, stage_key: str | None, donor_key: str | None
) -> ad.AnnData:
    """Read a reference h5ad (raw counts in layers["counts"] or X, labels in obs) on ``adata``'s genes."""
    p = Path(path)
    if not p.is_file():
        raise input_error("the reference h5ad does not exist.", path=p, fix="fix config fidelity.reference.")
    ref = ad.read_h5ad(p)
    if label_key not in ref.obs:
        raise input_error(
            f"the reference has no label column {label_key!r} (columns: {list(ref.obs.columns)}).",
            path=p,
            fix="set fidelity.reference_label_key.",
        )
    if stage_key and stage_key not in ref.obs:
        raise input_error(
            f"the reference has no stage column {stage_key!r}.",
            path=p,
            fix="set fidelity.reference_stage_key to an existing column or null.",
        )
    counts = sp.csr_matrix(ref.layers.get("counts", ref.X))
    sample = counts.data[:10000]
    if sample.size and (np.any(sample < 0) or not np.allclose(sample, np.round(sample))):
        raise input_error(
            "the reference holds no raw counts (non-integer values in layers['counts'] / X).",
            path=p,
            fix="store raw UMI counts in X or layers['counts'].",
        )
    shared = adata.var_names.intersection(ref.var_names)
    if len(shared) < 500:
        raise input_error(
            f"only {len(shared)} genes are shared between the reference and the data.",
            path=p,
            fix="use a reference of the analysis species with gene symbols as var_names.",
        )
    out = ad.AnnData(X=counts[:, ref.var_names.get_indexer(shared)], obs=pd.DataFrame(index=ref.obs_names))
    out.var_names = shared
    out.obs["reference_label"] = ref.obs[label_key].astype(str).to_numpy()
    out.obs["sample"] = "reference"
    out.obs["condition"] = "in_vivo"
    donor = ref.obs[donor_key].astype(str).to_numpy() if donor_key else np.full(ref.n_obs, "reference")
    out.obs["donor"] = donor
    out.obs["batch"] = [f"reference:{d}" for d in donor]
    if stage_key:
        out.obs["stage"] = ref.obs[stage_key].astype(str).to_numpy()
    return out


def _joint_with_reference(
    adata: ad.AnnData, ref: ad.AnnData, *, n_comps: int = 30, seed: int = 0
) -> ad.AnnData:
    """Query (reference labels cleared) + external reference on shared genes; PCA fitted on the reference."""
    import scanpy as sc

    shared = ref.var_names
    q = ad.AnnData(X=_counts(adata, "counts")[:, adata.var_names.get_indexer(shared)], obs=adata.obs.copy())
    q.var_names = shared
    q.obs["reference_label"] = np.nan
    q.obs["stage"] = ""
    joint = ad.concat([ref, q], join="outer", merge="same")
    joint.obs["reference_label"] = joint.obs["reference_label"].replace("", np.nan)
    joint.layers["counts"] = joint.X.copy()
    sc.pp.normalize_total(joint, target_sum=1e4)
    sc.pp.log1p(joint)
    is_ref = (
        joint.obs["condition"].astype(str).eq("in_vivo").to_numpy()
        & joint.obs["sample"].eq("reference").to_numpy()
    )
    r = joint[is_ref].copy()
    sc.pp.highly_variable_genes(r, n_top_genes=min(2000, r.n_vars))
    hv = r.var["highly_variable"].to_numpy()
    from sklearn.decomposition import TruncatedSVD

    xr = r.X[:, hv]
    mean = np.asarray(xr.mean(axis=0)).ravel()
    n_comps = min(n_comps, int(hv.sum()) - 1)
    svd = TruncatedSVD(n_components=n_comps, random_state=seed).fit(np.asarray(xr - mean))
    # project in chunks: only a block of cells x highly variable genes is densified at a time
    xj = sp.csr_matrix(joint.X)[:, hv]
    emb = np.zeros((joint.n_obs, n_comps))
    for start in range(0, joint.n_obs, 5000):
        block = np.asarray(xj[start : start + 5000].todense()) - mean
        emb[start : start + 5000] = block @ svd.components_.T
    joint.obsm["X_integrated"] = emb
    return joint
