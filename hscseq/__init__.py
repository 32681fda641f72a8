"""hscseq: how close are lab-made blood cells to the real thing?

Single-cell RNA-seq pipeline and library: QC, integration, clustering, native HSC and lineage signatures,
mapping of engineered and organoid cells onto in vivo references, and a fidelity scorecard.

Namespaces in the scanpy style: :mod:`hscseq.pp` (preprocessing), :mod:`hscseq.tl` (tools), :mod:`hscseq.pl`
(plots); the stage modules (:mod:`hscseq.ingest`, :mod:`hscseq.qc`, ...) hold the functions and their
workflow entries; :mod:`hscseq.datasets` is the seeded simulator. Submodules load on first use.
"""

import importlib
from importlib.metadata import PackageNotFoundError, version

from hscseq._threads import prefer_workqueue
from hscseq._utils import HscseqInputError

prefer_workqueue()

try:
    __version__ = version("hscseq")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0.0.0"

_SUBMODULES = {
    "cluster",
    "datasets",
    "fidelity",
    "genes",
    "ingest",
    "integrate",
    "merge",
    "pl",
    "pp",
    "provenance",
    "qc",
    "report",
    "score",
    "tl",
    "validate",
    "workflow",
}


def __getattr__(name: str):
    if name in _SUBMODULES:
        return importlib.import_module(f"hscseq.{name}")
    if name == "read_sample":
        return importlib.import_module("hscseq.ingest").read_sample
    msg = f"module 'hscseq' has no attribute {name!r}"
    raise AttributeError(msg)


__all__ = ["HscseqInputError", "__version__", "read_sample", *sorted(_SUBMODULES)]
