"""The QC stage as the workflow runs it: :func:`run_qc` (one sample), :func:`run_qc_summary` (all samples)."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from hscseq._utils import (
    HscseqInputError,
    atomic_path,
    check_raw_counts,
    input_error,
    write_h5ad,
    write_table,
)
from hscseq.qc.cell_cycle import score_cell_cycle
from hscseq.qc.doublets import detect_doublets
from hscseq.qc.filtering import CRITERIA, filter_cells, qc_account
from hscseq.qc.metrics import GENE_PATTERNS, qc_metrics
from hscseq.qc.plot import qc_figure
from hscseq.qc.settings import QCSettings, qc_settings
from hscseq.qc.thresholds import adaptive_thresholds

logger = logging.getLogger(__name__)

#: Doublets are called only when at least this many cells pass the metric thresholds.
MIN_DOUBLET_CELLS = 50

#: The per-cell flags of :func:`~hscseq.qc.adaptive_thresholds`.
_THRESHOLD_FLAGS = ["qc_low_counts", "qc_high_counts", "qc_low_genes", "qc_high_genes", "qc_high_pct_mt"]


def run_qc(
    *,
    h5ad: str,
    filtered: str,
    summary: str,
    figure: str,
    sample: Mapping[str, Any],
    settings: QCSettings | Mapping[str, Any],
    cells: str | None = None,
    threads: int = 1,
) -> None:
    """QC of one sample: metrics, adaptive thresholds, doublets, cell cycle, filtering, outputs.

    Parameters
    ----------
    h5ad
        Ingested sample (raw counts in ``X``).
    filtered
        Output h5ad of the cells kept (QC columns in ``obs``, account in ``uns["hscseq"]["qc"]``).
    summary
        Output one-row TSV (cells in, removed by each criterion, doublets, cells out, thresholds, warnings).
    figure
        Output PNG: distributions with threshold lines, counts vs. genes coloured by % mito, doublet scores,
        cell cycle.
    sample
        The sample-sheet row (``sample``, ``species``, ...).
    settings
        The ``qc`` config section or a :class:`~hscseq.qc.QCSettings` (per-sample overrides in
        ``per_sample``).
    cells
        Optional output TSV (gzip if ``.gz``): the per-cell account of every cell in (metrics, scores,
        criteria failed, kept).
    threads
        CPU threads (SOLO).
    """
    name = str(sample["sample"])
    species = str(sample["species"])
    opts = qc_settings(settings).for_sample(name)
    if species not in GENE_PATTERNS:
        raise input_error(
            f"unknown species {species!r}.",
            sample=name,
            fix=f"use one of {sorted(GENE_PATTERNS)} in the sample sheet.",
        )
    adata = _read_sample(h5ad, name)
    warnings: list[str] = []

    qc_metrics(adata, species=species)
    if adata.uns["qc_metrics"]["n_genes"]["mt"] == 0:
        warnings.append(f"no mitochondrial genes ({GENE_PATTERNS[species]['mt']}) found: % mito not used")
    adaptive_thresholds(
        adata,
        n_mads=opts.n_mads,
        mito_n_mads=opts.mito_n_mads,
        mito_max_pct=opts.mito_max_pct,
        mito_scale=str(opts.mito_scale),
        min_counts=opts.min_counts,
        max_counts=opts.max_counts,
        min_genes=opts.min_genes,
        max_genes=opts.max_genes,
        max_pct_mt=opts.max_pct_mt,
    )
    technology = str(sample.get("technology") or "droplet")
    warnings.extend(_call_doublets(adata, opts, technology=technology, name=name, threads=threads))
    score_cell_cycle(
        adata,
        species=species,
        min_genes=int(opts.min_cell_cycle_genes),
        phase_rule=str(opts.cell_cycle_phase_rule),
        random_state=int(opts.seed),
    )
    if "warning" in adata.uns["cell_cycle"]:
        warnings.append(adata.uns["cell_cycle"]["warning"])

    account = qc_account(adata.obs, remove_doublets=bool(opts.remove_doublets))
    before = adata.obs.copy()
    try:
        filter_cells(
            adata,
            sample=name,
            remove_doublets=bool(opts.remove_doublets),
            max_removed_fraction=float(opts.max_removed_fraction),
            continue_on_excess_removal=bool(opts.continue_on_excess_removal),
        )
    except HscseqInputError:
        _save_figure(before, account, adata.uns["qc_thresholds"]["thresholds"], name, figure)
        raise
    warnings.extend(adata.uns["qc_filter"]["warnings"])

    record = _store_record(adata, opts, warnings, technology=technology)
    row = _summary_row(name, sample, record, before, account)
    write_h5ad(adata, filtered)
    write_table(pd.DataFrame([row]), summary, index=False)
    _save_figure(before, account, record["thresholds"], name, figure)
    if cells:
        table = pd.concat([before[[c for c in _CELL_COLUMNS if c in before]], account], axis=1)
        write_table(table.rename_axis("cell").reset_index(), cells, index=False)
    logger.info("sample %r: QC done, %d of %d cells kept", name, adata.n_obs, record["n_cells_in"])


def _read_sample(h5ad: str, name: str) -> ad.AnnData:
    """The ingested sample with raw counts checked and ``X`` sparse."""
    adata = ad.read_h5ad(h5ad)
    _check_counts(adata, name, h5ad)
    if not sp.issparse(adata.X):
        adata.X = sp.csr_matrix(adata.X)
    return adata


def _check_counts(adata: ad.AnnData, name: str, path: str) -> None:
    if adata.n_obs == 0 or adata.n_vars == 0:
        raise input_error(
            f"the ingested matrix is empty ({adata.n_obs} cells x {adata.n_vars} genes).",
            sample=name,
            path=path,
            fix="check the count matrix given in the sample sheet.",
        )
    check_raw_counts(
        adata.X,
        what="X",
        sample=name,
        path=path,
        fix="QC needs raw UMI counts; rerun ingest on the raw count matrix.",
    )


def _call_doublets(
    adata: ad.AnnData, opts: QCSettings, *, technology: str, name: str, threads: int
) -> list[str]:
    """Doublet calls among the cells passing the metric thresholds, written to ``obs`` for every cell.

    Cells failing a threshold get ``doublet_score`` NaN and ``predicted_doublet`` False. Returns the
    warnings (plate sample without a rate, too few cells).
    """
    warnings: list[str] = []
    # doublets are called among the cells that pass the metric thresholds: empty or broken droplets
    # would otherwise enter Scrublet's simulated doublets and SOLO's training set
    passing = ~adata.obs[_THRESHOLD_FLAGS].to_numpy().any(axis=1)
    methods = list(opts.doublet_methods)
    if technology == "plate" and opts.expected_doublet_rate is None and methods:
        # one cell per well: a droplet loading rate does not apply (issue #13); set a rate to call doublets
        warnings.append(
            "plate-based sample: doublet calling off (set qc.per_sample.<sample>.expected_doublet_rate "
            "to call doublets); QC thresholds apply to read depth"
        )
        logger.info("sample %r: %s", name, warnings[-1])
        methods = []
    adata.obs["doublet_score"] = np.nan
    adata.obs["predicted_doublet"] = False
    if methods and passing.sum() >= MIN_DOUBLET_CELLS:
        sub = adata[passing].copy()
        detect_doublets(
            sub,
            methods=methods,
            rule=opts.doublet_rule,
            expected_rate=opts.expected_doublet_rate,
            rate_per_1000_cells=opts.doublet_rate_per_1000_cells,
            max_cells_per_lane=opts.max_cells_per_lane,
            n_cells_recovered=adata.n_obs,  # the droplet run's cells, not only those passing QC
            solo_max_epochs=int(opts.solo_max_epochs),
            solo_max_steps=opts.solo_max_steps,
            scrublet_n_prin_comps=int(opts.scrublet_n_prin_comps),
            scrublet_log_transform=bool(opts.scrublet_log_transform),
            scrublet_sim_doublet_ratio=float(opts.scrublet_sim_doublet_ratio),
            scrublet_max_sim_scored=opts.scrublet_max_sim_scored,
            threads=threads,
            random_state=int(opts.seed),
        )
        _expand_doublet_columns(adata, sub, passing, methods)
        adata.uns["doublets"] = sub.uns["doublets"]
    elif methods:
        warnings.append(f"only {int(passing.sum())} cells pass the thresholds: doublet detection skipped")
        logger.warning("sample %r: %s", name, warnings[-1])
    return warnings


def _expand_doublet_columns(
    adata: ad.AnnData, sub: ad.AnnData, passing: np.ndarray, methods: Sequence[str]
) -> None:
    """Copy the doublet columns of ``sub`` (the passing cells) to ``adata`` (False / NaN elsewhere)."""
    extra = ["doublet_rank_score"] if "doublet_rank_score" in sub.obs else []
    for col in ["doublet_score", "predicted_doublet", *extra] + [
        f"{m}_{k}" for m in methods for k in ("score", "doublet")
    ]:
        values = sub.obs[col].to_numpy()
        full = np.full(adata.n_obs, False if values.dtype == bool else np.nan, dtype=values.dtype)
        full[passing] = values
        adata.obs[col] = full


def _store_record(adata: ad.AnnData, opts: QCSettings, warnings: list[str], *, technology: str) -> dict:
    """Move the steps' records into ``uns["hscseq"]["qc"]``; drop the working ``qc_*`` columns and keys."""
    record = _qc_record(adata, opts, warnings)
    record["technology"] = technology
    uns_hscseq = dict(adata.uns.get("hscseq", {}))
    uns_hscseq["qc"] = record
    adata.uns["hscseq"] = uns_hscseq
    for key in ("qc_metrics", "qc_thresholds", "doublets", "cell_cycle", "qc_filter"):
        adata.uns.pop(key, None)
    drop = [c for c in adata.obs if c.startswith("qc_")]
    adata.obs = adata.obs.drop(columns=drop)
    adata.obs["predicted_doublet"] = adata.obs["predicted_doublet"].astype(bool)
    return record


def _save_figure(
    obs: pd.DataFrame, account: pd.DataFrame, thresholds: Mapping[str, float], name: str, path: str
) -> None:
    """Write the QC figure (:func:`~hscseq.qc.plot.qc_figure`) to ``path`` (PNG, atomically) and close it."""
    import matplotlib.pyplot as plt

    fig = qc_figure(obs, account, thresholds, name=name)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


_CELL_COLUMNS = (
    "total_counts",
    "n_genes_by_counts",
    "pct_counts_mt",
    "pct_counts_ribo",
    "pct_counts_hb",
    "complexity",
    "doublet_score",
    "doublet_rank_score",
    "scrublet_score",
    "solo_score",
    "scrublet_doublet",
    "solo_doublet",
    "predicted_doublet",
    "S_score",
    "G2M_score",
    "phase",
)


def _clean(obj):
    """Make a nested record storable in h5ad ``uns`` (no None, plain types)."""
    if isinstance(obj, Mapping):
        return {str(k): _clean(v) for k, v in obj.items() if v is not None}
    if isinstance(obj, list | tuple):
        return [_clean(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


def _qc_record(adata: ad.AnnData, opts: QCSettings, warnings: list[str]) -> dict:
    filt = adata.uns["qc_filter"]
    thr = adata.uns["qc_thresholds"]
    dbl = adata.uns.get("doublets", {})
    phases = adata.obs["phase"].value_counts(normalize=True)
    record = {
        "thresholds": dict(thr["thresholds"]),
        "threshold_source": dict(thr["source"]),
        "n_cells_in": filt["n_cells_in"],
        "n_cells_out": filt["n_cells_out"],
        "removed": dict(filt["removed"]),
        "removed_first": dict(filt["removed_first"]),
        "removed_fraction": filt["removed_fraction"],
        "doublets": {
            "rule": opts.doublet_rule,
            "expected_rate": dbl.get("expected_rate", float("nan")),
            "rate": dbl.get("rate", 0.0),
            "agreement": dbl.get("agreement", float("nan")),
            "methods": {m: dict(v) for m, v in dbl.get("methods", {}).items()},
        },
        "cell_cycle": {
            "s_genes": len(adata.uns["cell_cycle"]["s_genes"]),
            "g2m_genes": len(adata.uns["cell_cycle"]["g2m_genes"]),
            "phase_fraction": {str(k): float(v) for k, v in phases.items()},
        },
        "metric_genes": dict(adata.uns["qc_metrics"]["n_genes"]),
        "warnings": list(warnings),
        "params": opts.as_params(),
    }
    return _clean(record)


def _summary_row(
    name: str, sample: Mapping[str, Any], record: dict, before: pd.DataFrame, account: pd.DataFrame
) -> dict:
    thr = record["thresholds"]
    dbl = record["doublets"]
    row: dict[str, Any] = {
        "sample": name,
        "species": sample.get("species", ""),
        "condition": sample.get("condition", ""),
        "cells_in": record["n_cells_in"],
    }
    for crit in CRITERIA:
        row[f"removed_{crit}"] = record["removed"][crit]
    row["removed_total"] = record["n_cells_in"] - record["n_cells_out"]
    row["removed_fraction"] = round(record["removed_fraction"], 4)
    row["cells_out"] = record["n_cells_out"]
    row["doublets_expected_rate"] = round(dbl["expected_rate"], 4)
    for method, meta in dbl["methods"].items():
        row[f"doublets_{method}"] = meta["n_called"]
        row[f"doublet_rate_{method}"] = round(meta["rate"], 4)
    row["doublets_combined"] = int(before["predicted_doublet"].sum())
    row["doublet_rate_combined"] = round(dbl["rate"], 4)
    row["doublet_rule"] = dbl["rule"]
    for key in ("min_counts", "max_counts", "min_genes", "max_genes", "max_pct_mt"):
        row[f"threshold_{key}"] = round(thr[key], 2)
        row[f"threshold_{key}_source"] = record["threshold_source"][key]
    row["median_counts_out"] = float(before.loc[account["kept"].to_numpy(), "total_counts"].median())
    row["median_genes_out"] = float(before.loc[account["kept"].to_numpy(), "n_genes_by_counts"].median())
    for phase in ("G1", "S", "G2M"):
        row[f"fraction_{phase}"] = round(record["cell_cycle"]["phase_fraction"].get(phase, 0.0), 4)
    row["warnings"] = " | ".join(record["warnings"])
    return row


def run_qc_summary(*, summaries: Sequence[str], table: str) -> None:
    """Concatenate the per-sample QC summaries into one table (one row per sample).

    Parameters
    ----------
    summaries
        Per-sample one-row TSVs written by :func:`run_qc`.
    table
        Output TSV (``results/tables/qc_summary.tsv``).
    """
    frames = []
    for path in summaries:
        if not Path(path).is_file():
            raise input_error(
                "the per-sample QC summary does not exist.",
                path=path,
                fix="rerun the qc rule for this sample.",
            )
        frames.append(pd.read_csv(path, sep="\t", keep_default_na=False, na_values=[""]))
    df = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    if "warnings" in df:
        df["warnings"] = df["warnings"].fillna("")
        for row in df.itertuples():
            if row.warnings:
                logger.warning("sample %r: %s", row.sample, row.warnings)
    write_table(df, table, index=False)
    logger.info("QC summary of %d samples written to %s", len(df), table)
