"""hscseq: how close are lab-made blood cells to the real thing?

Single-cell RNA-seq pipeline and library: QC, integration, clustering, native HSC and lineage signatures,
mapping of engineered and organoid cells onto in vivo references, and a fidelity scorecard.
"""

from importlib.metadata import PackageNotFoundError, version

from hscseq._utils import HscseqInputError

try:
    __version__ = version("hscseq")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0.0.0"

__all__ = ["HscseqInputError", "__version__"]
