"""Quality control per sample: metrics, adaptive thresholds, doublets, cell cycle, filtering and its account.

AnnData API (scanpy style, re-exported from ``hscseq.pp``):

- :func:`qc_metrics` -- species-aware per-cell metrics (counts, genes, % mito / ribo / haemoglobin,
  complexity);
- :func:`adaptive_thresholds` -- per-sample thresholds (median +/- k MADs on log counts and log genes, median
  + k MADs on % mito capped at an absolute %), every one overridable, and a flag per cell and criterion;
- :func:`detect_doublets` -- Scrublet (through scanpy) and SOLO (scvi-tools), combined by a documented rule;
- :func:`score_cell_cycle` -- Tirosh S / G2M scores and phase, mouse or human;
- :func:`filter_cells` -- drops flagged cells, counts what every criterion removed, and refuses to lose a
  sample silently.

Numeric cores (arrays in, arrays out): :func:`mad_bounds`, :func:`otsu_threshold`,
:func:`expected_doublet_rate`, :func:`combine_doublet_calls`, :func:`rank_doublet_score`,
:func:`combined_doublet_call`, :func:`assign_phase`.

Stage functions used by the workflow: :func:`run_qc` (one sample) and :func:`run_qc_summary` (all samples),
configured by one :class:`QCSettings` (defaults: the ``qc`` section of the config schema).

Modules: ``settings`` (:class:`QCSettings`), ``metrics``, ``thresholds``, ``doublet_rules`` (combination
cores), ``scrublet`` and ``solo`` (one per doublet method), ``doublets`` (:func:`detect_doublets`),
``cell_cycle``, ``filtering``, ``plot`` (the per-sample figure) and ``stage`` (:func:`run_qc`).
"""

from hscseq.qc.cell_cycle import assign_phase, cell_cycle_genes, score_cell_cycle
from hscseq.qc.doublet_rules import (
    DOUBLET_RULES,
    combine_doublet_calls,
    combined_doublet_call,
    expected_doublet_rate,
    rank_call_count,
    rank_doublet_score,
    top_calls,
)
from hscseq.qc.doublets import detect_doublets
from hscseq.qc.filtering import CRITERIA, filter_cells, qc_account
from hscseq.qc.metrics import GENE_PATTERNS, compute_metrics, gene_masks, qc_metrics
from hscseq.qc.plot import qc_figure
from hscseq.qc.scrublet import _run_scrublet
from hscseq.qc.settings import DEFAULT_SETTINGS, DEFAULTS, QCSettings, qc_settings, resolve_settings
from hscseq.qc.solo import SOLO_DOUBLET_RATIO, _run_solo
from hscseq.qc.stage import run_qc, run_qc_summary
from hscseq.qc.thresholds import MAD_SCALE, adaptive_thresholds, mad_bounds, otsu_threshold

__all__ = [
    "CRITERIA",
    "DEFAULTS",
    "DEFAULT_SETTINGS",
    "DOUBLET_RULES",
    "GENE_PATTERNS",
    "MAD_SCALE",
    "SOLO_DOUBLET_RATIO",
    "QCSettings",
    "_run_scrublet",
    "_run_solo",
    "adaptive_thresholds",
    "assign_phase",
    "cell_cycle_genes",
    "combine_doublet_calls",
    "combined_doublet_call",
    "compute_metrics",
    "detect_doublets",
    "expected_doublet_rate",
    "filter_cells",
    "gene_masks",
    "mad_bounds",
    "otsu_threshold",
    "qc_account",
    "qc_figure",
    "qc_metrics",
    "qc_settings",
    "rank_call_count",
    "rank_doublet_score",
    "resolve_settings",
    "run_qc",
    "run_qc_summary",
    "score_cell_cycle",
    "top_calls",
]
