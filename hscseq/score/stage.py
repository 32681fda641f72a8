"""Stage-aware HSC maturity without a staged reference (issue #13).

Among cells called ``HSC-like`` or ``pre-HSC/EHT-like``, the nascent (AGM) programme (Calvanese et al. 2022
Nascent_HSC scorecard beyond the six-gene core, incl. the endothelial genes nascent HSCs keep) and the fetal
programme (Lin28b / Hmga2 / Igf2bp axis: Copley et al. 2013, doi:10.1038/ncb2783; Yuan et al. 2012,
doi:10.1126/science.1216557) are compared with their nulls. Per cell: ``AGM pre-HSC-like`` when the nascent
margin ``z - z_on`` is >= 0 and at least the fetal margin, ``fetal-liver-like`` when the fetal margin is >= 0,
else ``adult-like`` (an HSC programme without nascent or fetal signal). Per sample the shares and the most
common stage (``hsc_stage_call``; ``undetermined`` with fewer than ``min_cells`` candidate cells).
Where a reference with a ``stage`` column exists, the fidelity stage's ``closest_stage`` stays the primary
answer; this call is shown beside it.
"""

from __future__ import annotations

import logging

import anndata as ad
import numpy as np
import pandas as pd

logger = logging.getLogger(__name__)

STAGES: tuple[str, ...] = ("AGM pre-HSC-like", "fetal-liver-like", "adult-like")
STAGE_SLUGS = {"AGM pre-HSC-like": "agm", "fetal-liver-like": "fetal", "adult-like": "adult"}


def stage_calls(
    nascent_z: np.ndarray, fetal_z: np.ndarray, candidate: np.ndarray, *, z_on: float = 3.0
) -> np.ndarray:
    """Per cell stage among :data:`STAGES` for candidate cells, ``""`` for the others."""
    n = np.nan_to_num(np.asarray(nascent_z, dtype=float) - z_on, nan=-np.inf)
    f = np.nan_to_num(np.asarray(fetal_z, dtype=float) - z_on, nan=-np.inf)
    out = np.select([(n >= 0) & (n >= f), f >= 0], list(STAGES[:2]), default=STAGES[2]).astype(object)
    out[~np.asarray(candidate, dtype=bool)] = ""
    return out


def hsc_stage(
    adata: ad.AnnData,
    *,
    identity_key: str = "hsc_identity",
    nascent_key: str = "score_stage_nascent_z",
    fetal_key: str = "score_stage_fetal_z",
    sample_key: str = "sample",
    z_on: float = 3.0,
    min_cells: int = 10,
    key_added: str = "hsc_stage",
    copy: bool = False,
) -> ad.AnnData | None:
    """Per-cell and per-sample HSC maturity stage (rules: module docstring).

    Parameters
    ----------
    adata
        Cells with the identity call (:func:`hsc_identity`) and the stage programme z-scores.
    identity_key
        ``obs`` column of the identity call; ``HSC-like`` and ``pre-HSC/EHT-like`` cells are staged.
    nascent_key
        ``obs`` column of the nascent (AGM) programme z-score.
    fetal_key
        ``obs`` column of the fetal programme z-score.
    sample_key
        ``obs`` column with samples.
    z_on
        Threshold of both programme z-scores.
    min_cells
        Fewer candidate cells in a sample: its call is ``undetermined``.
    key_added
        ``obs`` and ``uns`` key of the results.
    copy
        Return a modified copy instead of writing in place.

    Returns
    -------
    ``None``, or the modified copy when ``copy=True``. Writes ``obs[key_added]`` (stage or ``""``) and
    ``uns[key_added]`` with ``samples`` (n candidate cells, ``stage_<agm|fetal|adult>_fraction`` among them,
    ``hsc_stage_call``) and ``params``.
    """
    adata = adata.copy() if copy else adata
    nan = np.full(adata.n_obs, np.nan)
    nascent = adata.obs[nascent_key].to_numpy(dtype=float) if nascent_key in adata.obs else nan
    fetal = adata.obs[fetal_key].to_numpy(dtype=float) if fetal_key in adata.obs else nan
    identity = adata.obs[identity_key].astype(str).to_numpy()
    candidate = np.isin(identity, ["HSC-like", "pre-HSC/EHT-like"])
    calls = stage_calls(nascent, fetal, candidate, z_on=z_on)
    adata.obs[key_added] = calls.astype(str)
    samples = adata.obs[sample_key].astype(str).to_numpy()
    rows = []
    for s in pd.unique(samples):
        c = calls[(samples == s) & candidate]
        row: dict = {"sample": s, "n_stage_cells": len(c)}
        for stage in STAGES:
            row[f"stage_{STAGE_SLUGS[stage]}_fraction"] = float(np.mean(c == stage)) if len(c) else np.nan
        if len(c) >= min_cells:
            values, counts = np.unique(c, return_counts=True)
            row["hsc_stage_call"] = str(values[np.argmax(counts)])
        else:
            row["hsc_stage_call"] = "undetermined"
        rows.append(row)
    adata.uns[key_added] = {
        "params": {
            "identity_key": identity_key,
            "nascent_key": nascent_key,
            "fetal_key": fetal_key,
            "z_on": z_on,
            "min_cells": min_cells,
            "scored": {"nascent": bool(np.isfinite(nascent).any()), "fetal": bool(np.isfinite(fetal).any())},
        },
        "samples": pd.DataFrame(rows),
    }
    return adata if copy else None
