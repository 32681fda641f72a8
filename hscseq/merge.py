"""Merge per-sample AnnData (after QC) into one object in one analysis species.

The analysis species is the species of the in vivo (reference) samples; samples of the other species are
mapped through MGI one-to-one orthologs. Samples are joined on the genes they all share (an inner join: a gene
that was not measured in a sample is not a zero), and the overlap is reported; below ``min_shared_genes`` the
merge stops with an error that names the sample that lost most genes.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from hscseq import genes
from hscseq._settings import StageSettings, schema_field
from hscseq._utils import input_error, write_h5ad
from hscseq.ingest.stage import OBS_COLUMNS

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class MergeSettings(StageSettings):
    """Settings of the merge stage (config section ``merge``; defaults and meanings in the config schema)."""

    stage: ClassVar[str] = "merge"
    min_shared_genes: int = schema_field(stage, "min_shared_genes")


def analysis_species(data: ad.AnnData | Sequence[ad.AnnData]) -> str:
    """The analysis species (one rule for every stage).

    A merged object: the species the merge stage recorded (``uns['hscseq']['merge']['species']``). Otherwise
    (samples before merging, or an object without the record): the species of the in vivo samples, else the
    species of the majority of cells.
    """
    if isinstance(data, ad.AnnData):
        try:
            recorded = data.uns["hscseq"]["merge"]["species"]
        except (KeyError, TypeError):
            recorded = None
        if recorded is not None:
            return _checked_species(recorded)
        data = [data]
    obs = [a.obs for a in data if "species" in a.obs]
    if not obs:
        return _checked_species(None)
    obs = pd.concat([o[[c for c in ("species", "condition") if c in o]] for o in obs])
    species = obs["species"].astype(str)
    in_vivo = obs["condition"].astype(str).eq("in_vivo").to_numpy() if "condition" in obs else None
    if in_vivo is not None and in_vivo.any():
        return _checked_species(species.to_numpy()[in_vivo][0])
    counts = species.value_counts(sort=False)
    return _checked_species(counts.idxmax() if len(counts) else None)


def _checked_species(species: str | None) -> str:
    if species not in genes.SPECIES:
        raise input_error(
            f"cannot tell the analysis species (found {species!r}).",
            fix="the merge stage records uns['hscseq']['merge']['species']; otherwise give "
            "obs['species'] ('mouse' or 'human') or pass species=... explicitly.",
        )
    return str(species)


def merge_samples(
    adatas: Sequence[ad.AnnData], *, min_shared_genes: int = 500, species: str | None = None
) -> ad.AnnData:
    """Concatenate samples on their shared genes in one species.

    Parameters
    ----------
    adatas
        Per-sample AnnData with raw counts in X and obs ``sample``, ``species``, ``condition``.
    min_shared_genes
        Stop with an error when fewer genes are shared by all samples.
    species
        Analysis species; by default that of the in vivo samples (see :func:`analysis_species`).

    Returns
    -------
    The merged AnnData: raw counts in a CSR X, obs of every sample (``reference_label`` kept), var
    ``gene_symbol``/``gene_id`` of the analysis species, ``uns["hscseq"]["merge"]`` with the species and the
    per-sample gene overlap.
    """
    if not adatas:
        msg = "merge_samples needs at least one sample"
        raise ValueError(msg)
    species = species or analysis_species(adatas)
    converted = [genes.to_species(a, species) for a in adatas]
    shared = set(converted[0].var_names)
    for a in converted[1:]:
        shared &= set(a.var_names)
    overlap = {
        str(a.obs["sample"].iloc[0]): len(shared) / max(orig.n_vars, 1)
        for a, orig in zip(converted, adatas, strict=True)
    }
    if len(shared) < min_shared_genes:
        worst = min(converted, key=lambda a: len(set(a.var_names)))
        sample = str(worst.obs["sample"].iloc[0])
        raise input_error(
            f"the samples share only {len(shared)} genes in {species} (minimum {min_shared_genes}); "
            f"sample {sample!r} has the fewest ({worst.n_vars}).",
            sample=sample,
            fix="check the species column of the sample sheet and that every sample uses gene symbols or "
            "Ensembl IDs of a whole transcriptome; lower merge.min_shared_genes only if you are sure.",
        )
    order = [g for g in converted[0].var_names if g in shared]
    parts = []
    for a in converted:
        part = a[:, order].copy()
        part.X = sp.csr_matrix(part.X, dtype=np.float32)
        part.layers.clear()
        part.obsm.clear()
        part.varm.clear()
        part.obsp.clear()
        part.uns = {}
        if "reference_label" not in part.obs:
            part.obs["reference_label"] = np.nan
        part.obs["reference_label"] = part.obs["reference_label"].astype(object)
        parts.append(part)
    merged = ad.concat(parts, join="inner", merge=None, uns_merge=None)
    gene_id = converted[0].var["gene_id"] if "gene_id" in converted[0].var else pd.Series("", index=order)
    merged.var = pd.DataFrame(
        {"gene_symbol": order, "gene_id": gene_id.loc[order].to_numpy()}, index=pd.Index(order)
    )
    for col in OBS_COLUMNS:
        if col in merged.obs:
            merged.obs[col] = merged.obs[col].astype(str).replace("nan", "").astype("category")
    if "reference_label" in merged.obs:
        labels = merged.obs["reference_label"].astype(object)
        merged.obs["reference_label"] = labels.where(labels.notna() & (labels != ""), np.nan).astype(
            "category"
        )
    merged.uns["hscseq"] = {
        "merge": {
            "species": species,
            "n_shared_genes": len(shared),
            "gene_overlap": overlap,
            "params": {"min_shared_genes": min_shared_genes, "species": species},
        }
    }
    logger.info(
        "merged %d samples: %d cells x %d shared genes (%s)",
        len(adatas),
        merged.n_obs,
        merged.n_vars,
        species,
    )
    return merged


def run_merge(
    *, h5ads: Sequence[str], merged: str, settings: MergeSettings | Mapping[str, Any] | None
) -> None:
    """Workflow entry: read the QC'd samples, merge them, write ``merged`` atomically.

    ``settings`` is a :class:`MergeSettings` or the ``merge`` config section (validated against the schema).
    """
    s = MergeSettings.coerce(settings)
    adatas = [ad.read_h5ad(p) for p in h5ads]
    result = merge_samples(adatas, min_shared_genes=int(s.min_shared_genes))
    write_h5ad(result, merged)
