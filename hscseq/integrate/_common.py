"""Shared by the integration steps: the method names, the raw-count check, reference labels as strings."""

from __future__ import annotations

import anndata as ad
import pandas as pd

from hscseq._utils import check_raw_counts

METHODS = ("scvi", "scanvi", "harmony", "none")


_UNLABELLED = "Unknown"


def _check_counts(x, *, what: str, path: str | None = None) -> None:
    """Raise when ``x`` does not look like raw counts (:func:`hscseq._utils.check_raw_counts`)."""
    check_raw_counts(
        x,
        what=what,
        path=path,
        fix="give the merged raw UMI counts in X (the merge stage writes them there).",
    )


def _labels(adata: ad.AnnData, labels_key: str) -> pd.Series:
    """Reference labels as strings, unlabelled cells as :data:`_UNLABELLED`."""
    if labels_key not in adata.obs:
        return pd.Series(_UNLABELLED, index=adata.obs_names)
    lab = adata.obs[labels_key].astype(object)
    lab = lab.where(lab.notna(), "").astype(str).str.strip()
    return lab.where(~lab.isin(["", "nan", "NaN", "None"]), _UNLABELLED)
