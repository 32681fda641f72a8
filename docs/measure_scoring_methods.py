"""Control-gene score versus AUCell on real cells: the measurement behind ``score.method``'s default.

Run from the repository root::

    python docs/measure_scoring_methods.py [--pbmc /path/to/human_pbmc_donorA_unlabelled.h5ad]

(about a minute on 2 cores). Two real datasets, both methods, the shipped signature lists unchanged:

- paul15 (``tests/data/paul15.h5ad``, mouse, published clusters): one-vs-rest AUROC of each lineage signature
  for its class (``resources/signatures/PROVENANCE.md``, "Measured on paul15", same settings);
- human PBMCs (unlabelled; ``../shared/data``): the class of a cell is its lineage from the HematoMap profile
  mapping (whole-transcriptome correlation with the shipped marrow profiles, not the signature genes), and
  each lineage signature's AUROC for that class is printed.
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import scanpy as sc

from hscseq import score
from hscseq.fidelity.profile_validation import profile_lineages
from hscseq.fidelity.profiles import map_to_profiles

REPO = Path(__file__).resolve().parents[1]
METHODS = ("control", "aucell")
#: paul15: signature -> published cell_type classes
PAUL15 = {
    "erythroid": ["Ery"],
    "gmp_myeloid": ["Mo", "Neu", "GMP"],
    "monocyte": ["Mo"],
    "megakaryocyte": ["Mk"],
    "baso_mast_eo": ["Baso", "Eos"],
    "dc": ["DC"],
}
#: PBMC: signature -> HematoMap lineages
PBMC = {"b": ["B"], "t_nk": ["T", "NK"], "monocyte": ["myeloid"], "dc": ["dendritic"]}


def auroc(y: np.ndarray, s: np.ndarray) -> float:
    """Mann-Whitney AUROC (ties count one half)."""
    y = np.asarray(y, dtype=bool)
    ranks = pd.Series(s).rank().to_numpy()
    n1, n0 = y.sum(), (~y).sum()
    return float((ranks[y].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def table(
    raw: ad.AnnData, classes: np.ndarray, pairs: dict, *, species: str, min_coverage: float
) -> pd.DataFrame:
    """AUROC per signature (rows) and method (columns)."""
    library = score.load_signatures(species=species, names=list(pairs))
    out = {}
    for method in METHODS:
        a = raw.copy()
        sc.pp.normalize_total(a, target_sum=1e4)
        sc.pp.log1p(a)
        score.score_signatures(
            a, library, method=method, species=species, n_null=30, min_coverage=min_coverage, random_state=0
        )
        out[method] = {
            f"{sig} vs {'+'.join(c)} ({np.isin(classes, c).sum()} cells)": auroc(
                np.isin(classes, c), a.obs[f"score_{sig}"].to_numpy()
            )
            for sig, c in pairs.items()
        }
    return pd.DataFrame(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--pbmc", default=str(REPO.parent / "shared" / "data" / "human_pbmc_donorA_unlabelled.h5ad")
    )
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    paul15 = ad.read_h5ad(REPO / "tests" / "data" / "paul15.h5ad")
    cell_type = paul15.obs["cell_type"].astype(str).to_numpy()
    print("paul15 (published classes):")
    print(table(paul15, cell_type, PAUL15, species="mouse", min_coverage=0.3).round(3).to_string())
    pbmc = ad.read_h5ad(args.pbmc)
    lineage = profile_lineages(map_to_profiles(pbmc, layer=None, random_state=0, copy=True))
    print("human PBMCs (HematoMap profile lineages):")
    print(table(pbmc, lineage, PBMC, species="human", min_coverage=0.5).round(3).to_string())


if __name__ == "__main__":
    main()
