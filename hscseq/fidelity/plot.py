"""Scorecard figure."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from hscseq.fidelity.settings import NOVEL, PARTS

logger = logging.getLogger(__name__)


def plot_scorecard(
    table: pd.DataFrame, composition: pd.DataFrame, control_table: pd.DataFrame, path: str | Path
) -> None:
    """Scorecard parts with CIs per sample, controls, and composition against in vivo (one PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from hscseq._utils import atomic_path

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
        invivo = composition.drop_duplicates("cell_type").set_index("cell_type")["invivo_fraction"].dropna()
        wide.loc["in vivo"] = invivo.reindex(wide.columns).fillna(0)
        bottom = np.zeros(len(wide))
        cmap = plt.get_cmap("tab20")
        for j, c in enumerate(wide.columns):
            v = wide[c].fillna(0).to_numpy()
            ax.bar(wide.index, v, bottom=bottom, label=c, color="lightgrey" if c == NOVEL else cmap(j % 20))
            bottom += v
        ax.tick_params(axis="x", rotation=30)
        ax.legend(fontsize=6, ncol=2, bbox_to_anchor=(1.0, 1.0), loc="upper left")
    ax.set_title("Composition vs in vivo")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
