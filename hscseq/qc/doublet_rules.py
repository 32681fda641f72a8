"""Numeric cores of doublet calling (arrays in, arrays out): the expected rate and the combination rules.

Used by :func:`~hscseq.qc.detect_doublets`, which documents the rules and why ``"rank"`` is the default.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from hscseq._utils import input_error
from hscseq.qc.settings import DEFAULT_SETTINGS as _D

DOUBLET_RULES = ("rank", "union", "intersection", "scrublet", "solo")


def expected_doublet_rate(
    n_cells: int,
    *,
    rate_per_1000_cells: float = _D.doublet_rate_per_1000_cells,
    max_cells_per_lane: int = _D.max_cells_per_lane,
) -> float:
    """Expected multiplet rate of a droplet run from the number of cells recovered.

    10x Genomics' multiplet table gives about 0.8% multiplets per 1,000 cells recovered (3' v3.1, supported
    recovery 500-10,000 cells per lane: ~0.4-8%); HT and GEM-X kits about 0.4% per 1,000 up to 20,000 cells
    per lane. Multiplets form within a lane, so a sample with more cells than one lane recovers spans several
    lanes and its rate is at most that of a full lane: the cells counted are capped at
    ``max_cells_per_lane``. The rate is clipped to [0.001, 0.5].

    Parameters
    ----------
    n_cells
        Cells recovered (barcodes called as cells) in the sample.
    rate_per_1000_cells
        Multiplet rate per 1,000 cells recovered in one lane.
    max_cells_per_lane
        Most cells one lane recovers (10,000 for standard 10x kits, 20,000 for HT / GEM-X).

    Returns
    -------
    The expected doublet rate.
    """
    cells = min(int(n_cells), int(max_cells_per_lane))
    return float(np.clip(rate_per_1000_cells * cells / 1000.0, 0.001, 0.5))


def combine_doublet_calls(calls: Mapping[str, np.ndarray], *, rule: str = "intersection") -> np.ndarray:
    """Combine boolean doublet calls of several methods.

    Rules: ``"intersection"`` (the default) -- a doublet only when every method agrees: two independent
    methods (kNN on simulated doublets, a neural classifier on an scVI latent space) rarely err on the same
    singlet, so agreement keeps precision while SOLO alone over-calls on small samples (on the simulator
    it flags ~25% of cells, with 4% planted doublets); ``"union"`` -- a doublet for any method (maximal
    recall); ``"scrublet"`` / ``"solo"`` -- that method alone. A rule naming a method that did not run falls
    back to the union of the methods that did.

    Parameters
    ----------
    calls
        Method name -> boolean array (one per cell).
    rule
        One of :data:`DOUBLET_RULES`.

    Returns
    -------
    Boolean array: the combined call.
    """
    if rule not in DOUBLET_RULES:
        raise input_error(f"unknown doublet rule {rule!r}.", fix=f"use one of {list(DOUBLET_RULES)}.")
    if not calls:
        msg = "no doublet calls to combine"
        raise ValueError(msg)
    arrays = {k: np.asarray(v, dtype=bool) for k, v in calls.items()}
    if rule in arrays:
        return arrays[rule]
    stack = np.vstack(list(arrays.values()))
    return stack.all(axis=0) if rule == "intersection" else stack.any(axis=0)


def rank_doublet_score(scores: Mapping[str, np.ndarray]) -> np.ndarray:
    """Combined doublet score: the mean over methods of each cell's percentile rank (0-1] in that method.

    Scores of different methods are not on one scale (Scrublet: a share of simulated-doublet neighbours
    around 0.05-0.3; SOLO: a probability); ranks put them on one. Ties take their mean rank; NaN scores
    rank lowest.

    Parameters
    ----------
    scores
        Method name -> score per cell (higher = more doublet-like).

    Returns
    -------
    The mean percentile rank per cell.
    """
    from scipy.stats import rankdata

    if not scores:
        msg = "no doublet scores to combine"
        raise ValueError(msg)
    ranks = []
    for values in scores.values():
        v = np.asarray(values, dtype=np.float64)
        v = np.where(np.isfinite(v), v, -np.inf)
        ranks.append(rankdata(v, method="average") / v.size)
    return np.mean(ranks, axis=0)


def rank_call_count(n_cells: int, scrublet_info: Mapping[str, Any] | None, *, expected_rate: float) -> int:
    """How many cells the ``"rank"`` rule calls doublets.

    With Scrublet: midway between Scrublet's own call count (``called = rate_hat * detectable * n``, the
    doublets Scrublet alone can see) and its estimate of all doublets (``rate_hat * n``, including
    doublets of near-identical cells that no expression-based method can see). The consensus of two
    methods sees more doublets than Scrublet alone, never the near-identical ones; the midpoint is the
    documented compromise (on the simulator it keeps precision >= 0.9 where ``rate_hat * n`` falls to
    ~0.8). Without Scrublet: ``expected_rate * n``.

    Parameters
    ----------
    n_cells
        Cells scored.
    scrublet_info
        Scrublet's record (``detectable_fraction``, ``estimated_rate``), or ``None``.
    expected_rate
        Prior doublet rate (used without Scrublet).

    Returns
    -------
    The number of cells to call.
    """
    if scrublet_info is None:
        return round(expected_rate * n_cells)
    rate_hat = float(scrublet_info["estimated_rate"])
    detectable = float(scrublet_info["detectable_fraction"])
    return round(n_cells * rate_hat * (1.0 + detectable) / 2.0)


def top_calls(score: np.ndarray, n_call: int) -> np.ndarray:
    """Boolean mask of the ``n_call`` highest scores (ties at the cut broken by order).

    Parameters
    ----------
    score
        One score per cell.
    n_call
        Number of cells to call.

    Returns
    -------
    True for the called cells.
    """
    score = np.asarray(score, dtype=np.float64)
    n_call = int(np.clip(n_call, 0, score.size))
    called = np.zeros(score.size, dtype=bool)
    called[np.argsort(-score, kind="stable")[:n_call]] = True
    return called


def combined_doublet_call(
    scores: Mapping[str, np.ndarray],
    calls: Mapping[str, np.ndarray],
    *,
    rule: str,
    expected_rate: float,
    scrublet_info: Mapping[str, Any] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The combined doublet score and call of several methods.

    ``rule="rank"``: the mean-rank score (:func:`rank_doublet_score`) and its top :func:`rank_call_count`
    cells; any other rule: the first method's score and :func:`combine_doublet_calls` of the calls.

    Parameters
    ----------
    scores
        Method name -> score per cell, in the order the methods ran.
    calls
        Method name -> boolean call per cell.
    rule
        One of :data:`DOUBLET_RULES`.
    expected_rate
        Prior doublet rate (the ``"rank"`` count without Scrublet).
    scrublet_info
        Scrublet's record (``detectable_fraction``, ``estimated_rate``), or ``None`` if it did not run.

    Returns
    -------
    The combined score and the boolean combined call.
    """
    if rule == "rank":
        score = rank_doublet_score(scores)
        return score, top_calls(
            score, rank_call_count(score.size, scrublet_info, expected_rate=expected_rate)
        )
    return np.asarray(next(iter(scores.values()))), combine_doublet_calls(calls, rule=rule)
