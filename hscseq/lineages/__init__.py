"""Lineage presence per sample and organoid time courses with replicate organoids as the unit.

The ``lineages`` stage (``workflow/rules/lineages.smk``, after ``fidelity``). Files: ``core.py`` numeric
cores (arrays in, arrays out), ``tables.py`` the table wrappers, ``plot.py`` the time-course figures,
``settings.py`` the stage's settings object (:class:`LineageSettings`, defaults from the config schema),
``stage.py`` the workflow entry :func:`run_lineages`.

Presence, per sample and lineage (cells rolled up from mapped types to lineages: the roots of a child ->
parent label hierarchy, read by :func:`hscseq.fidelity.hierarchy.load_hierarchy`; by default the shipped
HematoMap roll-up for the built-in profiles):

- ``fraction``: lineage cells / all cells of the sample (novel cells count in the denominator), with a
  Clopper-Pearson 95% CI;
- ``present``: at least ``min_cells`` cells and more than mapping noise could make: the one-sided binomial
  test of the count against ``background_rate`` (the share of cells a lineage can receive by mis-mapping
  alone) has p < ``alpha``;
- ``detection_limit``: the smallest true fraction that would be called present with probability ``power``
  given the sample's cell number (binomial);
- ``absent``: not present although a lineage at ``expected_fraction`` (its in vivo fraction when the reference
  has a composition, otherwise ``min_fraction``) lies at or above the detection limit; ``undetermined`` when
  the sample has too few cells to tell;
- ``over-represented`` / ``under-represented``: present and the two-sided binomial test against the in vivo
  fraction has p < ``alpha`` (only with an in vivo composition: profile references carry none).

Novel cells (no in vivo counterpart) get a row of their own (lineage ``novel``) with the same test, and the
lineage their members sit closest to (``closest_lineage``: "8% novel, stromal-like").

Time course: per lineage and sample (organoid), the fraction and the lineage's mapping fidelity (share of its
cells confidently mapped). Per timepoint the mean over replicate organoids, the between-organoid SD and a t CI
(binomial CI with a single organoid). Trend per lineage: ordinary least squares of the per-organoid value on
time (the number in the timepoint label, e.g. weeks), so the between-organoid scatter sets the standard error;
t-test of the slope on n_organoids - 2 df; Benjamini-Hochberg across lineages per measure. Fidelity trends and
the time course's fidelity means use organoids with at least ``min_cells_fidelity`` (10) cells of the lineage.
"""

from hscseq.lineages.core import (
    bh_adjust,
    clopper_pearson,
    detection_limit,
    linear_trend,
    presence_status,
    timepoint_value,
)
from hscseq.lineages.plot import plot_timecourse
from hscseq.lineages.settings import LineageSettings
from hscseq.lineages.stage import run_lineages
from hscseq.lineages.tables import (
    NOVEL,
    default_hierarchy,
    lineage_counts,
    lineage_hierarchy,
    lineage_presence,
    lineage_timecourse,
    lineage_trends,
    presence_summary,
    to_lineage,
)

__all__ = [
    "NOVEL",
    "LineageSettings",
    "bh_adjust",
    "clopper_pearson",
    "default_hierarchy",
    "detection_limit",
    "lineage_counts",
    "lineage_hierarchy",
    "lineage_presence",
    "lineage_timecourse",
    "lineage_trends",
    "linear_trend",
    "plot_timecourse",
    "presence_status",
    "presence_summary",
    "run_lineages",
    "timepoint_value",
    "to_lineage",
]
