"""Performance benchmarks: ``python -m hscseq.benchmarks [--cells 10000 50000 250000]`` prints figures.

For each size the seeded simulator writes one sample as a Cell Ranger ``.h5``; then the per-sample and
whole-dataset steps are timed and their peak traced memory is compared with the size of the sparse count
matrix. Performance is measured here, not asserted in timed tests. scVI training is timed per epoch on a
subsample (its cost is linear in cells; see README, "Performance").

``python -m hscseq.benchmarks --stages --cells 10000 40000 --out DIR`` is the scaling audit of the
whole-dataset stages: per size it simulates 3 labelled in vivo donors and 1 engineered sample, runs the whole
DAG through Snakemake with :data:`AUDIT_CONFIG` (scVI and SOLO left out, every other setting the default)
and prints, per rule after merge, wall seconds and peak RSS (Snakemake's ``benchmark:`` files) at each size
and the implied exponent ``k = log(t2 / t1) / log(N2 / N1)`` between consecutive sizes, and the same for
each step of the integration metrics (:func:`metric_steps`).
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import itertools
import logging
import os
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

logger = logging.getLogger(__name__)


def _measure(func: Callable[[], object]) -> tuple[object, float, float]:
    """Run ``func``; return its result, wall seconds and peak traced memory (MB)."""
    gc.collect()
    tracemalloc.start()
    start = time.perf_counter()
    try:
        result = func()
    finally:
        seconds = time.perf_counter() - start
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    return result, seconds, peak / 1e6


def _csr_mb(x) -> float:
    return (x.data.nbytes + x.indices.nbytes + x.indptr.nbytes) / 1e6


def run(cells: Sequence[int], *, scvi_cells: int = 10_000, seed: int = 0) -> pd.DataFrame:
    """Time every stage's core on simulated data of each size; return one row per (cells, step)."""
    from hscseq import datasets, integrate, qc, score
    from hscseq.ingest import read_sample

    rows = []
    with tempfile.TemporaryDirectory(prefix="hscseq-bench-") as tmp:
        for n in cells:
            spec = datasets.SampleSpec(
                sample=f"bench{n}",
                condition="in_vivo",
                n_cells=n,
                composition=datasets.REFERENCE_COMPOSITION,
                batch="b1",
                doublet_rate=0.0,
            )
            sim, secs, peak = _measure(lambda spec=spec: datasets.simulate([spec], seed=seed)[spec.sample])
            csr = _csr_mb(sim.X)
            rows.append({"cells": n, "step": "simulate", "seconds": secs, "peak_mb": peak, "csr_mb": csr})
            path = Path(tmp) / f"bench{n}.h5"
            datasets.write_10x_h5(sim, path)
            del sim
            adata, secs, peak = _measure(
                lambda path=path, n=n: read_sample(path, sample=f"bench{n}", species="mouse")
            )
            rows.append(
                {"cells": n, "step": "ingest (10x h5)", "seconds": secs, "peak_mb": peak, "csr_mb": csr}
            )
            _, secs, peak = _measure(lambda adata=adata: qc.qc_metrics(adata, species="mouse"))
            rows.append({"cells": n, "step": "qc metrics", "seconds": secs, "peak_mb": peak, "csr_mb": csr})
            adata.obs["batch"] = "b1"
            _, secs, peak = _measure(lambda adata=adata: integrate.normalize(adata))
            rows.append({"cells": n, "step": "normalize", "seconds": secs, "peak_mb": peak, "csr_mb": csr})
            _, secs, peak = _measure(
                lambda adata=adata: integrate.select_features(adata, n_top_genes=1000, batch_key=None)
            )
            rows.append(
                {"cells": n, "step": "HVG (seurat_v3)", "seconds": secs, "peak_mb": peak, "csr_mb": csr}
            )
            adata.uns["hscseq"] = {"merge": {"species": "mouse"}}
            lineage = score.load_signatures(species="mouse", names=["hsc_native", "erythroid", "monocyte"])
            _, secs, peak = _measure(
                lambda adata=adata, lineage=lineage: score.score_signatures(
                    adata, lineage, n_null=20, random_state=seed
                )
            )
            rows.append(
                {
                    "cells": n,
                    "step": "score 3 signatures (control score + null)",
                    "seconds": secs,
                    "peak_mb": peak,
                    "csr_mb": csr,
                }
            )
            if n <= scvi_cells:
                sub = adata[:, adata.var["highly_variable"].to_numpy()].copy()
                _, secs, peak = _measure(
                    lambda sub=sub: integrate.train_scvi(sub, batch_key="batch", max_epochs=2, seed=seed)
                )
                rows.append(
                    {"cells": n, "step": "scVI, 2 epochs", "seconds": secs, "peak_mb": peak, "csr_mb": csr}
                )
            del adata
    table = pd.DataFrame(rows)
    table["peak_over_csr"] = table["peak_mb"] / table["csr_mb"]
    return table


#: Config overlay of the stage audit: scVI training and SOLO are timed elsewhere (README, "Performance"), so
#: integration is the PCA latent and doublets are Scrublet's; every other setting is the schema default.
AUDIT_CONFIG: dict[str, dict] = {
    "qc": {"doublet_methods": ["scrublet"], "doublet_rule": "scrublet"},
    "integrate": {"method": "none"},
}

#: The rules that see the whole dataset (after merge), in DAG order.
WHOLE_DATASET_RULES = ("merge", "integrate", "cluster", "score", "fidelity", "lineages", "report")


def write_audit_data(n_cells: int, where: Path, *, n_genes: int = 5000, seed: int = 0) -> Path:
    """Simulate 3 labelled in vivo donors and 1 engineered sample (``n_cells`` in all) as h5ad files.

    Parameters
    ----------
    n_cells
        Cells in all four samples together.
    where
        Directory of the h5ad files and of the sample sheet ``samples.tsv``.
    n_genes
        Genes of the simulated universe.
    seed
        Seed of the simulator.

    Returns
    -------
    The path of the sample sheet (kept when it exists already).
    """
    from hscseq import datasets

    where.mkdir(parents=True, exist_ok=True)
    sheet = where / "samples.tsv"
    if sheet.exists():
        return sheet
    per = n_cells // 4
    specs = [*datasets.reference_specs(per, n_donors=3), datasets.engineered_spec(per)]
    rows = []
    for spec in specs:
        # one sample at a time in one seeded universe: the other slots are empty
        slots = [s if s.sample == spec.sample else dataclasses.replace(s, n_cells=0) for s in specs]
        adata = datasets.simulate(slots, n_genes=n_genes, seed=seed)[spec.sample]
        path = where / f"{spec.sample}.h5ad"
        in_vivo = spec.condition == "in_vivo"
        datasets.write_h5ad_sample(adata, path, keep_obs=["true_cell_type"] if in_vivo else [])
        rows.append(
            {"sample": spec.sample, "path": str(path), "species": spec.species, "condition": spec.condition,
             "batch": spec.batch, "donor": spec.donor, "label_column": "true_cell_type" if in_vivo else ""}
        )  # fmt: skip
        del adata
    pd.DataFrame(rows).to_csv(sheet, sep="\t", index=False)
    return sheet


def rule_benchmarks(run_dir: Path) -> pd.DataFrame:
    """One row per job from Snakemake's ``benchmark:`` files: rule, job, wall and CPU seconds, max RSS (MB).

    CPU seconds (all threads) are the sturdier figure on a machine shared with other work: wall time there
    also counts the time a job waited for a core.
    """
    rows = []
    for f in sorted((run_dir / "benchmarks").rglob("*.tsv")):
        t = pd.read_csv(f, sep="\t")
        s = float(t["s"].iloc[0])
        rss = float(pd.to_numeric(t["max_rss"], errors="coerce").fillna(0).iloc[0])
        cpu = float(pd.to_numeric(t.get("cpu_time", pd.Series([np.nan])), errors="coerce").iloc[0])
        rows.append(
            {"job": str(f.relative_to(run_dir / "benchmarks")), "s": s, "cpu_s": cpu, "max_rss_mb": rss}
        )
    df = pd.DataFrame(rows, columns=["job", "s", "cpu_s", "max_rss_mb"])
    df.insert(0, "rule", df["job"].str.split("/").str[0].str.removesuffix(".tsv"))
    return df


def _k(t1: float, t2: float, n1: int, n2: int) -> float:
    return float(np.log(t2 / t1) / np.log(n2 / n1)) if t1 > 0 and t2 > 0 else np.nan


def scaling_exponents(jobs: pd.DataFrame) -> pd.DataFrame:
    """Per rule and pair of consecutive sizes: wall seconds (``s1``, ``s2``), CPU seconds, peak RSS, and the
    exponents ``k = log(t2/t1) / log(N2/N1)`` of wall (``k``) and CPU time (``k_cpu``).

    ``jobs`` has one row per job with ``cells``, ``rule``, ``s`` and ``max_rss_mb`` (``cpu_s`` optional);
    rules with several jobs (per sample) are summed for time and maximised for memory.
    """
    jobs = jobs.assign(cpu_s=jobs["cpu_s"]) if "cpu_s" in jobs else jobs.assign(cpu_s=np.nan)
    per = (
        jobs.groupby(["rule", "cells"])
        .agg(s=("s", "sum"), cpu_s=("cpu_s", "sum"), max_rss_mb=("max_rss_mb", "max"))
        .reset_index()
    )
    sizes = sorted(per["cells"].unique())
    rows = []
    for n1, n2 in itertools.pairwise(sizes):
        a = per[per["cells"] == n1].set_index("rule")
        b = per[per["cells"] == n2].set_index("rule")
        for rule in [r for r in a.index if r in b.index]:
            t1, t2 = float(a.at[rule, "s"]), float(b.at[rule, "s"])
            c1, c2 = float(a.at[rule, "cpu_s"]), float(b.at[rule, "cpu_s"])
            rows.append(
                {"rule": rule, "n1": n1, "n2": n2, "s1": t1, "s2": t2, "k": _k(t1, t2, n1, n2),
                 "cpu1": c1, "cpu2": c2, "k_cpu": _k(c1, c2, n1, n2),
                 "rss1_mb": float(a.at[rule, "max_rss_mb"]), "rss2_mb": float(b.at[rule, "max_rss_mb"])}
            )  # fmt: skip
    order = {r: i for i, r in enumerate(WHOLE_DATASET_RULES)}
    cols = ["rule", "n1", "n2", "s1", "s2", "k", "cpu1", "cpu2", "k_cpu", "rss1_mb", "rss2_mb"]
    out = pd.DataFrame(rows, columns=cols)

    def rank(rule: str) -> float:  # DAG order; a rule's steps ("integrate: kNN") right after it
        return order.get(rule.split(":")[0], -1) + (0.5 if ":" in rule else 0.0)

    return out.sort_values(["n1", "rule"], key=lambda c: c.map(rank) if c.name == "rule" else c)


def metric_steps(integrated: Path, *, exact_silhouettes_up_to: int = 50_000) -> pd.DataFrame:
    """Seconds of each step of the integration metrics on the in vivo cells of an ``integrated.h5ad``.

    Rows ``rule`` = ``integrate: <step>`` (kNN, LISI, graph connectivity, k-means NMI/ARI, the silhouettes
    as the stage computes them, and on every cell when there are at most ``exact_silhouettes_up_to``), ``s``.
    """
    import anndata as ad
    import scib_metrics
    from scib_metrics.nearest_neighbors import NeighborsResults
    from sklearn.neighbors import NearestNeighbors

    from hscseq.integrate.metrics import DEFAULT_SILHOUETTE_MAX_CELLS, silhouette_subsample

    a = ad.read_h5ad(integrated, backed="r")
    use = (a.obs["condition"].astype(str) == "in_vivo").to_numpy()
    x = np.asarray(a.obsm["X_integrated"])[use].astype(np.float32)
    batch = pd.Categorical(a.obs["batch"].astype(str).to_numpy()[use]).codes
    labels = pd.Categorical(a.obs["reference_label"].astype(str).to_numpy()[use]).codes
    a.file.close()
    rows = []

    def timed(step: str, func: Callable[[], object]) -> object:
        start, cpu0 = time.perf_counter(), time.process_time()
        out = func()
        wall, cpu = time.perf_counter() - start, time.process_time() - cpu0
        rows.append({"rule": f"integrate: {step}", "s": wall, "cpu_s": cpu, "max_rss_mb": np.nan})
        return out

    dist, idx = timed("kNN (90, exact)", lambda: NearestNeighbors(n_neighbors=91).fit(x).kneighbors(x))
    neigh = NeighborsResults(indices=idx[:, 1:], distances=dist[:, 1:])
    timed(
        "iLISI + cLISI", lambda: (scib_metrics.ilisi_knn(neigh, batch), scib_metrics.clisi_knn(neigh, labels))
    )
    timed("graph connectivity", lambda: scib_metrics.graph_connectivity(neigh, labels))
    timed("k-means NMI/ARI", lambda: scib_metrics.nmi_ari_cluster_labels_kmeans(x, labels))
    sub = silhouette_subsample(labels, batch, max_cells=DEFAULT_SILHOUETTE_MAX_CELLS)
    timed(
        f"silhouettes (<= {DEFAULT_SILHOUETTE_MAX_CELLS} cells)",
        lambda: (
            scib_metrics.silhouette_label(x[sub], labels[sub]),
            scib_metrics.silhouette_batch(x[sub], labels[sub], batch[sub]),
        ),
    )
    if len(x) <= exact_silhouettes_up_to:
        timed(
            "silhouettes (every cell)",
            lambda: (
                scib_metrics.silhouette_label(x, labels),
                scib_metrics.silhouette_batch(x, labels, batch),
            ),
        )
    return pd.DataFrame(rows)


def stage_audit(
    cells: Sequence[int], *, out: Path, n_genes: int = 5000, cores: int = 2, seed: int = 0
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Run the whole DAG with :data:`AUDIT_CONFIG` at each size; return (jobs, exponents).

    Parameters
    ----------
    cells
        Dataset sizes (cells before QC, four samples of equal size).
    out
        Working directory: ``n{cells}/data`` (simulated inputs) and ``n{cells}/run`` (the Snakemake run).
    n_genes
        Genes of the simulated universe.
    cores
        Snakemake's ``--cores``.
    seed
        Seed of the simulator.

    Returns
    -------
    One row per job (``cells``, ``rule``, ``job``, ``s``, ``max_rss_mb``; plus :func:`metric_steps`) and
    :func:`scaling_exponents`.
    """
    import yaml

    repo = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(repo), "MPLBACKEND": "Agg"}
    jobs = []
    for n in cells:
        base = out / f"n{n}"
        sheet = write_audit_data(n, base / "data", n_genes=n_genes, seed=seed)
        run_dir = base / "run"
        run_dir.mkdir(parents=True, exist_ok=True)
        overlay = run_dir / "audit.yaml"
        overlay.write_text(yaml.safe_dump({**AUDIT_CONFIG, "samples": str(sheet)}))
        cmd = [
            sys.executable, "-m", "snakemake", "-s", str(repo / "Snakefile"), "--directory", str(run_dir),
            "--cores", str(cores), "--workflow-profile", str(repo / "workflow/profiles/local"),
            "--configfile", str(overlay),
        ]  # fmt: skip
        with open(run_dir / "snakemake.log", "w") as log:
            subprocess.run(cmd, cwd=run_dir, stdout=log, stderr=subprocess.STDOUT, env=env, check=True)
        jobs.append(rule_benchmarks(run_dir).assign(cells=n))
        jobs.append(metric_steps(run_dir / "results/integrate/integrated.h5ad").assign(cells=n))
    table = pd.concat(jobs, ignore_index=True)
    return table, scaling_exponents(table)


def main(argv: Sequence[str] | None = None) -> None:
    """Command line entry."""
    parser = argparse.ArgumentParser(prog="python -m hscseq.benchmarks", description=__doc__.split("\n")[0])
    parser.add_argument("--cells", type=int, nargs="+", default=[10_000, 50_000, 250_000])
    parser.add_argument("--scvi-cells", type=int, default=10_000, help="largest size at which scVI is timed")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--stages", action="store_true", help="scaling audit of the whole-dataset rules")
    parser.add_argument("--genes", type=int, default=5000, help="--stages: genes simulated")
    parser.add_argument("--cores", type=int, default=2, help="--stages: Snakemake's --cores")
    parser.add_argument("--out", type=Path, default=Path("/tmp/hscseq-stages"), help="--stages: work dir")
    args = parser.parse_args(argv)
    os.environ.setdefault("MPLBACKEND", "Agg")
    logging.basicConfig(level=logging.WARNING)
    if args.stages:
        jobs, table = stage_audit(
            args.cells, out=args.out, n_genes=args.genes, cores=args.cores, seed=args.seed
        )
        jobs.to_csv(args.out / "jobs.tsv", sep="\t", index=False)
        table.to_csv(args.out / "audit.tsv", sep="\t", index=False)
    else:
        table = run(args.cells, scvi_cells=args.scvi_cells, seed=args.seed)
    with pd.option_context("display.width", 160, "display.max_rows", 200):
        print(table.to_string(index=False, float_format=lambda x: f"{x:.2f}"))


if __name__ == "__main__":
    main()
