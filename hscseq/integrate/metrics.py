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


#: Default cap on the cells of the two silhouettes (the schema's ``integrate.silhouette_max_cells``).
DEFAULT_SILHOUETTE_MAX_CELLS: int | None = IntegrateSettings().silhouette_max_cells

#: Cells kept from each (label, batch) group of the silhouette subsample when the group has that many.
SILHOUETTE_MIN_GROUP = 10


def silhouette_subsample(
    labels: np.ndarray,
    batch: np.ndarray | None,
    *,
    max_cells: int | None = DEFAULT_SILHOUETTE_MAX_CELLS,
    seed: int = 0,
) -> np.ndarray:
    """Sorted indices of a seeded subsample of at most ``max_cells`` cells, stratified by label and batch.

    The silhouettes compare every cell with every other (time and memory ~N^2), so above ``max_cells`` they
    are estimated on this subsample. Each (label, batch) group keeps its share of ``max_cells`` in proportion
    to its size (largest remainders), so label and batch proportions are those of the data up to rounding;
    a group whose share would be below ``min(size, SILHOUETTE_MIN_GROUP)`` keeps that many instead (a rare
    type, or a type seen in a small batch, stays in silhouette batch) and the others share the rest (the
    floors alone can exceed ``max_cells`` only with more than ``max_cells / SILHOUETTE_MIN_GROUP`` groups).

    Parameters
    ----------
    labels
        Label of each cell.
    batch
        Batch of each cell (``None``: stratified by label only).
    max_cells
        Most cells kept; ``None`` (or at least the number of cells) keeps every cell.
    seed
        Seed of the draw.

    Returns
    -------
    Indices into ``labels``, sorted (every index when nothing needs to be dropped).
    """
    n = len(labels)
    if max_cells is None or n <= max_cells:
        return np.arange(n)
    groups = {"label": np.asarray(labels).astype(str)}
    if batch is not None:
        groups["batch"] = np.asarray(batch).astype(str)
    codes = pd.DataFrame(groups).groupby(list(groups), sort=True).ngroup().to_numpy()
    size = np.bincount(codes)
    floor = np.minimum(size, SILHOUETTE_MIN_GROUP)
    fixed = np.zeros(len(size), dtype=bool)
    while True:  # groups whose proportional share is below their floor keep the floor; the rest share
        budget = max(int(max_cells) - int(floor[fixed].sum()), 0)
        share = np.where(fixed, 0.0, budget * size / max(int(size[~fixed].sum()), 1))
        low = ~fixed & (share < floor)
        if not low.any():
            break
        fixed |= low
    take = np.where(fixed, floor, np.floor(share)).astype(int)
    order = np.argsort(-(share - np.floor(share)), kind="stable")[: max(budget - int(take[~fixed].sum()), 0)]
    take[order] += 1
    take = np.minimum(take, size)
    rng = np.random.default_rng(seed)
    idx = [rng.choice(np.flatnonzero(codes == g), size=int(t), replace=False) for g, t in enumerate(take)]
    return np.sort(np.concatenate(idx))


def integration_metrics_core(
    x: np.ndarray,
    batch: np.ndarray | None,
    labels: np.ndarray | None,
    *,
    n_neighbors: int = 90,
    silhouette_max_cells: int | None = DEFAULT_SILHOUETTE_MAX_CELLS,
    seed: int = 0,
) -> dict[str, float]:
    """scib-metrics on an embedding: batch (iLISI, graph connectivity, silhouette batch) and bio (cLISI,
    silhouette label, NMI/ARI of k-means clusters vs labels) scores, all scaled to [0, 1].

    ``batch``/``labels`` ``None`` (or a single category) give NaN for the metrics that need them; graph
    connectivity and silhouette batch need labels too (they are computed within each label). The two
    silhouettes (~N^2) are computed on :func:`silhouette_subsample` of at most ``silhouette_max_cells``
    cells (``None``: every cell; seeded by ``seed``); the kNN metrics and NMI/ARI use every cell.
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
        out["graph_connectivity"] = float(scib_metrics.graph_connectivity(neigh, labels))
        nmi_ari = scib_metrics.nmi_ari_cluster_labels_kmeans(x, labels)
        out["nmi"] = float(nmi_ari["nmi"])
        out["ari"] = float(nmi_ari["ari"])
        sub = silhouette_subsample(
            labels, batch if has_batch else None, max_cells=silhouette_max_cells, seed=seed
        )
        out["silhouette_label"] = float(scib_metrics.silhouette_label(x[sub], labels[sub]))
        if has_batch:
            out["silhouette_batch"] = float(scib_metrics.silhouette_batch(x[sub], labels[sub], batch[sub]))
    return out


def _measure(
    embedding,
    use,
    labels,
    batches,
    *,
    labels_key,
    reference_condition,
    n_neighbors,
    silhouette_max_cells,
    seed,
):
    """The metrics on the ``use`` cells, why a kind was not computed (``missing``), notes, silhouette n."""
    sampled = []  # the silhouette subsample, if any
    missing = {"batch": "", "bio": ""}  # why a kind of metric was not computed (the table's note)
    n_sil = 0
    if not use.any():
        missing = dict.fromkeys(missing, f"no {reference_condition} cells: integration metrics not computed")
        values = dict.fromkeys(_METRIC_TYPES, np.nan)
    else:
        lab = labels[use] if (labels[use] != _UNLABELLED).any() else None
        if lab is None:
            missing["bio"] = (
                f"no reference labels in obs[{labels_key!r}]: bio-conservation metrics not computed"
            )
        batch = batches[use]
        if len(np.unique(batch)) < 2:
            missing["batch"] = f"one {reference_condition} batch only: batch-mixing metrics not computed"
        values = integration_metrics_core(
            embedding[use],
            batch,
            lab,
            n_neighbors=n_neighbors,
            silhouette_max_cells=silhouette_max_cells,
            seed=seed,
        )
        if lab is not None:
            sil_batch = batch if len(np.unique(batch)) > 1 else None
            n_sil = len(silhouette_subsample(lab, sil_batch, max_cells=silhouette_max_cells, seed=seed))
            if n_sil < len(lab):
                sampled.append(
                    f"silhouettes estimated on a stratified subsample of {n_sil} of {len(lab)} cells"
                )
    # the notes: why a kind is missing (once each, labels first) and how the silhouettes were estimated
    notes = list(dict.fromkeys(m for m in (missing["bio"], missing["batch"]) if m)) + sampled
    return values, missing, notes, n_sil


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
    silhouette_max_cells: int | None = DEFAULT_SILHOUETTE_MAX_CELLS,
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
    silhouette_max_cells
        Most cells of the two silhouettes (label- and batch-stratified subsample, see
        :func:`silhouette_subsample`; ``None``: every cell). Default: the schema's
        ``integrate.silhouette_max_cells``.
    seed
        Seed of the silhouette subsample (k-means for NMI/ARI is seeded by scib-metrics itself).
    key_added
        ``uns`` key of the result.
    copy
        Return a modified copy instead of working in place.

    Returns
    -------
    ``None``, or the modified copy when ``copy=True``. Sets ``uns[key_added]`` with ``metrics``
    (``{name: value}``), ``bars``, ``warnings`` (one sentence per metric below its bar, for the report)
    and ``params`` (with ``n_cells`` measured and ``n_silhouette_cells``, the silhouettes' share of them).
    :func:`metrics_table` turns it into a table.
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
    values, missing, notes, n_sil = _measure(
        adata.obsm[embed], use, labels, adata.obs[batch_key].astype(str).to_numpy(),
        labels_key=labels_key, reference_condition=reference_condition, n_neighbors=n_neighbors,
        silhouette_max_cells=silhouette_max_cells, seed=seed,
    )  # fmt: skip
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
        "missing": missing,
        "params": {
            "embed": embed,
            "batch_key": batch_key,
            "labels_key": labels_key,
            "condition_key": condition_key,
            "reference_condition": reference_condition,
            "n_cells": int(use.sum()),
            "n_neighbors": int(n_neighbors),
            "silhouette_max_cells": None if silhouette_max_cells is None else int(silhouette_max_cells),
            "n_silhouette_cells": int(n_sil),
            "seed": int(seed),
        },
    }
    return adata if copy else None


def metrics_table(adata: ad.AnnData, *, key: str = "integration_metrics") -> pd.DataFrame:
    """Table of :func:`integration_metrics`: one row per metric.

    Columns: ``metric``, ``type`` (batch | bio), ``value``, ``bar``, ``warning`` (True when below the bar),
    ``method`` (integration method), ``n_cells`` (reference cells measured), ``note`` (why a value is
    missing, e.g. one in vivo batch only).
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
                "note": "" if np.isfinite(value) else res.get("missing", {}).get(kind, ""),
            }
        )
    return pd.DataFrame(rows)
