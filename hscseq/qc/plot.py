"""The per-sample QC figure."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def qc_figure(
    obs: pd.DataFrame, account: pd.DataFrame, thresholds: Mapping[str, float], *, name: str
) -> Figure:
    """Per-sample QC figure: distributions with thresholds, counts vs genes by % mito, doublets, cycle.

    Parameters
    ----------
    obs
        ``obs`` of every cell in, annotated by :func:`~hscseq.qc.run_qc`'s steps (metrics, doublet
        scores and calls, cell-cycle scores and phase).
    account
        The per-cell account of :func:`~hscseq.qc.qc_account` (``kept``).
    thresholds
        The thresholds used (``uns["qc_thresholds"]["thresholds"]``).
    name
        Sample name (title).

    Returns
    -------
    The Figure (the caller saves and closes it).
    """
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 3, figsize=(13, 7.5))
    kept = account["kept"].to_numpy()
    panels = [
        ("total_counts", "total counts (log10)", True, ("min_counts", "max_counts")),
        ("n_genes_by_counts", "detected genes (log10)", True, ("min_genes", "max_genes")),
        ("pct_counts_mt", "% mitochondrial counts", False, ("max_pct_mt",)),
    ]
    for ax, (col, label, log, keys) in zip(axes[0], panels, strict=True):
        values = obs[col].to_numpy(dtype=np.float64)
        values = np.log10(np.maximum(values, 1)) if log else values
        ax.hist(values, bins=60, color="0.6")
        for key in keys:
            t = thresholds[key]
            ax.axvline(np.log10(max(t, 1)) if log else t, color="crimson", ls="--", lw=1.2)
        ax.set_xlabel(label)
        ax.set_ylabel("cells")
    ax = axes[1, 0]
    sc_ = ax.scatter(
        obs["total_counts"],
        obs["n_genes_by_counts"],
        c=obs["pct_counts_mt"],
        s=4,
        cmap="viridis",
        rasterized=True,
    )
    ax.scatter(
        obs["total_counts"][~kept],
        obs["n_genes_by_counts"][~kept],
        s=14,
        facecolors="none",
        edgecolors="crimson",
        lw=0.5,
        label="removed",
    )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("total counts")
    ax.set_ylabel("detected genes")
    ax.legend(loc="lower right", fontsize=8)
    fig.colorbar(sc_, ax=ax, label="% mito")
    ax = axes[1, 1]
    score = obs["doublet_score"].to_numpy(dtype=np.float64)
    ok = np.isfinite(score)
    if ok.any():
        called = obs["predicted_doublet"].to_numpy(dtype=bool)
        ax.hist(
            [score[ok & ~called], score[ok & called]],
            bins=50,
            stacked=True,
            color=["0.6", "crimson"],
            label=["singlet", "doublet (combined call)"],
        )
        ax.legend(fontsize=8)
    ax.set_xlabel("doublet score (mean rank of the methods, or the first method's score)")
    ax.set_ylabel("cells")
    ax = axes[1, 2]
    if obs["S_score"].notna().any():
        for phase, colour in (("G1", "0.6"), ("S", "tab:blue"), ("G2M", "tab:orange")):
            m = (obs["phase"] == phase).to_numpy()
            ax.scatter(obs["S_score"][m], obs["G2M_score"][m], s=4, c=colour, label=phase, rasterized=True)
        ax.legend(fontsize=8, markerscale=3)
    ax.set_xlabel("S score")
    ax.set_ylabel("G2/M score")
    n_out = int(kept.sum())
    fig.suptitle(f"{name}: {n_out} of {len(kept)} cells kept", fontsize=12)
    fig.tight_layout()
    return fig
