"""Plots (scanpy-style ``pl``) of the results hscseq stores in an AnnData.

The functions are defined in the stage modules; this namespace gathers them.
"""

from hscseq.cluster import dotplot_figure as dotplot
from hscseq.cluster import umap_figure as umap
from hscseq.score import plot_scores as scores

__all__ = ["dotplot", "scores", "umap"]
