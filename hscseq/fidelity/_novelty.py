"""Numeric cores of label transfer and novelty (arrays in, arrays out)."""

from __future__ import annotations

import logging

import numpy as np

logger = logging.getLogger(__name__)


def knn_vote(neighbor_codes: np.ndarray, n_classes: int) -> np.ndarray:
    """Label probabilities from the label codes of each cell's k nearest reference neighbours.

    Parameters
    ----------
    neighbor_codes
        Integer label codes, cells x k.
    n_classes
        Number of labels.

    Returns
    -------
    Cells x labels array of vote shares (rows sum to 1).
    """
    n, k = neighbor_codes.shape
    probs = np.zeros((n, n_classes))
    rows = np.repeat(np.arange(n), k)
    np.add.at(probs, (rows, neighbor_codes.ravel()), 1.0)
    return probs / k


def label_uncertainty(probs: np.ndarray) -> np.ndarray:
    """``1 - max probability`` per cell."""
    return 1.0 - probs.max(axis=1)


def novelty_thresholds(
    null_distance: np.ndarray,
    null_codes: np.ndarray,
    null_uncertainty: np.ndarray,
    n_classes: int,
    *,
    quantile: float,
    absent_quantile: float,
    min_cells: int = 20,
    absent_distance: np.ndarray | None = None,
    absent_codes: np.ndarray | None = None,
) -> tuple[np.ndarray, float]:
    """Per-label distance thresholds and one uncertainty threshold from held-out reference cells.

    Two nulls calibrate the threshold of label ``c``. The *held-out donor* null (``null_distance``: reference
    cells of held-out donors, against the other donors) gives the ``quantile`` of distances of real type-``c``
    cells, batch shift included. The *held-out type* null (``absent_distance``: held-out cells of type ``c``
    against the other donors with type ``c`` removed) gives the distance at which a type-``c`` cell would sit
    if its type were absent from the reference. The threshold is the larger of the donor-null quantile and the
    ``absent_quantile`` of the held-out-type null: a cell is novel only when it is farther from its closest
    reference type than a real donor's cells are, *and* at least as far as the nearer cells of a whole cell
    type absent from the reference. Labels with fewer than ``min_cells`` null cells use the pooled quantiles.
    """
    pooled = float(np.quantile(null_distance, quantile))
    thr = np.full(n_classes, pooled)
    for c in range(n_classes):
        d = null_distance[null_codes == c]
        if len(d) >= min_cells:
            thr[c] = float(np.quantile(d, quantile))
    if absent_distance is not None and absent_codes is not None and len(absent_distance):
        pooled_absent = float(np.quantile(absent_distance, absent_quantile))
        for c in range(n_classes):
            d = absent_distance[absent_codes == c]
            low = float(np.quantile(d, absent_quantile)) if len(d) >= min_cells else pooled_absent
            thr[c] = max(thr[c], low)
    unc = float(np.quantile(null_uncertainty, quantile))
    return thr, unc


def flag_novel(
    distance: np.ndarray,
    codes: np.ndarray,
    uncertainty: np.ndarray,
    distance_thresholds: np.ndarray,
    uncertainty_threshold: float,
) -> np.ndarray:
    """Cells farther from the reference, or more uncertain, than the held-out null allows."""
    return (distance > distance_thresholds[codes]) | (uncertainty > uncertainty_threshold + 1e-12)
