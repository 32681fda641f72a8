"""Fidelity: map engineered / organoid cells onto an in vivo reference and score how close they are.

The stage answers "how close to the real thing?" with a calibrated, multi-part scorecard per engineered or
organoid sample. Every part is in [0, 1], carries a bootstrap 95% CI (cells resampled with replacement
within the sample), and is calibrated against the in vivo reference itself:

``identity`` (I)
    Share of the sample's cells confidently mapped to a reference cell type (not ``novel``, label probability
    of at least ``min_confidence``, or a sure parent: ``"<parent> (uncertain)"``), divided by the same share
    among held-out (cross-validated) reference cells and capped at 1: ``I = 1`` means "as confidently mapped
    as a real donor's cells".
``similarity`` (S)
    Per matched type ``t``: ``S_t = min(1, d_null / d_query)`` with ``d = 1 - Pearson r`` of log-CPM
    pseudobulks over informative genes. ``d_query`` compares the sample's type-``t`` pseudobulk with each in
    vivo donor's type-``t`` pseudobulk (averaged); ``d_null`` compares as many cells of one real donor with
    another real donor (the donor-to-donor null, matched in cell number). ``S_t = 1`` means "as close as two
    real donors"; ``S_t = 0.5`` means twice as far. ``S`` is the cell-weighted mean of ``S_t``.
``programme`` (P)
    HSC programme completeness: ``hsc_programme_share`` of the score stage (``hsc_programme.tsv``) when it
    is given for the sample; otherwise the mean over the reference's top HSC genes (up in in vivo HSC
    against every other in vivo cell) of ``min(1, (CPM_sample + 1) / (CPM_in_vivo + 1))`` in the cells
    mapped to the HSC type (0 when no cell maps to HSC).
``composition`` (C)
    ``1 - JSD`` (Jensen-Shannon divergence, base 2) between the sample's type composition and the in vivo
    composition. The composition counts every non-novel cell (confident or not) at the level it is sure of:
    for its predicted type, or, labelled ``"<parent> (uncertain)"``, for its parent, spread over the parent's
    types by probability (:func:`hscseq.fidelity.hierarchy.composition_weights`); novel cells are their own
    category in the composition table and are left out of the JSD (they already lower ``identity``). Per-type
    log2 fold changes with CIs are in the composition table.
``novel_share``
    Share of cells flagged ``novel`` (reported, not part of the index: it is already inside ``identity``).

Headline **fidelity index** ``F = (w_I I + w_S S + w_P P + w_C C) / (w_I + w_S + w_P + w_C)`` with equal
weights by default (``FidelitySettings.index_weights``); a part that cannot be computed (no HSC type in the
reference, profile-level reference without composition) is left out and the weights are renormalised.
``F = 1``: indistinguishable from an in vivo donor; ``F = 0``: nothing in the sample resembles the
reference. The positive control (an in vivo donor held out and scored as a query) must give ``F >= 0.9``;
the negative control (a reference type held out of the reference and scored as a query) ``F <= 0.2``.

Novelty: the reference is split into folds (one per donor when there are at least two, otherwise random
folds). Every cell's position in the shared latent is first averaged with its 15 nearest cells of the same
sample (reference cells: of the same fold), which removes per-cell sampling noise; distances are measured
between these neighbourhood positions (mean distance to the k nearest reference positions). Two nulls come
from the held-out folds: the *held-out donor* null (reference cells against the other donors) and the
*held-out type* null (reference cells of type ``c`` against the other donors with type ``c`` removed: where a
whole cell type absent from the reference would sit). A query cell is ``novel`` when its distance exceeds
both the ``null_quantile`` of the donor null of its type and the ``absent_quantile`` (default 0.05)
of that type's held-out-type null (as far as the nearest 5% of the cells of a whole absent type); it then
gets the label ``"novel"`` (its type stays in ``closest_label``). "Its type" is the label the cell is given
(the ensemble's fine label; the kNN vote's with ``label_method="knn"``), and held-out reference cells key the
donor null by their held-out label the same way, so a cell is held to the distances of the cells it is
called like. Labels are voted among the 15
nearest reference cells on damped neighbourhood positions ``x / sqrt(|x|)`` (direction kept, magnitude
compressed), so cells with a weaker or partial programme keep their type. Label uncertainty (``1 - kNN vote
share``) is reported per cell and decides "confidently mapped", but by default does not make a cell novel (an
intermediate between two reference types is uncertain without being absent).
"""

from hscseq.fidelity._knn import knn_map_core, smooth_latent
from hscseq.fidelity._novelty import flag_novel, knn_vote, label_uncertainty, novelty_thresholds
from hscseq.fidelity._stats import (
    bootstrap_weights,
    correct_composition,
    jensen_shannon,
    log_cpm,
    percentile_ci,
    row_corr,
    similarity_ratio,
    weighted_fidelity_index,
)
from hscseq.fidelity.controls import controls
from hscseq.fidelity.de import confounded_samples, pseudobulk_de
from hscseq.fidelity.mapping import map_to_reference
from hscseq.fidelity.plot import plot_scorecard
from hscseq.fidelity.profiles import (
    hematomap_lineages,
    load_hematomap,
    map_to_profiles,
    profile_correlation_core,
)
from hscseq.fidelity.scorecard import scorecard
from hscseq.fidelity.settings import NOVEL, PARTS, FidelitySettings
from hscseq.fidelity.spaces import uncorrected_pca
from hscseq.fidelity.stage import run_fidelity, score_with_controls
from hscseq.fidelity.timecourse import timecourse

__all__ = [
    "NOVEL",
    "PARTS",
    "FidelitySettings",
    "bootstrap_weights",
    "confounded_samples",
    "controls",
    "correct_composition",
    "flag_novel",
    "hematomap_lineages",
    "jensen_shannon",
    "knn_map_core",
    "knn_vote",
    "label_uncertainty",
    "load_hematomap",
    "log_cpm",
    "map_to_profiles",
    "map_to_reference",
    "novelty_thresholds",
    "percentile_ci",
    "plot_scorecard",
    "profile_correlation_core",
    "pseudobulk_de",
    "row_corr",
    "run_fidelity",
    "score_with_controls",
    "scorecard",
    "similarity_ratio",
    "smooth_latent",
    "timecourse",
    "uncorrected_pca",
    "weighted_fidelity_index",
]
