"""The report's figures: one colour per cell type everywhere, colour-blind-safe palettes, PNG bytes out.

Every function takes tables (or the per-cell table) and returns a matplotlib Figure; the report encodes it.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

from hscseq._plotting import NOVEL_COLOUR, OKABE_ITO, TOL_MUTED, lineage_groups, palette  # noqa: F401 (palette: re-exported)

NOVEL = "novel"


def sample_palette(samples: Iterable[str]) -> dict[str, str]:
    """Colours of samples (Tol's muted scheme first, so samples and cell types do not look alike)."""
    colours = TOL_MUTED + OKABE_ITO[:7]
    return {s: colours[i % len(colours)] for i, s in enumerate(samples)}


def to_png(fig, *, dpi: int = 110) -> bytes:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def _natural(text: object) -> tuple:
    """'week10' after 'week2': digits compare as numbers."""
    return tuple(int(p) if p.isdigit() else p for p in re.split(r"(\d+)", str(text)))


def _order_samples(df: pd.DataFrame) -> list[str]:
    """Samples by condition, then time point (natural order), then name."""
    cols = [c for c in ("condition", "timepoint", "sample") if c in df]
    rows = df[cols].drop_duplicates("sample").fillna("")
    return sorted(rows["sample"], key=lambda s: tuple(_natural(v) for v in rows.set_index("sample").loc[s]))


def composition_figure(composition: pd.DataFrame, colours: dict[str, str], *, scorecard=None):
    """Stacked bars: each engineered/organoid sample (by time point) beside the in vivo reference."""
    import matplotlib.pyplot as plt

    comp = composition.copy()
    if scorecard is not None:
        keep = [c for c in ("sample", "condition", "timepoint") if c in scorecard]
        comp = comp.merge(scorecard[keep].fillna(""), on="sample", how="left")
    samples = _order_samples(comp)
    wide = comp.pivot_table(index="sample", columns="cell_type", values="fraction", aggfunc="first").fillna(0)
    rows = list(samples)
    if "invivo_fraction" in comp:  # (a profile reference has no in vivo composition)
        invivo = comp.drop_duplicates("cell_type").set_index("cell_type")["invivo_fraction"].dropna()
        wide.loc["in vivo"] = invivo.reindex(wide.columns).fillna(0)
        rows = ["in vivo", *rows]
    lineage = lineage_groups(comp) or {}
    order = sorted(
        (c for c in wide.columns if c != NOVEL), key=lambda c: (lineage.get(str(c), str(c)), str(c))
    )
    types = order + ([NOVEL] if NOVEL in wide.columns else [])  # a lineage's types side by side
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(rows) + 1.4))
    left = np.zeros(len(rows))
    for t in types:
        vals = wide.reindex(rows)[t].fillna(0).to_numpy()
        ax.barh(
            rows,
            vals,
            left=left,
            color=colours.get(t, "#777"),
            label=t,
            edgecolor="white",
            lw=0.5,
            hatch="//" if t == NOVEL else None,
        )
        left += vals
    ax.set_xlim(0, 1)
    ax.invert_yaxis()
    ax.set_xlabel("fraction of cells")
    ax.legend(
        ncol=min(4, len(types)),
        fontsize=7,
        loc="upper center",
        bbox_to_anchor=(0.5, -0.18 - 0.02 * len(rows)),
        frameon=False,
    )
    ax.spines[["top", "right"]].set_visible(False)
    title = "against the in vivo reference (top bar)" if rows[:1] == ["in vivo"] else "(no in vivo reference)"
    ax.set_title(f"Composition: each sample {title}", fontsize=10)
    return fig


def similarity_heatmap(composition: pd.DataFrame):
    """Samples x matched cell types: transcriptional similarity to in vivo (1 = as close as two donors)."""
    import matplotlib.pyplot as plt

    sim = composition[composition["cell_type"] != NOVEL].pivot_table(
        index="sample", columns="cell_type", values="similarity", aggfunc="first"
    )
    sim = sim.dropna(how="all", axis=1).dropna(how="all", axis=0)
    fig, ax = plt.subplots(figsize=(max(4, 0.55 * sim.shape[1] + 2.5), 0.45 * max(1, sim.shape[0]) + 1.6))
    if sim.empty:
        ax.text(0.5, 0.5, "no matched cell type with enough cells", ha="center", va="center")
        ax.set_axis_off()
        return fig
    im = ax.imshow(sim.to_numpy(float), vmin=0, vmax=1, cmap="cividis", aspect="auto")
    ax.set_xticks(range(sim.shape[1]), sim.columns, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(sim.shape[0]), sim.index, fontsize=8)
    for (i, j), v in np.ndenumerate(sim.to_numpy(float)):
        if np.isfinite(v):
            ax.text(
                j, i, f"{v:.2f}", ha="center", va="center", fontsize=7, color="white" if v < 0.55 else "black"
            )
    fig.colorbar(im, ax=ax, fraction=0.04, label="similarity to in vivo")
    ax.set_title("Similarity per matched cell type (blank: too few cells)", fontsize=10)
    return fig


def hsc_score_figure(
    cells: pd.DataFrame,
    hsc_labels: Sequence[str],
    *,
    query_samples: Sequence[str],
    threshold: float | None = None,
):
    """HSC score of each engineered/organoid sample against in vivo HSCs and all in vivo cells."""
    import matplotlib.pyplot as plt

    invivo = cells[cells["condition"] == "in_vivo"]
    ref_hsc = invivo[invivo["predicted_label"].isin(hsc_labels)]["hsc_score"].dropna()
    groups = [("in vivo cells mapped to HSC", ref_hsc), ("all in vivo cells", invivo["hsc_score"].dropna())]
    groups += [(s, cells.loc[cells["sample"] == s, "hsc_score"].dropna()) for s in query_samples]
    groups = [(n, v) for n, v in groups if len(v)]
    fig, ax = plt.subplots(figsize=(8, 0.5 * len(groups) + 1.2))
    if not groups:
        ax.set_axis_off()
        return fig
    parts = ax.violinplot([v.to_numpy() for _, v in groups], vert=False, showmedians=True, widths=0.8)
    for i, body in enumerate(parts["bodies"]):
        body.set_facecolor("#009E73" if i == 0 else ("#999999" if i == 1 else "#0072B2"))
        body.set_alpha(0.6)
    if threshold is not None and np.isfinite(threshold):
        ax.axvline(threshold, color="#009E73", ls="--", lw=1)
        ax.text(threshold, 0.45, " HSC-like threshold (score stage)", fontsize=7, color="#009E73")
    ax.set_yticks(range(1, len(groups) + 1), [f"{n} (n={len(v)})" for n, v in groups], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("native HSC signature score")
    ax.spines[["top", "right"]].set_visible(False)
    ax.set_title("HSC score distributions against in vivo HSCs", fontsize=10)
    return fig


def qc_figure(qc: pd.DataFrame):
    """Cells kept and removed per sample, and how many cells each criterion flags (criteria overlap)."""
    import matplotlib.pyplot as plt

    crit = [
        c for c in qc.columns if c.startswith("removed_") and c not in ("removed_total", "removed_fraction")
    ]
    samples = qc["sample"].tolist()
    fig, (ax, ax2) = plt.subplots(
        1, 2, figsize=(10, 0.42 * len(samples) + 1.6), sharey=True, gridspec_kw={"width_ratios": [3, 2]}
    )
    kept = qc["cells_out"].to_numpy(float)
    removed = qc["removed_total"].to_numpy(float)
    ax.barh(samples, kept, color="#0072B2", label="kept")
    ax.barh(samples, removed, left=kept, color="#E69F00", label="removed")
    for y, (k, r, f) in enumerate(zip(kept, removed, qc["removed_fraction"], strict=True)):
        ax.text(k + r, y, f" {f:.0%}", va="center", fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("cells")
    ax.legend(fontsize=7, frameon=False, loc="lower right")
    ax.set_title("Cells kept / removed", fontsize=10)
    colours = ["#E69F00", "#D55E00", "#CC79A7", "#56B4E9", "#009E73", "#882255", "#999933"]
    h = 0.8 / max(1, len(crit))
    for i, c in enumerate(crit):
        ys = np.arange(len(samples)) - 0.4 + h * (i + 0.5)
        ax2.barh(
            ys,
            qc[c].fillna(0).to_numpy(float),
            height=h,
            color=colours[i % len(colours)],
            label=c.removeprefix("removed_"),
        )
    ax2.set_xlabel("cells flagged (a cell can fail several)")
    ax2.legend(fontsize=7, frameon=False, loc="lower right")
    ax2.set_title("By criterion", fontsize=10)
    for a in (ax, ax2):
        a.spines[["top", "right"]].set_visible(False)
    return fig
