"""Plate data and spike-ins: ERCC controls set aside, non-integer expected counts (RSEM / Salmon) rounded."""

from __future__ import annotations

import logging
import re

import numpy as np

from hscseq.ingest._raw import _Raw

logger = logging.getLogger(__name__)

#: ERCC spike-in controls (External RNA Controls Consortium): ERCC-00002 ... ERCC-00171.
_SPIKE_IN = re.compile(r"^ERCC-\d{5}$", re.IGNORECASE)


def _set_aside_spike_ins(raw: _Raw, *, sample: str) -> np.ndarray | None:
    """Remove ERCC spike-ins from the features; return their per-cell counts (None if there are none)."""
    names = [s or i for s, i in zip(raw.symbols, raw.ids, strict=True)]
    spike = np.array([bool(_SPIKE_IN.match(str(n).strip())) for n in names], dtype=bool)
    if not spike.any():
        return None
    counts = np.asarray(raw.X[:, np.flatnonzero(spike)].sum(axis=1)).ravel()
    keep = np.flatnonzero(~spike)
    raw.X = raw.X[:, keep]
    raw.symbols = [raw.symbols[i] for i in keep]
    raw.ids = [raw.ids[i] for i in keep]
    if raw.feature_types is not None:
        raw.feature_types = [raw.feature_types[i] for i in keep]
    raw.notes["set_aside_spike_ins"] = int(spike.sum())
    logger.info("sample %s: set aside %d ERCC spike-ins (obs['spike_in_counts'])", sample, int(spike.sum()))
    return counts


def _rounds_expected_counts(fmt: str, technology: str | None) -> bool:
    """Whether ingest (and the pre-run check) accepts non-integer expected counts of an input, to round them.

    Plate data in every format but h5ad: the h5ad reader finds the counts slot (X, a counts layer or
    ``.raw``) by the integer rule, so non-integer values there are taken for normalised data and refused.
    """
    return technology == "plate" and fmt != "h5ad"


def _round_expected_counts(raw: _Raw, *, sample: str) -> None:
    """Plate data: non-integer expected counts (RSEM / Salmon) rounded to the nearest integer (half to even).

    Values that round to 0 are dropped from the sparse matrix. Negative or non-finite values stay errors.
    """
    data = raw.X.data
    fractional = np.isfinite(data) & (data >= 0) & (data != np.round(data))
    if not fractional.any():
        return
    raw.X.data = np.where(fractional, np.rint(data), data)
    raw.X.eliminate_zeros()
    raw.notes["rounded_expected_counts"] = int(fractional.sum())
    logger.info(
        "sample %s: rounded %d non-integer expected counts to the nearest integer (plate technology)",
        sample,
        int(fractional.sum()),
    )
