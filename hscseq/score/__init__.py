"""The score stage (package): signature scoring, HSC identity and HSC-likeness, the missing HSC programme,
maturity stage and ontogeny.

Modules, one responsibility each:

- :mod:`~hscseq.score.settings`: :class:`ScoreSettings`, the stage's one settings object (schema defaults);
- :mod:`~hscseq.score.signatures`: the curated library and user GMT / YAML files, gene mapping;
- :mod:`~hscseq.score.cores`: numeric cores of scoring (expression bins, matched random sets, AUCell ranks,
  set scores, null statistics; arrays in, arrays out);
- :mod:`~hscseq.score.scoring`: :func:`score_signatures`, the AnnData wrapper;
- :mod:`~hscseq.score.identity`: HSC identity classes from programme z-scores (:func:`hsc_identity`);
- :mod:`~hscseq.score.likeness`: HSC-likeness calibrated on in vivo HSCs (:func:`hsc_likeness`);
- :mod:`~hscseq.score.programme`: the missing HSC programme (:func:`missing_programme`);
- :mod:`~hscseq.score.stage`: HSC maturity stage (:func:`hsc_stage`);
- :mod:`~hscseq.score.ontogeny`: primitive versus definitive haematopoiesis;
- :mod:`~hscseq.score.tables`, :mod:`~hscseq.score.plotting`: the per-sample programme table and the figure;
- :mod:`~hscseq.score.run`: :func:`run_score`, the stage's entry point.
"""

from hscseq._labels import DEFAULT_HSC_LABELS
from hscseq.merge import analysis_species  # the one rule (re-exported for score's callers)
from hscseq.score.cores import (
    aucell_rank_matrix,
    aucell_top_n,
    expression_bins,
    matched_random_sets,
    null_statistics,
    set_scores,
    signature_with_null,
)
from hscseq.score.identity import hsc_identity
from hscseq.score.likeness import bootstrap_fraction_ci, hsc_likeness, hsc_threshold
from hscseq.score.ontogeny import (
    ontogeny_calls,
    primitive_vs_definitive,
    primitive_vs_definitive_evidence,
    sample_call,
)
from hscseq.score.plotting import plot_scores
from hscseq.score.programme import missing_programme, programme_deficit
from hscseq.score.run import (
    IDENTITY_SIGNATURES,
    attach_scores,
    run_identity,
    run_score,
    score_annotations,
    stage_signatures,
)
from hscseq.score.scoring import score_signatures
from hscseq.score.settings import ScoreSettings, score_settings
from hscseq.score.signatures import (
    LIBRARY_FILE,
    Signature,
    load_signatures,
    read_signature_file,
    resolve_genes,
)
from hscseq.score.stage import hsc_stage
from hscseq.score.tables import PROGRAMME_COLUMNS, programme_table

__all__ = [
    "DEFAULT_HSC_LABELS",
    "IDENTITY_SIGNATURES",
    "LIBRARY_FILE",
    "PROGRAMME_COLUMNS",
    "ScoreSettings",
    "Signature",
    "analysis_species",
    "attach_scores",
    "aucell_rank_matrix",
    "aucell_top_n",
    "bootstrap_fraction_ci",
    "expression_bins",
    "hsc_identity",
    "hsc_likeness",
    "hsc_stage",
    "hsc_threshold",
    "load_signatures",
    "matched_random_sets",
    "missing_programme",
    "null_statistics",
    "ontogeny_calls",
    "plot_scores",
    "primitive_vs_definitive",
    "primitive_vs_definitive_evidence",
    "programme_deficit",
    "programme_table",
    "read_signature_file",
    "resolve_genes",
    "run_identity",
    "run_score",
    "sample_call",
    "score_annotations",
    "score_settings",
    "score_signatures",
    "set_scores",
    "signature_with_null",
    "stage_signatures",
]
