"""Resume after a crash and determinism, sharing one extra run of the tiny workflow.

The run is SIGKILLed (the whole Snakemake process group) while a QC job runs, resumed, SIGKILLed again
while integration runs, and resumed to the end. Jobs that had finished are not recomputed (their outputs and
benchmark files keep their mtimes), no output of a killed job is left in place, and the final tables equal
those of the uninterrupted session run (``workflow_run``): the same config and seed give the same labels,
scores, scorecard and provenance.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from .conftest import snakemake_command

TABLES = [
    *(
        f"results/tables/{name}"
        for name in (
            "cells.tsv.gz",
            "scorecard.tsv",
            "composition.tsv",
            "hsc_programme.tsv",
            "hsc_missing_genes.tsv",
            "signature_coverage.tsv",
            "qc_summary.tsv",
            "markers.tsv",
            "integration_metrics.tsv",
            "de.tsv",
            "fidelity_controls.tsv",
            "timecourse.tsv",
        )
    ),
    "results/provenance.json",
]


def _running(workdir: Path, stage: str) -> bool:
    """A job of ``stage`` runs: its log exists (written when the job starts), its benchmark not yet."""
    logs = list(workdir.glob(f"logs/{stage}/*.log")) or list(workdir.glob(f"logs/{stage}.log"))
    for log in logs:
        bench = workdir / "benchmarks" / log.relative_to(workdir / "logs").with_suffix(".tsv")
        if log.stem != "summary" and not bench.exists():
            return True
    return False


def _kill_while(cmd: list[str], cwd: Path, workdir: Path, stage: str, timeout: float = 1800) -> None:
    """Start ``cmd``; SIGKILL its whole process group while a job of ``stage`` runs."""
    proc = subprocess.Popen(
        cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if _running(workdir, stage):
                time.sleep(1.0)  # let the job get under way
                if _running(workdir, stage):
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(timeout=60)
                    return
            if proc.poll() is not None:
                pytest.fail(f"snakemake ended ({proc.returncode}) before a {stage} job ran")
            time.sleep(0.2)
        pytest.fail(f"no {stage} job ran within {timeout} s")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _finished(workdir: Path) -> dict[str, float]:
    """mtime of every output of a finished job (its benchmark file is written once the job succeeded)."""
    out = {}
    for bench in workdir.glob("benchmarks/**/*.tsv"):
        out[str(bench.relative_to(workdir))] = bench.stat().st_mtime_ns
    for pattern in ("results/ingest/*.h5ad", "results/qc/*.h5ad", "results/qc/*.summary.tsv"):
        for path in workdir.glob(pattern):
            stage, sample = path.parent.name, path.name.split(".")[0]
            if (workdir / "benchmarks" / stage / f"{sample}.tsv").exists():
                out[str(path.relative_to(workdir))] = path.stat().st_mtime_ns
    return out


def _no_half_written_output(workdir: Path) -> None:
    """Every h5ad under its real name opens (outputs are renamed into place only when complete)."""
    import h5py

    for path in workdir.glob("results/**/*.h5ad"):
        with h5py.File(path, "r") as f:
            assert "obs" in f and "X" in f, path


def _content(path: Path) -> bytes:
    return path.read_bytes()  # gzip tables too: their headers hold no time stamp or file name


def _unlock(cmd: list[str], cwd: Path) -> None:
    """A SIGKILLed Snakemake leaves its lock behind: ``--unlock`` (same options) before resuming."""
    proc = subprocess.run(
        [*cmd, "--unlock"], cwd=cwd, capture_output=True, text=True, timeout=600, check=False
    )
    assert proc.returncode == 0, proc.stderr[-3000:]


def resume_and_compare(reference: Path, sheet: Path, tmp_path: Path) -> None:
    """Kill during QC, resume, kill during integration, resume to the end; compare with ``reference``."""
    workdir = tmp_path / "run"
    cmd = snakemake_command(workdir, sheet, "--rerun-incomplete")

    _kill_while(cmd, tmp_path, workdir, "qc")
    _no_half_written_output(workdir)
    done_1 = _finished(workdir)
    assert any(k.startswith("benchmarks/ingest/") for k in done_1), "some ingest job finished before the kill"

    _unlock(cmd, tmp_path)
    _kill_while(cmd, tmp_path, workdir, "integrate")
    _no_half_written_output(workdir)
    done_2 = _finished(workdir)
    for path, mtime in done_1.items():
        assert done_2.get(path) == mtime, f"{path} was recomputed after the first kill"
    assert any(k.startswith("benchmarks/qc/") for k in done_2), "QC finished before integration"

    _unlock(cmd, tmp_path)
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=1800, check=False)
    assert proc.returncode == 0, proc.stderr[-4000:]
    done_3 = _finished(workdir)
    for path, mtime in done_2.items():
        assert done_3.get(path) == mtime, f"{path} was recomputed after the second kill"

    for table in TABLES:
        a, b = reference / table, workdir / table
        assert _content(b) == _content(a), f"{table} differs from the uninterrupted run with the same seed"
    provenance = json.loads((workdir / "results/provenance.json").read_text())
    samples = {line.split("\t")[0] for line in sheet.read_text().splitlines()[1:]}
    assert set(provenance["inputs"]) == samples
    import h5py

    with h5py.File(workdir / "results/anndata/integrated.h5ad", "r") as f:
        stored = f["uns/hscseq/provenance"][()]
    assert json.loads(stored.decode() if isinstance(stored, bytes) else stored) == provenance


@pytest.mark.workflow
@pytest.mark.timeout(3600)
def test_killed_run_resumes_without_recomputing_and_matches_an_uninterrupted_run(workflow_run, tmp_path):
    resume_and_compare(workflow_run.directory, workflow_run.sheet, tmp_path)
