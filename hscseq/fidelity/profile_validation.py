"""Validation of the profile-only human path (no in vivo samples): lineage composition against a truth.

Two checks (README, "Human runs without in vivo samples"): cells simulated from the shipped HematoMap
profiles (planted composition) and real human PBMCs against marker-gene fractions (rule fixed in README
before measuring). Command line::

    python -m hscseq.fidelity.profile_validation pbmc /work/shared/data/human_pbmc_donorA_unlabelled.h5ad
    python -m hscseq.fidelity.profile_validation simulator --seeds 3
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Mapping, Sequence

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from hscseq import lineages
from hscseq.fidelity.profiles import map_to_profiles

logger = logging.getLogger(__name__)

#: Marker genes of the independent PBMC check (fixed in README before measuring).
PBMC_MARKERS: dict[str, tuple[str, ...]] = {
    "B": ("MS4A1", "CD79A", "CD79B"),
    "T": ("CD3D", "CD3E", "CD3G"),
    "NK": ("GNLY", "NKG7", "KLRD1", "KLRF1"),
    "monocyte": ("LYZ", "CD14", "S100A8", "S100A9", "FCN1"),
}
#: Marker class -> lineage of the HematoMap roll-up.
CLASS_TO_LINEAGE = {"B": "B", "T": "T", "NK": "NK", "monocyte": "myeloid"}


def marker_classes(
    adata: ad.AnnData,
    markers: Mapping[str, Sequence[str]] = PBMC_MARKERS,
    *,
    min_score: float = 0.5,
    t_override: float = 0.5,
) -> np.ndarray:
    """Per cell: the class with the highest mean log1p(CP10k) marker expression (README rule); "other" below
    ``min_score``; NK-highest cells with a T mean >= ``t_override`` are T."""
    x = sp.csr_matrix(adata.X, dtype=np.float64)
    lib = np.asarray(x.sum(axis=1)).ravel()
    norm = sp.diags(1e4 / np.maximum(lib, 1)) @ x
    norm.data = np.log1p(norm.data)
    names = list(markers)
    scores = np.zeros((adata.n_obs, len(names)))
    for j, c in enumerate(names):
        idx = [adata.var_names.get_loc(g) for g in markers[c] if g in adata.var_names]
        if len(idx) < len(markers[c]):
            logger.warning("%s: %d of %d marker genes measured", c, len(idx), len(markers[c]))
        scores[:, j] = np.asarray(norm[:, idx].mean(axis=1)).ravel() if idx else 0.0
    best = np.array(names, dtype=object)[scores.argmax(axis=1)]
    if "NK" in names and "T" in names:
        best[(best == "NK") & (scores[:, names.index("T")] >= t_override)] = "T"
    best[scores.max(axis=1) < min_score] = "other"
    return best


def profile_lineages(mapped: ad.AnnData) -> np.ndarray:
    """Lineage of each cell mapped by the profile path (map_to_profiles, then the HematoMap roll-up)."""
    return lineages.to_lineage(
        mapped.obs["predicted_label"].astype(str).to_numpy(), lineages.default_hierarchy()
    )


def profile_identity(mapped: ad.AnnData) -> pd.Series:
    """The profile scorecard's identity (share of cells confidently mapped at type or lineage level), CI."""
    from hscseq.fidelity.profiles import _profile_scorecard
    from hscseq.fidelity.settings import FidelitySettings

    obs = mapped.obs.assign(sample="pbmc", condition="organoid")
    table, _ = _profile_scorecard(ad.AnnData(obs=obs, uns=mapped.uns, obsm=mapped.obsm), FidelitySettings())
    return table.iloc[0][["identity", "identity_ci_low", "identity_ci_high"]]


def compare_pbmc(mapped: ad.AnnData) -> pd.DataFrame:
    """Per class: marker fraction, profile-path lineage fraction, absolute error (all cells in both)."""
    truth = marker_classes(mapped)
    lineage = profile_lineages(mapped)
    rows = []
    for c, lin in CLASS_TO_LINEAGE.items():
        a, b = float(np.mean(truth == c)), float(np.mean(lineage == lin))
        rows.append(
            {"class": c, "lineage": lin, "marker_fraction": a, "profile_fraction": b, "abs_error": abs(a - b)}
        )
    return pd.DataFrame(rows)


def compare_simulator(seed: int = 0, n_cells: int = 400) -> pd.DataFrame:
    """Per simulated organoid (one per week): planted vs profile-path lineage fractions and their MAE."""
    from hscseq import datasets

    specs = [s for s in datasets.organoid_specs_from_profiles(n_cells, seed=seed) if s.replicate == "r1"]
    sims = datasets.simulate_organoids(specs, seed=seed)
    hier = {**lineages.default_hierarchy(), "endothelial_like": lineages.NOVEL}
    rows = []
    for name, a in sims.items():
        a = a[~a.obs["is_doublet"].to_numpy() & ~a.obs["is_low_quality"].to_numpy()].copy()
        planted = pd.Series(lineages.to_lineage(a.obs["true_cell_type"].astype(str), hier)).value_counts(
            normalize=True
        )
        mapped = map_to_profiles(a, layer=None, random_state=seed, copy=True)
        measured = pd.Series(profile_lineages(mapped)).value_counts(normalize=True)
        idx = planted.index.union(measured.index)
        err = (planted.reindex(idx).fillna(0) - measured.reindex(idx).fillna(0)).abs()
        rows.append(
            {
                "seed": seed,
                "sample": name,
                "n_cells": a.n_obs,
                "mae": float(err.mean()),
                "max_error": float(err.max()),
            }
        )
    return pd.DataFrame(rows)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m hscseq.fidelity.profile_validation", description=__doc__.split("\n")[0]
    )
    sub = parser.add_subparsers(dest="what", required=True)
    p = sub.add_parser("pbmc")
    p.add_argument("h5ad")
    s = sub.add_parser("simulator")
    s.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    pd.set_option("display.width", 160)
    if args.what == "pbmc":
        mapped = map_to_profiles(ad.read_h5ad(args.h5ad), layer=None, random_state=0, copy=True)
        table = compare_pbmc(mapped)
        print(table.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
        print(f"MAE over B, T, NK, monocyte: {table['abs_error'].mean():.4f}")
        ident = profile_identity(mapped)
        print(f"identity (profile scorecard): {ident.iloc[0]:.3f} [{ident.iloc[1]:.3f}, {ident.iloc[2]:.3f}]")
    else:
        table = pd.concat([compare_simulator(seed) for seed in range(args.seeds)], ignore_index=True)
        print(table.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
        print(f"MAE per organoid: mean {table['mae'].mean():.4f}, max {table['mae'].max():.4f}")


if __name__ == "__main__":
    main()
