"""The per-sample HSC-programme table of the score stage (``hsc_programme.tsv``)."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd

PROGRAMME_COLUMNS = [
    "sample",
    "condition",
    "n_cells",
    "n_hsc_like",
    "hsc_like_fraction",
    "hsc_like_ci_low",
    "hsc_like_ci_high",
    "hsc_programme_share",
    "missing_genes",
    "primitive_definitive_call",
]


def programme_table(adata: ad.AnnData) -> pd.DataFrame:
    """Join the per-sample HSC-likeness, missing programme and ontogeny tables (one row per sample)."""
    like = adata.uns["hsc_like"]["samples"]
    miss = adata.uns["missing_programme"]["samples"]
    onto = adata.uns["ontogeny"]["samples"]
    table = like.merge(miss, on="sample", how="left").merge(onto, on="sample", how="left")
    for key in ("hsc_stage", "hsc_identity"):  # identity classes and stage (issue #13)
        if key in adata.uns:
            extra = adata.uns[key]["samples"]
            dup = [c for c in extra.columns if c in table.columns and c != "sample"]
            table = table.merge(extra.drop(columns=dup), on="sample", how="left")
    table["hsc_threshold"] = adata.uns["hsc_like"]["threshold"]
    table["role"] = np.where(
        table["condition"] == adata.uns["hsc_like"]["params"]["reference_condition"], "calibration", "query"
    )
    rest = [c for c in table.columns if c not in PROGRAMME_COLUMNS]
    return table[PROGRAMME_COLUMNS + rest]
