"""The score stage's figure: HSC identity score, HSC-like share, signature z-scores and identity classes."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd

from hscseq._plotting import finish
from hscseq.score.identity import CLASS_SLUGS
from hscseq.score.tables import programme_table


def _plot_identity(ax, identity: pd.DataFrame) -> None:
    """Stacked bars: per sample, the share of each HSC identity class (why cells are or are not HSC-like)."""
    colours = ["#1b9e77", "#66a61e", "#e7298a", "#7570b3", "#bbbbbb"]
    bottom = np.zeros(len(identity))
    for (label, slug), colour in zip(CLASS_SLUGS.items(), colours, strict=True):
        values = identity[f"frac_{slug}"].to_numpy(dtype=float)
        ax.bar(range(len(identity)), values, bottom=bottom, color=colour, label=label)
        bottom += np.nan_to_num(values)
    ax.set_xticks(range(len(identity)), identity.index, rotation=45, ha="right", fontsize=8)
    ax.set_ylim(0, 1)
    ax.set_title("HSC identity classes")
    ax.legend(fontsize=6, loc="upper right")


def plot_scores(adata: ad.AnnData, *, show: bool | None = None, save: str | None = None):
    """Figure: HSC identity score per sample, HSC-like share (95% CI), lineage z-scores, identity classes.

    Parameters
    ----------
    adata
        Scored object (:func:`score_signatures`, :func:`hsc_likeness` (its score is shown),
        :func:`missing_programme`, :func:`primitive_vs_definitive`).
    show
        Show the figure (``plt.show()``) and return ``None``.
    save
        Path to write the figure to (format from the suffix).

    Returns
    -------
    The :class:`matplotlib.figure.Figure` (``None`` when ``show=True``).
    """
    import matplotlib.pyplot as plt

    table = programme_table(adata)
    samples = table["sample"].tolist()
    obs = adata.obs
    lineage = [c[len("score_") : -2] for c in obs.columns if c.startswith("score_") and c.endswith("_z")]
    identity = adata.uns.get("hsc_identity", {}).get("samples")
    n_panels = 4 if identity is not None else 3
    fig, axes = plt.subplots(
        1,
        n_panels,
        figsize=(6 + (2.9 if identity is not None else 2.2) * len(samples), 4.8),
        gridspec_kw={"width_ratios": [1.2, 1, 1.4, 1.3][:n_panels]},
    )
    palette = {"in_vivo": "#1b9e77", "engineered": "#d95f02", "organoid": "#7570b3"}
    key = adata.uns["hsc_like"]["params"].get("score_key", "hsc_score")  # the score hsc_likeness used
    data = [obs.loc[obs["sample"].astype(str) == s, key].dropna().to_numpy() for s in samples]
    box = axes[0].boxplot(data, patch_artist=True, showfliers=False)
    for patch, cond in zip(box["boxes"], table["condition"], strict=True):
        patch.set_facecolor(palette.get(cond, "#999999"))
    thr = adata.uns["hsc_like"]["threshold"]
    if np.isfinite(thr):
        axes[0].axhline(thr, color="k", ls="--", lw=1, label="HSC-like threshold")
        axes[0].legend(fontsize=7)
    axes[0].set_xticks(range(1, len(samples) + 1), samples, rotation=45, ha="right", fontsize=8)
    axes[0].set_title("HSC identity score")
    frac = table["hsc_like_fraction"].to_numpy()
    err = np.vstack([frac - table["hsc_like_ci_low"], table["hsc_like_ci_high"] - frac]).clip(min=0)
    axes[1].bar(
        range(len(samples)),
        frac,
        yerr=err,
        capsize=3,
        color=[palette.get(c, "#999999") for c in table["condition"]],
    )
    axes[1].set_xticks(range(len(samples)), samples, rotation=45, ha="right", fontsize=8)
    axes[1].set_title("HSC-like fraction (95% CI)")
    means = pd.DataFrame(
        {
            name: obs.groupby(obs["sample"].astype(str), observed=True)[f"score_{name}_z"].mean()
            for name in lineage
        }
    ).reindex(samples)
    im = axes[2].imshow(
        means.T.to_numpy(dtype=float),
        aspect="auto",
        cmap="RdBu_r",
        vmin=-np.nanmax(np.abs(means.to_numpy(dtype=float))) if means.size else -1,
        vmax=np.nanmax(np.abs(means.to_numpy(dtype=float))) if means.size else 1,
    )
    axes[2].set_yticks(range(len(lineage)), lineage, fontsize=7)
    axes[2].set_xticks(range(len(samples)), samples, rotation=45, ha="right", fontsize=8)
    axes[2].set_title("mean signature z-score")
    fig.colorbar(im, ax=axes[2], shrink=0.7)
    if identity is not None:
        _plot_identity(axes[3], identity.set_index("sample").reindex(samples))
    fig.tight_layout()
    return finish(fig, show=show, save=save)
