"""Preprocessing (scanpy-style ``pp``): QC, merging, normalisation and feature selection.

The functions are defined in the stage modules (:mod:`hscseq.qc`, :mod:`hscseq.merge`,
:mod:`hscseq.integrate`); this namespace gathers them.
"""

from hscseq.integrate import normalize, select_features
from hscseq.merge import merge_samples
from hscseq.qc import adaptive_thresholds, detect_doublets, filter_cells, qc_metrics, score_cell_cycle

__all__ = [
    "adaptive_thresholds",
    "detect_doublets",
    "filter_cells",
    "merge_samples",
    "normalize",
    "qc_metrics",
    "score_cell_cycle",
    "select_features",
]
