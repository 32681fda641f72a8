"""Time-course figures of the lineages stage (return Figures; the stage entry saves them)."""

from __future__ import annotations

import os

import pandas as pd

from hscseq._plotting import finish
from hscseq.lineages.core import timepoint_value
from hscseq.lineages.tables import NOVEL


def plot_timecourse(
    timecourse: pd.DataFrame,
    counts: pd.DataFrame,
    *,
    measure: str = "fraction",
    show: bool | None = None,
    save: str | os.PathLike | None = None,
):
    """Per lineage: replicate organoids (points) and their mean with the 95% CI (line, band) over time.

    Parameters
    ----------
    timecourse
        :func:`~hscseq.lineages.lineage_timecourse` table.
    counts
        :func:`~hscseq.lineages.lineage_counts` table (the replicate organoids' points).
    measure
        ``fraction`` (composition over time) or ``fidelity`` (share of each lineage confidently mapped).
    show, save
        As in scanpy: show the figure, write it to a file.

    Returns
    -------
    The Figure (``None`` with ``show=True``).
    """
    import matplotlib.pyplot as plt

    tc = timecourse[timecourse["measure"] == measure]
    fig, ax = plt.subplots(figsize=(8, 5))
    if tc.empty:
        ax.text(0.5, 0.5, "no organoid samples with a timepoint", ha="center", va="center")
        ax.set_axis_off()
        return finish(fig, show=show, save=save)
    cmap = plt.get_cmap("tab10")
    org = counts[(counts["condition"] == "organoid") & (counts["timepoint"].astype(str) != "")]
    for j, (lin, g) in enumerate(tc.groupby("lineage", sort=False)):
        if measure == "fraction" and g["mean"].max() == 0:
            continue  # never made: listed as absent in the presence table
        g = g.sort_values("time")
        color = "grey" if lin == NOVEL else cmap(j % 10)
        ax.plot(g["time"], g["mean"], marker="o", color=color, label=lin)
        ax.fill_between(g["time"], g["ci_low"], g["ci_high"], color=color, alpha=0.15)
        pts = org[org["lineage"] == lin]
        num, den = ("n_lineage", "n_sample") if measure == "fraction" else ("n_confident", "n_lineage")
        ok = pts[den] > 0
        ax.scatter(
            pts.loc[ok, "timepoint"].map(timepoint_value),
            pts.loc[ok, num] / pts.loc[ok, den],
            s=12,
            color=color,
        )
    ax.set_xlabel("time (number in the timepoint label, e.g. weeks)")
    if measure == "fraction":
        ax.set_ylabel("fraction of the organoid's cells")
        ax.set_title("Composition over time: replicate organoids (points), mean and 95% CI")
    else:
        ax.set_ylabel("share of the lineage's cells confidently mapped")
        ax.set_ylim(0, 1.05)
        ax.set_title("Mapping fidelity per lineage over time (organoids as units)")
    ax.legend(fontsize=7, bbox_to_anchor=(1.0, 1.0), loc="upper left")
    fig.tight_layout()
    return finish(fig, show=show, save=save)
