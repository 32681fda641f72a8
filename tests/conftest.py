"""Shared fixtures. Every toy dataset comes from the one seeded simulator, hscseq.datasets."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

_ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("NUMBA_CACHE_DIR", str(_ROOT / ".venv" / "numba-cache"))
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


@dataclass
class WorkflowRun:
    """A finished local run of the whole DAG on tiny simulated data."""

    directory: Path  # the --directory of the run (holds results/, logs/, benchmarks/)
    command: list[str]  # the snakemake argv used (no executor options)
    sheet: Path  # the sample sheet (absolute paths)
    data: Path  # where the simulated inputs and truth.tsv.gz are


def snakemake_command(workdir: Path, sheet: Path, *extra: str) -> list[str]:
    """The argv that runs the whole DAG in ``workdir`` with the test overlay config."""
    return [
        sys.executable,
        "-m",
        "snakemake",
        "--snakefile",
        str(REPO / "Snakefile"),
        "--directory",
        str(workdir),
        "--cores",
        "2",
        "--configfile",
        str(DATA / "workflow_config.yaml"),
        "--config",
        f"samples={sheet}",
        *extra,
    ]


@pytest.fixture(scope="session")
def workflow_run(tmp_path_factory) -> WorkflowRun:
    """Run the whole DAG once through Snakemake on the demo scenario at 25% scale.

    Runs from an unrelated working directory with absolute paths in the sample sheet, as a user would.
    """
    from hscseq import datasets

    base = tmp_path_factory.mktemp("workflow")
    data = base / "data"
    sheet_df = datasets.write_demo(data, scale=0.25, seed=1)
    sheet = base / "samples.tsv"
    sheet_df.to_csv(sheet, sep="\t", index=False)
    workdir = base / "run"
    command = snakemake_command(workdir, sheet)
    proc = subprocess.run(command, cwd=base, capture_output=True, text=True, timeout=1500, check=False)
    if proc.returncode != 0:
        logs = "\n".join(
            f"--- {p}\n{p.read_text()[-3000:]}" for p in sorted((workdir / "logs").rglob("*.log"))
        )
        pytest.fail(f"snakemake failed ({proc.returncode}):\n{proc.stderr[-6000:]}\n{logs}")
    return WorkflowRun(directory=workdir, command=command, sheet=sheet, data=data)
