"""Shared rules about reference labels and donors (one place each; used by score and fidelity).

- Which reference label is "HSC": :func:`is_hsc_label` (case-insensitive membership in a list, by default
  :data:`DEFAULT_HSC_LABELS`, the ``score.reference_hsc_labels`` default of the schema) and
  :func:`hsc_label` (the one HSC type among a reference's labels).
- Which obs column is the donor: :func:`donor_key`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from hscseq._settings import schema_defaults

#: Reference labels counted as in vivo HSCs (case-insensitive): the schema default of
#: ``score.reference_hsc_labels`` (HSC, LT-HSC, LTHSC, ST-HSC, HSC/MPP, HSCs).
DEFAULT_HSC_LABELS: tuple[str, ...] = tuple(schema_defaults("score")["reference_hsc_labels"])

#: obs columns that can identify donors, in order of preference.
DONOR_CANDIDATES: tuple[str, ...] = ("donor", "batch", "sample")


def is_hsc_label(
    labels: Sequence[str] | np.ndarray, hsc_labels: Sequence[str] = DEFAULT_HSC_LABELS
) -> np.ndarray:
    """Boolean per label: is it one of ``hsc_labels`` (case-insensitive, surrounding spaces ignored)?"""
    wanted = {str(x).strip().lower() for x in hsc_labels}
    return np.isin(np.char.lower(np.char.strip(np.asarray(labels, dtype=str))), list(wanted))


def hsc_label(
    classes: Sequence[str], explicit: str | None = None, hsc_labels: Sequence[str] = DEFAULT_HSC_LABELS
) -> str | None:
    """The reference label of HSCs among ``classes``: ``explicit`` when given (``None`` if it is absent),
    else the shortest class that :func:`is_hsc_label` accepts (``None`` when there is none)."""
    if explicit:
        return explicit if explicit in classes else None
    cands = [c for c, ok in zip(classes, is_hsc_label(list(classes), hsc_labels), strict=True) if ok]
    return sorted(cands, key=len)[0] if cands else None


def donor_key(
    obs: pd.DataFrame, reference_mask: np.ndarray, candidates: Sequence[str] = DONOR_CANDIDATES
) -> str | None:
    """The first of ``candidates`` with at least two non-empty values among reference cells, else ``None``."""
    for cand in candidates:
        if cand in obs and obs.loc[reference_mask, cand].astype(str).replace("", np.nan).nunique() >= 2:
            return cand
    return None
