"""Time the score stage with one scoring method (for farm-bench; README Performance, session 18).

``python tests/benchmarks/score_stage.py N METHOD``: the first call simulates two mouse reference
donors and an engineered sample of N // 4 cells each (``hscseq.datasets``, 2,000 genes), normalises
them and caches the object in the temporary directory; every call runs the score stage's ``run_score``
on it (full mouse library, 100 null sets, identity) with ``method`` METHOD (``control`` or ``aucell``).
"""

from __future__ import annotations

import logging
import sys
import tempfile
import warnings
from pathlib import Path

import anndata as ad
import numpy as np
import scanpy as sc

from hscseq import datasets, score
from hscseq._utils import write_h5ad


def main() -> None:
    warnings.simplefilter("ignore")
    logging.disable(logging.WARNING)
    n, method = int(sys.argv[1]), sys.argv[2]
    cache = Path(tempfile.gettempdir()) / f"hscseq-score-bench-{n}.h5ad"
    if not cache.exists():
        sims = datasets.simulate(
            [*datasets.reference_specs(n // 4), datasets.engineered_spec(n // 4)], seed=0
        )
        a = ad.concat(list(sims.values()), join="inner", index_unique="-")
        a.layers["counts"] = a.X.copy()
        sc.pp.normalize_total(a, target_sum=1e4)
        sc.pp.log1p(a)
        in_vivo = (a.obs["condition"] == "in_vivo").to_numpy()
        a.obs["reference_label"] = np.where(in_vivo, a.obs["true_cell_type"].astype(str), "")
        a.uns["hscseq"] = {"merge": {"species": "mouse"}}
        write_h5ad(a, cache)
    with tempfile.TemporaryDirectory() as d:
        score.run_score(
            integrated=str(cache),
            scores=f"{d}/s.h5ad",
            programme=f"{d}/p.tsv",
            figure=f"{d}/f.png",
            settings={"method": method, "min_coverage": 0.4},
        )


if __name__ == "__main__":
    main()
