"""Shared fixtures. Every toy dataset comes from the one seeded simulator, hscseq.datasets."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("NUMBA_CACHE_DIR", str(Path(__file__).resolve().parent.parent / ".numba_cache"))
os.environ.setdefault("MPLBACKEND", "Agg")

REPO = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data"


@pytest.fixture(scope="session")
def repo() -> Path:
    """The repository root."""
    return REPO


@pytest.fixture(scope="session")
def demo_small():
    """The demo scenario at 20% scale (about 1,200 cells in five samples), as raw-count AnnData per sample."""
    from hscseq import datasets

    return datasets.demo(scale=0.2, seed=0)


@pytest.fixture
def toy(demo_small):
    """A fresh copy of one small in vivo sample (raw counts, truth in obs)."""
    return demo_small["invivo_donor1"].copy()


@pytest.fixture(scope="session")
def paul15():
    """The real Paul et al. 2015 mouse myeloid progenitors (raw counts, published cell types)."""
    import anndata as ad

    return ad.read_h5ad(DATA / "paul15.h5ad")
