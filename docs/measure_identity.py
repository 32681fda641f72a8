"""Print the HSC-identity figures quoted in README (issue #13): simulator look-alikes and paul15.

Run from the repository root: ``python docs/measure_identity.py [--seed N] [--species human]`` (about a
minute on 2 cores);
the simulator with both scoring methods (``control`` is the default), paul15 with both.
Same settings as ``tests/test_score.py`` (identity_stage fixture and the paul15 early-progenitor test).
"""

from __future__ import annotations

import argparse
import tempfile
import warnings
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import scanpy as sc

from hscseq import datasets, score
from hscseq._utils import write_h5ad
from hscseq.score import identity

REPO = Path(__file__).resolve().parents[1]


def auroc(y: np.ndarray, s: np.ndarray) -> float:
    """Mann-Whitney AUROC (ties count one half)."""
    y = np.asarray(y, dtype=bool)
    ranks = pd.Series(s).rank().to_numpy()
    n1, n0 = y.sum(), (~y).sum()
    return float((ranks[y].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def simulator(seed: int, method: str, species: str = "mouse") -> None:
    """The identity scenario (the tests' sizes: mouse 600 engineered / 400 per donor, human 400 / 300)."""
    n, n_ref, n_null = (600, 400, 60) if species == "mouse" else (400, 300, 40)
    specs = datasets.identity_specs(n, n_reference=n_ref, species=species)
    samples = datasets.simulate_identity(specs, seed=seed)
    adata = ad.concat(list(samples.values()), join="inner", index_unique=None)
    adata.obs_names = [f"{s}:{b}" for s, b in zip(adata.obs["sample"], adata.obs_names, strict=True)]
    adata.layers["counts"] = adata.X.copy()
    sc.pp.normalize_total(adata, target_sum=1e4)
    sc.pp.log1p(adata)
    in_vivo = (adata.obs["condition"] == "in_vivo").to_numpy()
    adata.obs["reference_label"] = np.where(in_vivo, adata.obs["true_cell_type"].astype(str), "")
    adata.uns["hscseq"] = {"merge": {"species": species}}
    d = Path(tempfile.mkdtemp())
    write_h5ad(adata, d / "clustered.h5ad")
    score.run_score(
        integrated=str(d / "clustered.h5ad"),
        scores=str(d / "scores.h5ad"),
        programme=str(d / "hsc_programme.tsv"),
        figure=str(d / "scores.png"),
        settings={"n_null": n_null, "n_bootstrap": 200, "min_coverage": 0.4, "method": method},
    )
    obs = ad.read_h5ad(d / "clustered.h5ad").obs.join(ad.read_h5ad(d / "scores.h5ad").obs)
    eng = obs[obs["condition"] == "engineered"]
    ct = eng["true_cell_type"].astype(str).to_numpy()
    keep = np.isin(ct, ["HSC", *datasets.LOOKALIKE_TYPES])
    y = ct[keep] == "HSC"
    look = np.isin(ct, datasets.LOOKALIKE_TYPES)
    call = eng["hsc_identity"].astype(str).to_numpy()
    print(f"simulator ({species}) seed {seed}, {method} score")
    for col in ("score_hsc_native", "hsc_score"):
        print(f"  HSC vs look-alike AUROC, {col}: {auroc(y, eng[col].to_numpy()[keep]):.3f}")
    print(f"  look-alikes called HSC-like: {np.mean(call[look] == 'HSC-like'):.3f}")
    print(f"  engineered HSCs called HSC-like: {np.mean(call[ct == 'HSC'] == 'HSC-like'):.3f}")
    iv = obs[obs["condition"] == "in_vivo"]
    hsc = (iv["true_cell_type"] == "HSC").to_numpy()
    iv_call = iv["hsc_identity"].astype(str).to_numpy()
    print(f"  in vivo HSCs HSC-like: {np.mean(iv_call[hsc] == 'HSC-like'):.3f}")
    print(f"  other in vivo cells HSC-like: {np.mean(iv_call[~hsc] == 'HSC-like'):.4f}")
    print(pd.crosstab(eng["true_cell_type"], eng["hsc_identity"]).to_string())


def paul15() -> None:
    library = score.load_signatures(species="mouse")
    names = ["hsc_native", "haematopoietic", "endothelial", "eht"]
    names += [n for n, s in library.items() if s.role == "lineage"]
    for method in ("control", "aucell"):
        adata = ad.read_h5ad(REPO / "tests" / "data" / "paul15.h5ad")
        adata.obs["sample"] = "paul15"
        adata.obs["condition"] = "in_vivo"
        sc.pp.normalize_total(adata, target_sum=1e4)
        sc.pp.log1p(adata)
        score.score_signatures(
            adata, {n: library[n] for n in names}, method=method, n_null=30, min_coverage=0.3, species="mouse"
        )
        identity.hsc_identity(adata, species="mouse", n_bootstrap=50)
        cluster = adata.obs["paul15_clusters"].astype(str)
        early = cluster.isin(["7MEP", "9GMP", "10GMP"]).to_numpy()
        committed = cluster.str.contains("Ery|Mo|Neu").to_numpy() & ~early
        keep = early | committed
        value = auroc(early[keep], adata.obs["hsc_identity_score"].to_numpy()[keep])
        print(f"paul15 early (7MEP, 9GMP, 10GMP) vs committed (Ery, Mo, Neu), {method}: AUROC {value:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--species", choices=["mouse", "human"], default="mouse")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    for method in ("control", "aucell"):
        simulator(args.seed, method, args.species)
    if args.species == "mouse":
        paul15()


if __name__ == "__main__":
    main()
