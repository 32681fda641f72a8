"""End-to-end benchmark: the hscseq DAG (default config) vs the plain scanpy + scVI script, same counts.

    python tests/benchmarks/run.py --cells 10000 50000 [--cores 2] [--out /tmp/hscseq-bench]

Per N: the simulator writes 3 in vivo donors (one batch each, labelled) and 1 engineered sample
(``--samples`` sets the number of donors + 1) with ``--genes`` genes and a strong batch effect, as h5ad files;
then Snakemake runs the whole DAG with config/config.yaml (only ``samples`` overridden) and the user script
(``user_script.py``) runs on the same files. Per-rule wall time and max RSS come from Snakemake's
``benchmark:`` files (a job's start = file time - its seconds, to sum the RSS of jobs running at once); the
script's peak RSS from ``/usr/bin/time -v``. Integration quality of both: scib-metrics (iLISI, graph
connectivity, silhouette batch; cLISI, silhouette label, NMI, ARI; total = 0.4 batch + 0.6 bio, as
scib-metrics' Benchmarker) on the in vivo cells each kept, labelled by the simulator's truth; the
unintegrated PCA of the script's HVGs is the floor. Prints one table and writes ``bench.tsv`` and
``rules.tsv`` to ``--out``. Not collected by pytest (``tests/benchmarks`` is in ``norecursedirs``).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from hscseq import benchmarks, datasets  # noqa: E402
from hscseq.integrate import integration_metrics_core  # noqa: E402

BATCH = ("ilisi", "graph_connectivity", "silhouette_batch")
BIO = ("clisi", "silhouette_label", "nmi", "ari")
CHUNK = 4000  # cells simulated at once (the simulator holds cells x genes log-means densely)


def scib_total(x: np.ndarray, batch: np.ndarray, labels: np.ndarray) -> float:
    m = integration_metrics_core(x, batch, labels)
    return 0.4 * float(np.mean([m[k] for k in BATCH])) + 0.6 * float(np.mean([m[k] for k in BIO]))


def write_data(n_cells: int, n_samples: int, n_genes: int, batch_effect: float, where: Path) -> Path:
    """Simulate ``n_samples`` samples of ``n_cells`` in total as h5ad files; return the sample sheet."""
    import anndata as ad

    where.mkdir(parents=True, exist_ok=True)
    sheet = where / "samples.tsv"
    if sheet.exists():
        return sheet
    per = n_cells // n_samples
    specs = [*datasets.reference_specs(per, n_donors=n_samples - 1), datasets.engineered_spec(per)]
    n_chunks = -(-per // CHUNK)
    rows = []
    for k, spec in enumerate(specs):
        parts = []
        for c in range(n_chunks):
            # one chunk at a time (the simulator holds cells x genes log-means densely), in one seeded
            # universe: every call lists every (sample, chunk) slot so that genes, programmes and batch
            # effects are the same and each slot draws its own cells; all slots but this one are empty
            slots = [
                dataclasses.replace(s, sample=f"_{i}_{j}", n_cells=0)
                for i, s in enumerate(specs)
                for j in range(n_chunks)
            ]
            slots[k * n_chunks + c] = dataclasses.replace(spec, n_cells=min(CHUNK, per - c * CHUNK))
            part = datasets.simulate(slots, n_genes=n_genes, batch_effect=batch_effect, seed=0)[spec.sample]
            part.obs_names = [f"c{c}_{b}" for b in part.obs_names]
            parts.append(part)
        adata = ad.concat(parts, merge="same", uns_merge="first")
        path = where / f"{spec.sample}.h5ad"
        keep = ["true_cell_type"] if spec.condition == "in_vivo" else []
        datasets.write_h5ad_sample(adata, path, keep_obs=keep)
        rows.append(
            {
                "sample": spec.sample,
                "path": str(path),
                "species": spec.species,
                "condition": spec.condition,
                "batch": spec.batch,
                "donor": spec.donor,
                "label_column": "true_cell_type" if spec.condition == "in_vivo" else "",
            }
        )
    pd.DataFrame(rows).to_csv(sheet, sep="\t", index=False)
    return sheet


def rule_benchmarks(run_dir: Path) -> pd.DataFrame:
    """:func:`hscseq.benchmarks.rule_benchmarks` plus each job's start and end (end = the file's time)."""
    df = benchmarks.rule_benchmarks(run_dir)
    df["end"] = [(run_dir / "benchmarks" / job).stat().st_mtime for job in df["job"]]
    df["start"] = df["end"] - df["s"]
    return df


def concurrent_peak(jobs: pd.DataFrame) -> float:
    """Largest sum of max RSS over jobs whose [start, end] overlap (an upper bound on the DAG's peak)."""
    best = 0.0
    for t in jobs["start"]:
        best = max(best, jobs.loc[(jobs["start"] <= t) & (jobs["end"] > t), "max_rss_mb"].sum())
    return float(best)


def timed(cmd: list[str], cwd: Path, log: Path, env: dict) -> tuple[int, float, float]:
    """Run ``cmd`` under /usr/bin/time -v; return (exit code, wall s, peak RSS MB of the largest process)."""
    start = time.perf_counter()
    with open(log, "w") as fh:
        rc = subprocess.call(
            ["/usr/bin/time", "-v", *cmd], cwd=cwd, stdout=fh, stderr=subprocess.STDOUT, env=env
        )
    wall = time.perf_counter() - start
    m = re.findall(r"Maximum resident set size \(kbytes\): (\d+)", log.read_text())
    return rc, wall, (int(m[-1]) / 1024 if m else float("nan"))


def run_pipeline(sheet: Path, run_dir: Path, cores: int, env: dict) -> dict:
    run_dir.mkdir(parents=True, exist_ok=True)
    overlay = run_dir / "bench.yaml"
    overlay.write_text(f"samples: {sheet}\n")
    cmd = [
        sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--cores", str(cores),
        "--workflow-profile", str(REPO / "workflow/profiles/local"), "--configfile", str(overlay),
    ]  # fmt: skip
    rc, wall, _ = timed(cmd, run_dir, run_dir / "snakemake.log", env)
    out = {"pipeline_status": "ok" if rc == 0 else f"failed (exit {rc}; see {run_dir}/snakemake.log)"}
    out["pipeline_s"] = wall
    if (run_dir / "benchmarks").exists():
        jobs = rule_benchmarks(run_dir)
        jobs.to_csv(run_dir / "rules.tsv", sep="\t", index=False)
        out["pipeline_largest_job_mb"] = float(jobs["max_rss_mb"].max())
        out["pipeline_concurrent_mb"] = concurrent_peak(jobs)
        out["pipeline_jobs"] = jobs
    integrated = run_dir / "results/integrate/integrated.h5ad"
    if integrated.exists():
        import anndata as ad

        a = ad.read_h5ad(integrated, backed="r")
        obs = a.obs
        use = (obs["condition"].astype(str) == "in_vivo").to_numpy()
        x = np.asarray(a.obsm["X_integrated"])[use]
        out["pipeline_scib"] = scib_total(
            x, obs["batch"].astype(str).to_numpy()[use], obs["reference_label"].astype(str).to_numpy()[use]
        )
        params = a.uns.get("integrated", {}).get("params", {})
        out["pipeline_device"] = str(params.get("accelerator", "?"))
        out["pipeline_epochs"] = params.get("epochs_trained")
        a.file.close()
    return out


def run_script(sheet: Path, run_dir: Path, env: dict) -> dict:
    import anndata as ad

    run_dir.mkdir(parents=True, exist_ok=True)
    res = run_dir / "script.h5ad"
    cmd = [sys.executable, str(Path(__file__).with_name("user_script.py")), str(sheet), str(res)]
    rc, wall, rss = timed(cmd, run_dir, run_dir / "script.log", env)
    log = (run_dir / "script.log").read_text()
    if rc != 0:
        oom = rc in (-9, 137) or "MemoryError" in log or "Killed" in log or "signal 9" in log
        return {"script_status": "out of memory" if oom else f"failed (exit {rc})", "script_s": wall,
                "script_mb": rss}  # fmt: skip
    a = ad.read_h5ad(res)
    use = (a.obs["condition"] == "in_vivo").to_numpy()
    batch = a.obs["batch"].astype(str).to_numpy()[use]
    labels = a.obs["label"].astype(str).to_numpy()[use]
    return {
        "script_status": "ok",
        "script_s": wall,
        "script_mb": rss,
        "script_scib": scib_total(a.obsm["X_scVI"][use], batch, labels),
        "pca_scib": scib_total(a.obsm["X_pca"][use], batch, labels),
        "script_device": a.uns["timing"]["device"],
        "script_epochs": int(a.uns["timing"]["epochs"]),
        "script_scvi_s": float(a.uns["timing"]["scvi_s"]),
    }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cells", type=int, nargs="+", default=[10_000])
    p.add_argument(
        "--samples", type=int, default=4, help="samples per dataset (in vivo donors + 1 engineered)"
    )
    p.add_argument("--genes", type=int, default=15_000, help="genes (the simulator's gene pool allows ~15k)")
    p.add_argument("--batch-effect", type=float, default=0.5)
    p.add_argument("--cores", type=int, default=os.cpu_count() or 2)
    p.add_argument("--out", type=Path, default=Path("/tmp/hscseq-bench"))
    p.add_argument("--skip", choices=["pipeline", "script"], nargs="*", default=[])
    a = p.parse_args(argv)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.setdefault("NUMBA_CACHE_DIR", str(REPO / ".venv" / "numba-cache"))
    env.setdefault("MPLBACKEND", "Agg")
    try:
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    except ImportError:  # pragma: no cover
        device = "?"
    rows, jobs = [], []
    for n in a.cells:
        base = a.out / f"n{n}"
        t0 = time.perf_counter()
        sheet = write_data(n, a.samples, a.genes, a.batch_effect, base / "data")
        row = {"cells": n, "samples": a.samples, "genes": a.genes, "cores": a.cores, "device": device,
               "simulate_s": round(time.perf_counter() - t0, 1)}  # fmt: skip
        if "pipeline" not in a.skip:  # first: a crash at scale shows before the script's hour
            res = run_pipeline(sheet, base / "pipeline", a.cores, env)
            j = res.pop("pipeline_jobs", None)
            if j is not None:
                jobs.append(j.assign(cells=n))
            row.update(res)
        if "script" not in a.skip:
            row.update(run_script(sheet, base / "script", env))
        if "pipeline_s" in row and row.get("script_status") == "ok":
            row["time_ratio"] = row["pipeline_s"] / row["script_s"]
            row["rss_ratio_largest"] = row.get("pipeline_largest_job_mb", np.nan) / row["script_mb"]
            row["rss_ratio_concurrent"] = row.get("pipeline_concurrent_mb", np.nan) / row["script_mb"]
        rows.append(row)
        table = pd.DataFrame(rows)
        a.out.mkdir(parents=True, exist_ok=True)
        table.to_csv(a.out / "bench.tsv", sep="\t", index=False)
        if jobs:
            pd.concat(jobs).to_csv(a.out / "rules.tsv", sep="\t", index=False)
        with pd.option_context("display.width", 250, "display.max_columns", 50):
            print(table.round(3).T.to_string(header=False), flush=True)
    print(f"wrote {a.out / 'bench.tsv'} and {a.out / 'rules.tsv'}")


if __name__ == "__main__":
    main()
