"""Tools (scanpy-style ``tl``): integration, clustering, signature scoring, reference mapping, scorecard.

The functions are defined in the stage modules (:mod:`hscseq.integrate`, :mod:`hscseq.cluster`,
:mod:`hscseq.score`, :mod:`hscseq.fidelity`); this namespace gathers them.
"""

from hscseq.cluster import cluster, marker_genes
from hscseq.fidelity import map_to_profiles, map_to_reference, scorecard
from hscseq.integrate import integrate, integration_metrics
from hscseq.score import hsc_likeness, missing_programme, primitive_vs_definitive, score_signatures
from hscseq.score.identity import hsc_identity
from hscseq.score.ontogeny import primitive_vs_definitive_evidence
from hscseq.score.stage import hsc_stage

__all__ = [
    "cluster",
    "hsc_identity",
    "hsc_likeness",
    "hsc_stage",
    "integrate",
    "integration_metrics",
    "map_to_profiles",
    "map_to_reference",
    "marker_genes",
    "missing_programme",
    "primitive_vs_definitive",
    "primitive_vs_definitive_evidence",
    "score_signatures",
    "scorecard",
]
