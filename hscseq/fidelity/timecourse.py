"""Time course of composition and fidelity."""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence

import numpy as np
import pandas as pd

from hscseq.fidelity.settings import PARTS

logger = logging.getLogger(__name__)


def _timepoint_order(values: Sequence[str]) -> dict[str, float]:
    def key(v: str) -> float:
        m = re.search(r"[-+]?\d+(\.\d+)?", v)
        return float(m.group()) if m else np.inf

    uniq = sorted(set(values), key=lambda v: (key(v), v))
    return {v: float(i) for i, v in enumerate(uniq)}


def timecourse(
    table: pd.DataFrame, composition: pd.DataFrame, *, condition: str = "organoid"
) -> pd.DataFrame:
    """Composition and fidelity trends over time for samples of ``condition`` that have a timepoint.

    Returns a long table: timepoint, timepoint_order, sample, measure (``fidelity_index``, each part,
    ``fraction:<type>``), value, ci_low, ci_high, and per measure the Spearman trend over time (``trend_rho``,
    NaN with fewer than three timepoints).
    """
    from scipy.stats import spearmanr

    cols = ["timepoint", "timepoint_order", "sample", "measure", "value", "ci_low", "ci_high", "trend_rho"]
    if table.empty:
        return pd.DataFrame(columns=cols)
    sub = table[(table["condition"] == condition) & (table["timepoint"].astype(str).str.len() > 0)]
    if sub.empty:
        return pd.DataFrame(columns=cols)
    order = _timepoint_order(sub["timepoint"].astype(str).tolist())
    rows = []
    for _, r in sub.iterrows():
        tp = str(r["timepoint"])
        for m in ("fidelity_index", *PARTS, "novel_share"):
            rows.append(
                {
                    "timepoint": tp,
                    "timepoint_order": order[tp],
                    "sample": r["sample"],
                    "measure": m,
                    "value": r[m],
                    "ci_low": r[f"{m}_ci_low"],
                    "ci_high": r[f"{m}_ci_high"],
                }
            )
        comp = composition[composition["sample"] == r["sample"]]
        for _, c in comp.iterrows():
            rows.append(
                {
                    "timepoint": tp,
                    "timepoint_order": order[tp],
                    "sample": r["sample"],
                    "measure": f"fraction:{c['cell_type']}",
                    "value": c["fraction"],
                    "ci_low": c["fraction_ci_low"],
                    "ci_high": c["fraction_ci_high"],
                }
            )
    out = pd.DataFrame(rows)
    rho = {}
    for m, g in out.groupby("measure"):
        if g["timepoint_order"].nunique() >= 3 and g["value"].nunique() > 1:
            rho[m] = float(spearmanr(g["timepoint_order"], g["value"]).statistic)
        else:
            rho[m] = np.nan
    out["trend_rho"] = out["measure"].map(rho)
    return out.sort_values(["measure", "timepoint_order", "sample"]).reset_index(drop=True)[cols]
