"""The lineages stage entry: presence tables, the organoid time course, trends and two figures."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import anndata as ad
import pandas as pd

from hscseq._plotting import save_and_close
from hscseq._utils import write_table
from hscseq.lineages.plot import plot_timecourse
from hscseq.lineages.settings import LineageSettings, lineage_settings
from hscseq.lineages.tables import (
    lineage_counts,
    lineage_presence,
    lineage_timecourse,
    lineage_trends,
    presence_summary,
)

logger = logging.getLogger(__name__)


def run_lineages(
    *,
    final: str,
    summary: str,
    presence: str,
    timecourse: str,
    trends: str,
    composition_figure: str,
    fidelity_figure: str,
    settings: LineageSettings | Mapping[str, Any] | None = None,
    samples: Sequence[Mapping[str, str]] = (),
) -> None:
    """Stage entry: presence per sample and lineage (+ one summary line per sample), organoid time course and
    trends, and two figures (composition and fidelity over time)."""
    cfg = lineage_settings(settings)
    adata = ad.read_h5ad(final, backed="r")
    obs_only = ad.AnnData(obs=adata.obs.copy(), uns={"fidelity": dict(adata.uns.get("fidelity", {}))})
    adata.file.close()
    sheet = pd.DataFrame(list(samples)) if samples else None
    counts = lineage_counts(obs_only, settings=cfg, samples=sheet)
    table = lineage_presence(counts, cfg)
    tc = lineage_timecourse(counts)
    tr = lineage_trends(counts, settings=cfg)
    for _, r in presence_summary(table).iterrows():
        logger.info("presence %s %s: %s", r["timepoint"], r["sample"], r["summary"])
    for _, r in tr[tr["trend"].isin(["rising", "falling"])].iterrows():
        logger.info("trend %s %s: %s (q = %.3g)", r["lineage"], r["measure"], r["trend"], r["q_value"])
    write_table(presence_summary(table), summary, index=False)
    write_table(table, presence, index=False)
    write_table(tc, timecourse, index=False)
    write_table(tr, trends, index=False)
    for measure, path in (("fraction", composition_figure), ("fidelity", fidelity_figure)):
        save_and_close(plot_timecourse(tc, counts, measure=measure), path)
