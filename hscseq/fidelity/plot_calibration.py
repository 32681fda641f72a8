"""Reliability curve of the mapping's calibrated probabilities (held-out reference cells)."""

from __future__ import annotations

import pandas as pd


def plot_reliability(
    reliability: pd.DataFrame, *, ece: float | None = None, title: str = "Mapping calibration"
):
    """Accuracy against mean confidence per bin (marker area = share of cells); returns a Figure.

    ``reliability`` has columns ``confidence``, ``accuracy``, ``share`` (see
    :func:`hscseq.fidelity._ensemble.reliability_table`), optionally ``source`` to draw one curve each.
    """
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4.2, 4.0), layout="constrained")
    ax = fig.subplots()
    ax.plot([0, 1], [0, 1], ls="--", c="0.6", lw=1, label="perfect calibration")
    groups = (
        reliability.groupby("source", sort=False) if "source" in reliability else [("ensemble", reliability)]
    )
    for name, g in groups:
        g = g[["confidence", "accuracy", "share"]].astype(float)
        ax.plot(g["confidence"], g["accuracy"], marker="o", ms=3, lw=1.2, label=str(name))
        ax.scatter(g["confidence"], g["accuracy"], s=400 * g["share"].to_numpy(), alpha=0.25)
    if reliability.empty:  # (profile reference or kNN labels: no held-out calibration to show)
        ax.text(
            0.5, 0.5, "no held-out calibration\n(no ensemble mapping in this run)", ha="center", va="center"
        )
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("predicted probability of the label (bin mean)")
    ax.set_ylabel("share correct (held-out reference cells)")
    ax.set_title(title if ece is None else f"{title} (ECE {ece:.3f})", fontsize=10)
    ax.legend(fontsize=7, loc="upper left")
    return fig
