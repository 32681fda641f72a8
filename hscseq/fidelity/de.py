"""Differences explained: pseudobulk DE per matched type."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import anndata as ad
import numpy as np
import pandas as pd

from hscseq.fidelity.parts import (
    _counts,
    _donor_column,
    _sum_rows,
)

logger = logging.getLogger(__name__)


def confounded_samples(
    obs: pd.DataFrame, *, sample_key: str = "sample", batch_key: str = "batch", reference_mask: np.ndarray
) -> list[str]:
    """Query samples whose batches contain no reference cell (condition and batch are confounded)."""
    if batch_key not in obs:
        return []
    ref_batches = set(obs.loc[reference_mask, batch_key].astype(str))
    out = []
    for s, grp in obs.loc[~reference_mask].groupby(sample_key, observed=True):
        if not set(grp[batch_key].astype(str)) & ref_batches:
            out.append(str(s))
    return out


def pseudobulk_de(
    adata: ad.AnnData,
    *,
    sample_key: str = "sample",
    query_conditions: Sequence[str] = ("engineered", "organoid"),
    condition_key: str = "condition",
    layer: str | None = "counts",
    min_cells: int = 10,
    top_n: int = 25,
    min_confidence: float = 0.5,
    max_genes: int = 1000,
    random_state: int = 0,
) -> pd.DataFrame:
    """pydeseq2 per query sample and matched type: the sample's pseudobulk vs the in vivo donors' pseudobulks.

    Design ``~condition`` with one query pseudobulk and one pseudobulk per in vivo donor (at least two
    needed). Condition is confounded with batch whenever the query sample has its own batch (always for a
    single engineered sample): the fold changes then mix biology and batch, which is logged as a warning and
    flagged in the ``confounded`` column.

    Parameters
    ----------
    adata
        Mapped cells (``map_to_reference``), raw counts in ``layers[layer]``.
    sample_key
        obs column with samples.
    query_conditions
        Conditions of the query samples.
    condition_key
        obs column with conditions.
    layer
        Layer with raw counts.
    min_cells
        Cells needed in every pseudobulk.
    top_n
        Genes kept per direction (``missing``: lower in the query; ``extra``: higher).
    min_confidence
        Label probability needed to use a cell.
    max_genes
        Genes tested per type: the most expressed ones over all pseudobulks of the comparison (an
        independent filter on mean expression, blind to the condition labels, as DESeq2's own independent
        filtering), which bounds the pydeseq2 run time.
    random_state
        Seed (unused by pydeseq2's deterministic fit, recorded for provenance).

    Returns
    -------
    Long table: sample, cell_type, direction, rank, gene, log2_fold_change, lfc_se, pvalue, padj,
    base_mean, n_query_cells, n_invivo_donors, confounded.
    """
    from pydeseq2.dds import DeseqDataSet
    from pydeseq2.default_inference import DefaultInference
    from pydeseq2.ds import DeseqStats

    obs = adata.obs
    ref_mask = obs["is_reference"].to_numpy().astype(bool)
    ref_key = adata.uns["fidelity"]["params"].get("reference_key", "reference_label")
    ref_labels = obs[ref_key].astype(str).to_numpy()
    donors = _donor_column(adata, ref_mask)
    pred = obs["predicted_label"].astype(str).to_numpy()
    confident = (~obs["novel"].to_numpy().astype(bool)) & (
        obs["label_confidence"].to_numpy() >= min_confidence
    )
    x = _counts(adata, layer)
    confounded = set(confounded_samples(obs, sample_key=sample_key, reference_mask=ref_mask))
    cols = [
        "sample",
        "cell_type",
        "direction",
        "rank",
        "gene",
        "log2_fold_change",
        "lfc_se",
        "pvalue",
        "padj",
        "base_mean",
        "n_query_cells",
        "n_invivo_donors",
        "confounded",
    ]
    rows = []
    queries = [
        s
        for s in pd.unique(obs.loc[~ref_mask, sample_key].astype(str))
        if obs.loc[obs[sample_key].astype(str) == s, condition_key].astype(str).iloc[0] in query_conditions
    ]
    for s in queries:
        if s in confounded:
            logger.warning(
                "DE for sample %s: condition and batch are confounded (its batch has no in vivo "
                "cells); fold changes mix biology with batch effects - read them as hypotheses.",
                s,
            )
        in_s = (obs[sample_key].astype(str) == s).to_numpy() & ~ref_mask
        for t in adata.uns["fidelity"]["labels"]:
            q_idx = np.flatnonzero(in_s & confident & (pred == t))
            if len(q_idx) < min_cells:
                continue
            pbs, names = [_sum_rows(x, q_idx)], [f"{s}"]
            for d in sorted(pd.unique(donors[ref_mask])):
                r_idx = np.flatnonzero(ref_mask & (ref_labels == t) & (donors == d))
                if len(r_idx) >= min_cells:
                    pbs.append(_sum_rows(x, r_idx))
                    names.append(f"invivo_{d}")
            if len(pbs) < 3:
                logger.warning(
                    "DE for %s / %s skipped: fewer than two in vivo donors with >= %d cells", s, t, min_cells
                )
                continue
            counts = pd.DataFrame(
                np.rint(np.vstack(pbs)).astype(np.int64), index=names, columns=adata.var_names.astype(str)
            )
            counts = counts.loc[:, (counts >= 5).sum(axis=0) >= 2]
            if counts.shape[1] > max_genes:
                mean_cpm = (counts.div(counts.sum(axis=1), axis=0) * 1e6).mean(axis=0)
                counts = counts.loc[:, mean_cpm.nlargest(max_genes).index]
            meta = pd.DataFrame({"condition": ["query"] + ["invivo"] * (len(pbs) - 1)}, index=names)
            try:
                dds = DeseqDataSet(
                    counts=counts,
                    metadata=meta,
                    design="~condition",
                    refit_cooks=False,
                    inference=DefaultInference(n_cpus=1),
                    quiet=True,
                )
                dds.deseq2()
                stats = DeseqStats(
                    dds,
                    contrast=["condition", "query", "invivo"],
                    inference=DefaultInference(n_cpus=1),
                    quiet=True,
                )
                stats.summary()
            except (ValueError, np.linalg.LinAlgError) as err:  # pragma: no cover - degenerate pseudobulks
                logger.warning("DE for %s / %s failed: %s", s, t, err)
                continue
            res = stats.results_df.dropna(subset=["log2FoldChange"])
            for direction, sign in (("missing", -1), ("extra", 1)):
                sub = res[np.sign(res["log2FoldChange"]) == sign]
                sub = sub.sort_values(
                    ["padj", "log2FoldChange"],
                    key=lambda c, sign=sign: c if c.name == "padj" else -sign * c,
                    na_position="last",
                ).head(top_n)
                for rank, (gene, r) in enumerate(sub.iterrows(), start=1):
                    rows.append(
                        {
                            "sample": s,
                            "cell_type": t,
                            "direction": direction,
                            "rank": rank,
                            "gene": gene,
                            "log2_fold_change": r["log2FoldChange"],
                            "lfc_se": r["lfcSE"],
                            "pvalue": r["pvalue"],
                            "padj": r["padj"],
                            "base_mean": r["baseMean"],
                            "n_query_cells": len(q_idx),
                            "n_invivo_donors": len(pbs) - 1,
                            "confounded": s in confounded,
                        }
                    )
    return pd.DataFrame(rows, columns=cols)
