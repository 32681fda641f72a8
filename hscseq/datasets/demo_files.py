"""The shipped demo scenarios written as files: engineered (mouse, :func:`write_demo`) and organoid (human,
:func:`write_organoid_demo`), each sample in a real input format, with the truth and a sample sheet.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from hscseq._utils import atomic_path
from hscseq.datasets.organoid import simulate_organoids
from hscseq.datasets.organoid_plan import OrganoidSpec, organoid_specs_from_profiles
from hscseq.datasets.scenarios import demo
from hscseq.datasets.writers import (
    _gzip_bytes,
    write_10x_h5,
    write_10x_mtx,
    write_dense_table,
    write_h5ad_sample,
)

#: How each demo sample is written: (file name, writer).
DEMO_FORMATS = {
    "invivo_donor1": "invivo_donor1.h5ad",
    "invivo_donor2": "invivo_donor2_counts_layer.h5ad",
    "engineered_7TF": "engineered_7TF_filtered_feature_bc_matrix.h5",
    "organoid_week2": "organoid_week2_filtered_feature_bc_matrix",
    "organoid_week4": "organoid_week4_counts.tsv.gz",
}


#: Samples of the shipped ``engineered`` demo scenario (the mouse organoid samples of :func:`demo` are left
#: out: the human organoid scenario is :func:`write_organoid_demo`).
ENGINEERED_DEMO_SAMPLES = ("invivo_donor1", "invivo_donor2", "engineered_7TF")


def write_demo(
    directory: str | Path,
    *,
    scale: float = 1.0,
    seed: int = 0,
    organoid_species: str = "mouse",
    include: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Write the demo samples (each in a different real input format), the truth and a sample sheet.

    The shipped demo keeps every sample in one species (mouse): samples of another species are merged on
    their one-to-one orthologs only, which drops species-specific genes such as the mouse embryonic globins
    that mark primitive erythroid cells. Cross-species merging is covered by the unit tests.

    ``include`` restricts the samples written (all simulated samples are still drawn, so the files written
    are the same bytes either way). Returns the sample sheet (absolute paths).
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    samples = demo(scale=scale, seed=seed, organoid_species=organoid_species)
    if include is not None:
        samples = {k: v for k, v in samples.items() if k in set(include)}
    rows = []
    truth = []
    for name, adata in samples.items():
        target = directory / DEMO_FORMATS[name]
        label_column = ""
        if name == "invivo_donor1":
            write_h5ad_sample(adata.copy(), target, keep_obs=["true_cell_type"])
            adata_labels = "true_cell_type"
            label_column = adata_labels
        elif name == "invivo_donor2":
            write_h5ad_sample(adata.copy(), target, counts_in="layers", keep_obs=["true_cell_type"])
            label_column = "true_cell_type"
        elif name == "engineered_7TF":
            write_10x_h5(adata, target, genome="mm10")
        elif name == "organoid_week2":
            write_10x_mtx(adata, target, version=3)
        else:
            write_dense_table(adata, target)
        obs = adata.obs
        rows.append(
            {
                "sample": name,
                "path": str(target),
                "species": obs["species"].iloc[0],
                "condition": obs["condition"].iloc[0],
                "batch": obs["batch"].iloc[0],
                "timepoint": obs["timepoint"].iloc[0],
                "donor": obs["donor"].iloc[0],
                "label_column": label_column,
            }
        )
        t = obs[["sample", "true_cell_type", "true_phase", "is_doublet", "is_low_quality", "is_offtarget"]]
        truth.append(t.rename_axis("barcode").reset_index())
    truth_df = pd.concat(truth, ignore_index=True)
    with atomic_path(directory / "truth.tsv.gz") as tmp:
        tmp.write_bytes(_gzip_bytes(truth_df.to_csv(sep="\t", index=False).encode()))
    sheet = pd.DataFrame(rows)
    return sheet


def write_organoid_demo(
    directory: str | Path, *, n_cells: int = 500, seed: int = 0, specs: Sequence[OrganoidSpec] | None = None
) -> pd.DataFrame:
    """Write the human organoid scenario (10x h5 and MTX files), its truth, and return its sample sheet."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    specs = list(specs) if specs is not None else organoid_specs_from_profiles(n_cells, seed=seed)
    samples = simulate_organoids(specs, seed=seed)
    rows, truth = [], []
    for k, (name, adata) in enumerate(samples.items()):
        if k % 3 == 2:
            target = directory / f"{name}_filtered_feature_bc_matrix"
            write_10x_mtx(adata, target, version=3)
        else:
            target = directory / f"{name}_filtered_feature_bc_matrix.h5"
            write_10x_h5(adata, target, genome="GRCh38")
        obs = adata.obs
        rows.append(
            {
                "sample": name,
                "path": str(target),
                "species": "human",
                "condition": "organoid",
                "batch": name,
                "timepoint": obs["timepoint"].iloc[0],
                "donor": "",
                "label_column": "",
                "replicate": obs["replicate"].iloc[0],
            }
        )
        t = obs[
            [
                "sample",
                "timepoint",
                "replicate",
                "true_cell_type",
                "is_doublet",
                "is_low_quality",
                "is_offtarget",
            ]
        ]
        truth.append(t.rename_axis("barcode").reset_index())
    truth_df = pd.concat(truth, ignore_index=True)
    with atomic_path(directory / "truth.tsv.gz") as tmp:
        tmp.write_bytes(_gzip_bytes(truth_df.to_csv(sep="\t", index=False).encode()))
    return pd.DataFrame(rows)
