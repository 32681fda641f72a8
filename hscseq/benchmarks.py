"""Performance benchmarks: ``python -m hscseq.benchmarks [--cells 10000 50000 250000]`` prints figures.

For each size the seeded simulator writes one sample as a Cell Ranger ``.h5``; then the per-sample and
whole-dataset steps are timed and their peak traced memory is compared with the size of the sparse count
matrix. Performance is measured here, not asserted in timed tests. scVI training is timed per epoch on a
subsample (its cost is linear in cells; see README, "Performance").
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import tempfile
import time
import tracemalloc
from collections.abc import Callable, Sequence
from pathlib import Path

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
                    "step": "score 3 signatures (AUCell + null)",
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


def main(argv: Sequence[str] | None = None) -> None:
    """Command line entry."""
    parser = argparse.ArgumentParser(prog="python -m hscseq.benchmarks", description=__doc__.split("\n")[0])
    parser.add_argument("--cells", type=int, nargs="+", default=[10_000, 50_000, 250_000])
    parser.add_argument("--scvi-cells", type=int, default=10_000, help="largest size at which scVI is timed")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    os.environ.setdefault("MPLBACKEND", "Agg")
    logging.basicConfig(level=logging.WARNING)
    table = run(args.cells, scvi_cells=args.scvi_cells, seed=args.seed)
    with pd.option_context("display.width", 160, "display.max_rows", 200):
        print(table.to_string(index=False, float_format=lambda x: f"{x:.2f}"))


if __name__ == "__main__":
    main()
