"""The score stage's entry point (the Snakemake rule's one call): :func:`run_score`.

Reads the integrated h5ad, scores the library and user signatures (:func:`~hscseq.score.score_signatures`),
calls HSC identity, HSC-likeness, stage and ontogeny (:func:`run_identity`), compares HSC-like cells with in
vivo HSCs (:func:`~hscseq.score.missing_programme`) and writes what it added (obs columns and uns entries,
no matrix: :func:`score_annotations`), the per-sample programme table, a figure and optional coverage /
missing-gene tables. Settings: one :class:`ScoreSettings`. Scoring needs neither the clusters nor the UMAP,
so the DAG runs this stage beside clustering; the fidelity stage joins both (:func:`attach_scores`).
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from hscseq._plotting import save_and_close
from hscseq._utils import input_error, write_h5ad, write_table
from hscseq.merge import analysis_species
from hscseq.score.identity import hsc_identity, hsc_like_summary
from hscseq.score.ontogeny import primitive_vs_definitive_evidence
from hscseq.score.plotting import plot_scores
from hscseq.score.programme import missing_programme
from hscseq.score.scoring import score_signatures
from hscseq.score.settings import ScoreSettings, score_settings
from hscseq.score.signatures import Signature, load_signatures
from hscseq.score.stage import hsc_stage
from hscseq.score.tables import programme_table

logger = logging.getLogger(__name__)

#: Library signatures the score stage always scores (identity call, stage, ontogeny).
IDENTITY_SIGNATURES = (
    "primitive",
    "definitive",
    "erythroid",
    "haematopoietic",
    "endothelial",
    "eht",
    "mpp_lmpp",
    "stage_nascent",
    "stage_fetal",
)


def _read_expression(path: str) -> ad.AnnData:
    """The integrated h5ad without what scoring never reads (raw-count layers, embeddings, graphs): X, obs,
    var and uns. The counts layer is half of the file (1.4 of 2.8 GB at 100k cells), and this job runs
    beside clustering."""
    import h5py
    from anndata.io import read_elem

    with h5py.File(path, "r") as f:
        parts = {k: read_elem(f[k]) for k in ("X", "obs", "var", "uns") if k in f}
    return ad.AnnData(**parts)


def _check_input(adata: ad.AnnData, path: str) -> None:
    missing = [c for c in ("sample", "condition") if c not in adata.obs]
    if missing:
        raise input_error(
            f"obs lacks the column(s) {missing}.",
            path=path,
            fix="run the upstream stages (ingest -> integrate) which add them.",
        )
    if adata.n_obs == 0:
        raise input_error("no cells.", path=path, fix="check the QC thresholds upstream.")
    X = adata.X
    sample = X[: min(adata.n_obs, 500)]
    values = sample.data if sp.issparse(sample) else np.asarray(sample).ravel()
    if values.size and (values.max() > 50 or np.all(np.mod(values, 1) == 0)):
        raise input_error(
            "X does not look log-normalised (integer values or values above 50).",
            path=path,
            fix="X must hold log1p-normalised expression, raw counts in layers['counts'].",
        )


def stage_signatures(s: ScoreSettings, *, species: str, path: str) -> dict[str, Signature]:
    """The signatures the stage scores: ``s.signatures`` (all when unset) of the library and user files,
    plus the HSC signature and :data:`IDENTITY_SIGNATURES` (from the library) when not among them."""
    signatures = load_signatures(
        s.user_signatures, species=species, user_species=s.user_species, names=s.signatures
    )
    hsc_name = s.hsc_signature
    if hsc_name not in signatures:
        all_sigs = load_signatures(s.user_signatures, species=species, user_species=s.user_species)
        if hsc_name not in all_sigs:
            raise input_error(
                f"the HSC signature {hsc_name!r} is not in the library or the user files.",
                path=path,
                fix=f"set score.hsc_signature to one of {sorted(all_sigs)}.",
            )
        signatures[hsc_name] = all_sigs[hsc_name]
    library = load_signatures(species=species)
    for needed in IDENTITY_SIGNATURES:  # programmes of the identity call, stage and ontogeny
        if needed not in signatures:
            signatures[needed] = library[needed]
    return signatures


def run_identity(
    adata: ad.AnnData, settings: ScoreSettings | Mapping[str, Any] | None, *, hsc_name: str, species: str
) -> None:
    """Score-stage step: identity call, identity-aware ``hsc_score``, HSC-like summary, stage and ontogeny.

    ``obs['hsc_score']`` becomes the identity score; the native programme stays in
    ``obs['score_<hsc_name>']`` (``score_hsc_native`` by default).
    """
    s = score_settings(settings)
    if not np.isfinite(adata.obs[f"score_{hsc_name}"]).any():
        cov = adata.uns.get("signatures", {}).get("coverage")
        row = cov[cov["signature"] == hsc_name] if isinstance(cov, pd.DataFrame) else None
        measured = (
            f"{int(row['n_measured'].iloc[0])} of its {int(row['n_genes'].iloc[0])} genes are measured "
            "in the genes all samples share"
            if row is not None and len(row)
            else "too few of its genes are measured"
        )
        raise input_error(
            f"the HSC signature {hsc_name!r} could not be scored: {measured} (score.min_coverage "
            f"{s.min_coverage:g}).",
            fix="check the species and gene symbols, give every sample's full gene list, lower "
            "score.min_coverage (e.g. 0.3) to score on fewer genes, or choose another score.hsc_signature.",
        )
    hsc_identity(
        adata,
        hsc_key=f"score_{hsc_name}_z",
        species=species,
        hsc_labels=s.reference_hsc_labels,
        z_on=s.identity_z,
        quantile=s.hsc_quantile,
        min_reference_cells=s.min_reference_cells,
        gate_min=s.identity_gate_min,
        n_bootstrap=s.n_bootstrap,
        random_state=s.seed,
    )
    adata.obs["hsc_score"] = adata.obs["hsc_identity_score"]
    hsc_like_summary(adata)
    hsc_stage(adata, z_on=s.identity_z)
    primitive_vs_definitive_evidence(
        adata,
        species=species,
        haematopoietic_threshold=adata.uns["hsc_identity"]["thresholds"]["haematopoietic"],
        z_min=s.ontogeny_z,
        min_fraction=s.ontogeny_min_fraction,
    )


def score_annotations(adata: ad.AnnData, before: pd.DataFrame, before_uns: Mapping[str, Any]) -> ad.AnnData:
    """What scoring added to or changed in ``adata`` (obs was ``before``, uns ``before_uns``): those obs
    columns and uns entries on the same cells, without a matrix (the stage's ``scores`` h5ad: kilobytes per
    thousand cells, where a copy of the whole object is gigabytes at 100k cells)."""
    cols = [c for c in adata.obs if c not in before or not adata.obs[c].equals(before[c])]
    uns = {k: v for k, v in adata.uns.items() if k != "hscseq" and before_uns.get(k) is not v}
    uns["hscseq"] = {"score": adata.uns["hscseq"]["score"]}
    return ad.AnnData(obs=adata.obs[cols].copy(), uns=uns)


def attach_scores(adata: ad.AnnData, scores: ad.AnnData, *, path: str) -> None:
    """Put the score stage's annotations (:func:`score_annotations`, read from ``path``) on ``adata``, the
    same cells in the same order (the clustered object of the same run)."""
    if not adata.obs_names.equals(scores.obs_names):
        raise input_error(
            f"its {scores.n_obs} cells are not the {adata.n_obs} cells of the clustered h5ad (same names, "
            "same order).",
            path=path,
            fix="rerun the score stage on this run's integrated h5ad (or delete the file and rerun the DAG).",
        )
    for c in scores.obs:
        adata.obs[c] = scores.obs[c].values  # by position (names checked): categories kept
    for k, v in scores.uns.items():
        if k == "hscseq":
            adata.uns.setdefault("hscseq", {})["score"] = v["score"]
        else:
            adata.uns[k] = v


def _write_outputs(
    adata: ad.AnnData,
    table: pd.DataFrame,
    *,
    scores: ad.AnnData,
    scores_path: str,
    programme: str,
    figure: str,
    coverage: str | None,
    missing: str | None,
) -> None:
    write_h5ad(scores, scores_path)
    write_table(table, programme, index=False)
    if coverage:
        cov = adata.uns["signatures"]["coverage"].merge(
            adata.uns["signatures"]["coverage_by_sample"], on="signature", how="left"
        )
        write_table(cov, coverage, index=False)
    if missing:
        write_table(adata.uns["missing_programme"]["genes"], missing, index=False)
    save_and_close(plot_scores(adata), figure)


def run_score(
    *,
    integrated: str,
    scores: str,
    programme: str,
    figure: str,
    settings: ScoreSettings | Mapping[str, Any],
    coverage: str | None = None,
    missing: str | None = None,
) -> None:
    """Score the integrated cells and write their scores, the HSC-programme table and a figure.

    ``settings`` is the ``score`` config section (or a :class:`ScoreSettings`); it becomes one
    :class:`ScoreSettings` (schema defaults, validated: an unknown key is an error).

    Outputs: ``scores`` (an h5ad of the same cells without a matrix, :func:`score_annotations`: obs
    ``hsc_score`` = the identity-aware HSC score of :mod:`hscseq.score.identity`, ``score_<name>`` (+ ``_z``,
    ``_p``) for every library / user signature
    (the native programme alone: ``score_hsc_native``), ``hsc_identity`` (class) and its ``_score``,
    ``_lineage``, ``_gate``, ``hsc_like``, ``hsc_stage``, ``ontogeny``; uns ``signatures``, ``hsc_identity``,
    ``hsc_like``, ``hsc_stage``, ``missing_programme``, ``ontogeny``), ``programme`` (one row per sample,
    :data:`~hscseq.score.tables.PROGRAMME_COLUMNS` plus details: identity class fractions with CIs, stage
    shares), ``figure`` (PNG), optionally ``coverage`` (coverage per signature and per sample) and
    ``missing`` (per sample and gene comparison with in vivo HSCs).
    """
    s = score_settings(settings)
    if not Path(integrated).is_file():
        raise input_error(
            "the integrated h5ad does not exist.", path=integrated, fix="run the integrate stage."
        )
    adata = _read_expression(integrated)
    _check_input(adata, integrated)
    before, before_uns = adata.obs.copy(), dict(adata.uns)
    species = analysis_species(adata)
    signatures = stage_signatures(s, species=species, path=integrated)
    logger.info(
        "scoring %d signatures (%s) on %d cells, species %s", len(signatures), s.method, adata.n_obs, species
    )
    with warnings.catch_warnings():
        warnings.simplefilter("always", UserWarning)
        score_signatures(
            adata,
            signatures,
            method=s.method,
            n_null=s.n_null,
            n_bins=s.n_bins,
            n_ctrl=s.n_ctrl,
            max_rank=s.aucell_max_rank,
            min_coverage=s.min_coverage,
            species=species,
            random_state=s.seed,
        )
    run_identity(adata, s, hsc_name=s.hsc_signature, species=species)  # hsc_score, hsc_like, stage, ontogeny
    missing_programme(
        adata,
        adata.uns["signatures"]["genes"][s.hsc_signature]["up"],
        hsc_labels=s.reference_hsc_labels,
        min_reference_detection=s.min_reference_detection,
        established_ratio=s.established_ratio,
        min_query_cells=s.min_query_cells,
    )
    table = programme_table(adata)
    adata.uns.setdefault("hscseq", {})
    adata.uns["hscseq"]["score"] = {
        "settings": s.as_params(),
        "hsc_signature": s.hsc_signature,
        "species": species,
    }
    _write_outputs(
        adata,
        table,
        scores=score_annotations(adata, before, before_uns),
        scores_path=scores,
        programme=programme,
        figure=figure,
        coverage=coverage,
        missing=missing,
    )
    logger.info(
        "HSC-like fractions:\n%s",
        table[["sample", "hsc_like_fraction", "hsc_programme_share", "primitive_definitive_call"]].to_string(
            index=False
        ),
    )
