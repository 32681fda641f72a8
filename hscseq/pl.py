"""Plots (scanpy-style ``pl``) of the results hscseq stores in an AnnData.

Every function takes ``adata`` first, keyword-only options, ``show`` and ``save``, returns a
:class:`matplotlib.figure.Figure` (``None`` with ``show=True``) and never switches the matplotlib backend.
The functions are defined in the stage modules; this namespace gathers them.
"""

from hscseq.cluster import dotplot_figure as dotplot
from hscseq.cluster import umap_figure as umap
from hscseq.fidelity.plot import plot_scorecard as scorecard
from hscseq.score import plot_scores as scores

__all__ = ["dotplot", "scorecard", "scores", "umap"]
