"""Scorecard figure (``hscseq.pl.scorecard``)."""

from __future__ import annotations

import logging

import anndata as ad
import numpy as np
import pandas as pd

from hscseq._plotting import finish, lineage_groups, palette
from hscseq.fidelity.settings import PARTS

logger = logging.getLogger(__name__)


def scorecard_figure(table: pd.DataFrame, composition: pd.DataFrame, control_table: pd.DataFrame):
    """Scorecard parts with CIs per sample, controls, and composition against in vivo (one Figure)."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(17, 5.5), gridspec_kw={"width_ratios": [1.3, 0.8, 1.3]})
    measures = ["fidelity_index", *PARTS, "novel_share"]
    ax = axes[0]
    if not table.empty:
        width = 0.8 / max(len(table), 1)
        for i, (_, r) in enumerate(table.iterrows()):
            xs = np.arange(len(measures)) + i * width
            vals = np.array([r[m] for m in measures], dtype=float)
            lo = np.array([r[f"{m}_ci_low"] for m in measures], dtype=float)
            hi = np.array([r[f"{m}_ci_high"] for m in measures], dtype=float)
            err = np.vstack([np.clip(vals - lo, 0, None), np.clip(hi - vals, 0, None)])
            ax.bar(
                xs, np.nan_to_num(vals), width=width, yerr=np.nan_to_num(err), capsize=2, label=r["sample"]
            )
        ax.set_xticks(np.arange(len(measures)) + 0.4 - width / 2)
        ax.set_xticklabels(measures, rotation=30, ha="right")
        ax.legend(fontsize=7)
    ax.set_ylim(0, 1.05)
    ax.set_title("Scorecard (bootstrap 95% CI)")
    ax = axes[1]
    if not control_table.empty:
        ys = np.arange(len(control_table))
        f = control_table["fidelity_index"].to_numpy(float)
        lo = control_table["fidelity_index_ci_low"].to_numpy(float)
        hi = control_table["fidelity_index_ci_high"].to_numpy(float)
        colors = ["tab:green" if k == "positive" else "tab:red" for k in control_table["kind"]]
        ax.barh(ys, f, xerr=np.vstack([np.clip(f - lo, 0, None), np.clip(hi - f, 0, None)]), color=colors)
        ax.set_yticks(ys)
        ax.set_yticklabels(control_table["control"], fontsize=7)
        ax.axvline(0.9, ls="--", c="grey")
        ax.axvline(0.2, ls=":", c="grey")
    ax.set_xlim(0, 1.05)
    ax.set_title("Controls: fidelity index")
    ax = axes[2]
    if not composition.empty:
        wide = composition.pivot_table(
            index="sample", columns="cell_type", values="fraction", aggfunc="first"
        )
        if "invivo_fraction" in composition:  # a profile reference has no in vivo composition
            invivo = (
                composition.drop_duplicates("cell_type").set_index("cell_type")["invivo_fraction"].dropna()
            )
            wide.loc["in vivo"] = invivo.reindex(wide.columns).fillna(0)
        bottom = np.zeros(len(wide))
        colours = palette(wide.columns, lineage_groups(composition))  # a lineage's types in one hue
        for c in wide.columns:
            v = wide[c].fillna(0).to_numpy()
            ax.bar(wide.index, v, bottom=bottom, label=c, color=colours[str(c)])
            bottom += v
        ax.tick_params(axis="x", rotation=30)
        ax.legend(fontsize=6, ncol=2, bbox_to_anchor=(1.0, 1.0), loc="upper left")
    ax.set_title("Composition vs in vivo")
    fig.tight_layout()
    return fig


def plot_scorecard(
    adata: ad.AnnData, *, key: str = "scorecard", show: bool | None = None, save: str | None = None
):
    """Figure of the fidelity scorecard stored by :func:`~hscseq.fidelity.scorecard` (and the controls).

    Parameters
    ----------
    adata
        Object with ``uns[key]["table"]`` and ``uns[key]["composition"]`` (and optionally ``["controls"]``).
    key
        ``uns`` key of the scorecard.
    show
        Show the figure (``plt.show()``) and return ``None``.
    save
        Path to write the figure to (format from the suffix).

    Returns
    -------
    The :class:`matplotlib.figure.Figure` (``None`` when ``show=True``).
    """
    card = adata.uns[key]
    controls = card.get("controls")
    fig = scorecard_figure(
        card["table"], card["composition"], controls if isinstance(controls, pd.DataFrame) else pd.DataFrame()
    )
    return finish(fig, show=show, save=save)
