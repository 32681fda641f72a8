"""Filtering and its account: which criterion removed each cell; a sample is never lost silently."""

from __future__ import annotations

import logging

import anndata as ad
import numpy as np
import pandas as pd

from hscseq._utils import input_error
from hscseq.qc.settings import DEFAULT_SETTINGS as _D

logger = logging.getLogger(__name__)

#: Criteria in the order used to attribute a removed cell to one *first* reason (the account sums up).
CRITERIA: tuple[str, ...] = (
    "high_pct_mt",
    "low_counts",
    "low_genes",
    "high_counts",
    "high_genes",
    "doublet",
)


def qc_account(obs: pd.DataFrame, *, remove_doublets: bool = _D.remove_doublets) -> pd.DataFrame:
    """Per-cell QC account: one boolean column per criterion, the first failed criterion, and ``kept``.

    Parameters
    ----------
    obs
        ``obs`` annotated by :func:`adaptive_thresholds` and :func:`detect_doublets`.
    remove_doublets
        Whether predicted doublets are removed.

    Returns
    -------
    DataFrame indexed like ``obs`` with ``fail_<criterion>`` columns (see :data:`CRITERIA`), ``reason``
    (first failed criterion in :data:`CRITERIA` order, ``""`` if kept) and ``kept``.
    """
    cols = {
        "high_pct_mt": "qc_high_pct_mt",
        "low_counts": "qc_low_counts",
        "low_genes": "qc_low_genes",
        "high_counts": "qc_high_counts",
        "high_genes": "qc_high_genes",
        "doublet": "predicted_doublet",
    }
    out = pd.DataFrame(index=obs.index)
    for crit in CRITERIA:
        col = cols[crit]
        active = crit != "doublet" or remove_doublets
        out[f"fail_{crit}"] = obs[col].to_numpy(dtype=bool) if (col in obs and active) else False
    fails = out[[f"fail_{c}" for c in CRITERIA]].to_numpy()
    first = np.where(fails.any(axis=1), np.array(CRITERIA, dtype=object)[fails.argmax(axis=1)], "")
    out["reason"] = first.astype(str)
    out["kept"] = ~fails.any(axis=1)
    return out


def filter_cells(
    adata: ad.AnnData,
    *,
    sample: str | None = None,
    remove_doublets: bool = _D.remove_doublets,
    max_removed_fraction: float = _D.max_removed_fraction,
    continue_on_excess_removal: bool = _D.continue_on_excess_removal,
    key_added: str = "qc_filter",
    copy: bool = False,
) -> ad.AnnData | None:
    """Remove cells failing any QC criterion; refuse to lose a sample silently.

    Criteria (:data:`CRITERIA`): the flags of :func:`adaptive_thresholds` and, if ``remove_doublets``,
    ``predicted_doublet`` of :func:`detect_doublets`. If more than ``max_removed_fraction`` of the cells
    would go, raises :class:`~hscseq.HscseqInputError` naming the sample and the criteria that removed them,
    unless ``continue_on_excess_removal`` (then a warning is logged and recorded in ``uns[key_added]``).

    Records in ``uns[key_added]``: ``n_cells_in``, ``n_cells_out``, ``removed`` (cells failing each
    criterion; a cell can fail several), ``removed_first`` (each removed cell counted once, under its
    first criterion), ``warnings`` and ``params``.

    Parameters
    ----------
    adata
        Annotated by :func:`adaptive_thresholds` (and :func:`detect_doublets`).
    sample
        Sample name for messages.
    remove_doublets
        Remove predicted doublets.
    max_removed_fraction
        Largest share of cells a sample may lose.
    continue_on_excess_removal
        Warn instead of stopping when more are removed.
    key_added
        ``uns`` key of the account.
    copy
        Return a filtered copy instead of filtering in place.

    Returns
    -------
    The filtered copy if ``copy=True``, else ``None``.
    """
    account = qc_account(adata.obs, remove_doublets=remove_doublets)
    n_in = adata.n_obs
    keep = account["kept"].to_numpy()
    removed = {c: int(account[f"fail_{c}"].sum()) for c in CRITERIA}
    first = {c: int((account["reason"] == c).sum()) for c in CRITERIA}
    n_removed = int((~keep).sum())
    fraction = n_removed / n_in if n_in else 1.0
    name = sample or "(unnamed)"
    warnings: list[str] = []
    if n_in == 0 or fraction > max_removed_fraction:
        worst = sorted(removed.items(), key=lambda kv: -kv[1])
        detail = ", ".join(f"{c}: {n}" for c, n in worst if n)
        msg = (
            f"QC would remove {n_removed} of {n_in} cells ({fraction:.0%}, more than the allowed "
            f"{max_removed_fraction:.0%}); the criterion removing most is {worst[0][0]!r} "
            f"(cells failing each criterion: {detail or 'none'})."
        )
        if not continue_on_excess_removal or n_removed == n_in:
            raise input_error(
                msg,
                sample=name,
                fix=f"inspect results/qc/{name}.png; if the sample is truly poor, drop it from the "
                "sample sheet; if a threshold is wrong for it, override it in "
                f"config qc.per_sample.{name}; or set qc.continue_on_excess_removal: true.",
            )
        logger.warning("!!! sample %r: %s Continuing because continue_on_excess_removal is set.", name, msg)
        warnings.append(msg)
    result = adata[keep].copy() if copy else adata
    if not copy:
        adata._inplace_subset_obs(keep)
    result.uns[key_added] = {
        "n_cells_in": int(n_in),
        "n_cells_out": int(keep.sum()),
        "n_removed": n_removed,
        "removed_fraction": float(fraction),
        "removed": removed,
        "removed_first": first,
        "warnings": warnings,
        "params": {
            "remove_doublets": bool(remove_doublets),
            "max_removed_fraction": float(max_removed_fraction),
            "continue_on_excess_removal": bool(continue_on_excess_removal),
        },
    }
    logger.info(
        "sample %r: kept %d of %d cells (removed %d: %s)",
        name,
        keep.sum(),
        n_in,
        n_removed,
        ", ".join(f"{c} {n}" for c, n in first.items() if n) or "none",
    )
    return result if copy else None
