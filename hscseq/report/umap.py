"""An interactive UMAP of reference and query cells: a small hand-written canvas scatter, inline, no CDN.

Colour by sample, mapped label, HSC score or novelty; hovering a point shows that cell's values. Cells are
subsampled per sample (at most ``max_cells`` in all) so the report stays small.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from hscseq.report._html import esc


def umap_cells(
    h5ad: str | os.PathLike, cells: pd.DataFrame | None, *, max_cells: int = 6000, seed: int = 0
) -> pd.DataFrame:
    """Per-cell UMAP coordinates and values (sample, condition, label, HSC score, novel), subsampled."""
    import anndata as ad

    adata = ad.read_h5ad(h5ad, backed="r")
    try:
        if "X_umap" not in adata.obsm:
            return pd.DataFrame()
        xy = np.asarray(adata.obsm["X_umap"])[:, :2]
        df = pd.DataFrame({"cell_id": adata.obs_names.astype(str), "x": xy[:, 0], "y": xy[:, 1]})
        obs = adata.obs
    finally:
        adata.file.close()
    if cells is not None and "cell_id" in cells:
        keep = [
            c
            for c in ("cell_id", "sample", "condition", "predicted_label", "hsc_score", "novel")
            if c in cells
        ]
        df = df.merge(cells[keep], on="cell_id", how="left")
    else:
        for c in ("sample", "condition", "predicted_label", "hsc_score", "novel"):
            if c in obs:
                df[c] = obs[c].to_numpy()
    rng = np.random.default_rng(seed)
    if len(df) > max_cells:
        share = max_cells / len(df)
        idx = []
        for _, group in df.groupby("sample", observed=True, sort=False):
            n = max(1, round(len(group) * share))
            idx.extend(rng.choice(group.index.to_numpy(), size=min(n, len(group)), replace=False))
        df = df.loc[sorted(idx)]
    return df.reset_index(drop=True)


def _codes(values: pd.Series) -> tuple[list[str], list[int]]:
    cats = sorted(values.astype(str).unique())
    lookup = {c: i for i, c in enumerate(cats)}
    return cats, [lookup[v] for v in values.astype(str)]


def umap_html(df: pd.DataFrame, colours: Mapping[str, str], sample_colours: Mapping[str, str]) -> str:
    """The canvas, its controls and the inline script with the (rounded) data."""
    if df.empty:
        return (
            '<p class="note">No UMAP in the results (results/anndata/integrated.h5ad lacks obsm X_umap).</p>'
        )
    samples, s_idx = _codes(df["sample"])
    labels, l_idx = _codes(df["predicted_label"]) if "predicted_label" in df else (["?"], [0] * len(df))
    data = {
        "x": np.round(df["x"].to_numpy(float), 3).tolist(),
        "y": np.round(df["y"].to_numpy(float), 3).tolist(),
        "sample": s_idx,
        "samples": samples,
        "label": l_idx,
        "labels": labels,
        "hsc": [
            None if not np.isfinite(v) else round(float(v), 3) for v in df.get("hsc_score", np.nan * df["x"])
        ],
        "novel": [int(str(v) == "True") for v in df.get("novel", pd.Series(False, index=df.index))],
        "cond": [str(v) for v in df.get("condition", pd.Series("", index=df.index))],
        "id": df["cell_id"].astype(str).tolist(),
        "sampleColours": [sample_colours.get(s, "#777777") for s in samples],
        "labelColours": [colours.get(lab, "#777777") for lab in labels],
    }
    options = "".join(
        f'<option value="{v}">{esc(t)}</option>'
        for v, t in (
            ("sample", "sample"),
            ("label", "mapped label"),
            ("hsc", "HSC score"),
            ("novel", "novel"),
        )
    )
    return (
        f'<p>Colour by <select id="umap-colour">{options}</select> '
        f'<span class="note">{len(df)} cells shown (subsampled per sample); '
        "hover a point for its values.</span></p>"
        '<div id="umap-wrap"><canvas id="umap-canvas" width="900" height="620"></canvas>'
        '<div id="umap-tip"></div></div><div id="umap-legend" class="legend"></div>'
        f"<script>var HSC_UMAP={json.dumps(data, separators=(',', ':'))};{UMAP_JS}</script>"
    )


UMAP_JS = (Path(__file__).parent / "umap.js").read_text()
