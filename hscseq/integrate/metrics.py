"""Integration quality: scib-metrics on the reference cells, bars below which a metric is flagged, a table."""

from __future__ import annotations

import logging
from collections.abc import Mapping

import anndata as ad
import numpy as np
import pandas as pd

from hscseq._utils import input_error
from hscseq.integrate._common import _UNLABELLED, _labels
from hscseq.integrate.settings import IntegrateSettings

logger = logging.getLogger(__name__)

#: Default bars below which a metric is flagged in the report (scib-metrics scales, all in [0, 1]): the
#: schema's ``integrate.metric_bars``. Unintegrated PCA of the simulator's two in vivo donors scores iLISI
#: ~0.1-0.17; scVI and Harmony reach 0.4-0.9. Label conservation below these bars means that cell types
#: were merged or scattered by the correction.
DEFAULT_METRIC_BARS: dict[str, float] = dict(IntegrateSettings().metric_bars)


_METRIC_TYPES = {
    "ilisi": "batch",
    "graph_connectivity": "batch",
    "silhouette_batch": "batch",
    "clisi": "bio",
    "silhouette_label": "bio",
    "nmi": "bio",
    "ari": "bio",
}


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
