"""Stage entry point of the fidelity stage."""

from __future__ import annotations

import logging
from pathlib import Path

import anndata as ad
import pandas as pd

from hscseq._utils import input_error, write_h5ad, write_table
from hscseq.fidelity.controls import controls as _controls
from hscseq.fidelity.de import pseudobulk_de
from hscseq.fidelity.mapping import _reference_mask, map_to_reference
from hscseq.fidelity.plot import plot_scorecard
from hscseq.fidelity.profiles import (
    _profile_scorecard,
    map_to_profiles,
)
from hscseq.fidelity.reference_io import _joint_with_reference, _load_external_reference
from hscseq.fidelity.scorecard import scorecard as _scorecard
from hscseq.fidelity.settings import DEFAULT_SETTINGS
from hscseq.fidelity.spaces import uncorrected_pca
from hscseq.fidelity.timecourse import timecourse as _timecourse

logger = logging.getLogger(__name__)


def run_fidelity(
    *,
    scored: str,
    programme: str,
    final: str,
    cells: str,
    scorecard: str,
    composition: str,
    figure: str,
    settings: dict,
    de: str | None = None,
    controls: str | None = None,
    timecourse: str | None = None,
) -> None:
    """Stage entry point: map, score, control, explain; write the final object and the tables.

    Reference (first that applies): ``settings["reference"]`` (an h5ad with counts and labels), the in vivo
    samples of the sheet (``reference_label``), the built-in HematoMap profiles (human only).
    Method ``auto``: with a reference h5ad, scVI/scANVI trained on the reference and scArches surgery for
    the query (``scanvi``); with the sheet's in vivo samples, kNN in the integrated latent (``knn``). With
    either method novelty is measured in the uncorrected PCA (``novelty_space``): the surgery latent, like
    any batch-corrected latent, can pull off-target states onto the reference.
    """
    cfg = {**DEFAULT_SETTINGS, **(settings or {})}
    weights = {**DEFAULT_SETTINGS["index_weights"], **(cfg.get("index_weights") or {})}
    adata = ad.read_h5ad(scored)
    for col in ("sample", "condition"):
        if col not in adata.obs:
            raise input_error(
                f"obs lacks {col!r}.", path=scored, fix="run the pipeline from the score stage."
            )
    if "counts" not in adata.layers:
        raise input_error(
            "layers['counts'] (raw counts) is missing.",
            path=scored,
            fix="rerun the integrate/score stages; they keep raw counts in layers['counts'].",
        )
    prog_table = pd.read_csv(programme, sep="\t") if programme and Path(programme).is_file() else None
    species = str(adata.uns.get("hscseq", {}).get("merge", {}).get("species", ""))
    method = cfg["method"]
    external = cfg.get("reference")
    has_sheet_ref = "reference_label" in adata.obs and _reference_mask(adata, "reference_label").any()
    work = adata
    stage_key = None
    if external:
        ref = _load_external_reference(
            external,
            adata,
            label_key=cfg["reference_label_key"],
            stage_key=cfg.get("reference_stage_key"),
            donor_key=cfg.get("reference_donor_key"),
        )
        work = _joint_with_reference(adata, ref, seed=cfg["seed"])
        stage_key = "stage" if cfg.get("reference_stage_key") else None
        # a single-cell reference of its own: train scVI/scANVI on it, map the query by scArches surgery
        method = "scanvi" if method == "auto" else method
        source = f"reference h5ad {external}"
    elif has_sheet_ref:
        method = "knn" if method == "auto" else method
        source = "in vivo samples of the sample sheet"
    else:
        source = "built-in HematoMap human bone-marrow profiles"
        if species and species != "human":
            raise input_error(
                f"no single-cell reference and the analysis species is {species!r}; the built-in "
                "profile reference is human only.",
                path=scored,
                fix="label the in vivo samples (label_column) or set fidelity.reference.",
            )
    logger.info("fidelity reference: %s; method %s", source, method if source[:5] != "built" else "profiles")

    control_table = pd.DataFrame()
    de_table = pd.DataFrame()
    if source.startswith("built-in"):
        map_to_profiles(work, random_state=cfg["seed"])
        table, comp = _profile_scorecard(work, cfg)
    else:
        distance_rep = None
        if cfg.get("novelty_space", "uncorrected") == "uncorrected":
            uncorrected_pca(work, random_state=cfg["seed"])
            distance_rep = "X_pca_uncorrected"
        map_to_reference(
            work,
            method=method,
            distance_rep=distance_rep,
            n_neighbors=cfg["n_neighbors"],
            null_quantile=cfg["null_quantile"],
            absent_quantile=cfg["absent_quantile"],
            stage_key=stage_key,
            max_epochs=cfg["max_epochs"],
            random_state=cfg["seed"],
        )
        _scorecard(
            work,
            programme=prog_table,
            weights=weights,
            min_confidence=cfg["min_confidence"],
            min_cells=cfg["min_cells"],
            n_genes=cfg["n_informative_genes"],
            hsc_label=cfg["hsc_label"],
            n_bootstrap=cfg["n_bootstrap"],
            random_state=cfg["seed"],
        )
        table = work.uns["scorecard"]["table"]
        comp = work.uns["scorecard"]["composition"]
        if "X_integrated" in work.obsm:
            control_table = _controls(
                work,
                n_neighbors=cfg["n_neighbors"],
                null_quantile=cfg["null_quantile"],
                absent_quantile=cfg["absent_quantile"],
                min_confidence=cfg["min_confidence"],
                min_cells=cfg["min_cells"],
                n_genes=cfg["n_informative_genes"],
                weights=weights,
                negative_control_type=cfg["negative_control_type"],
                hsc_label=cfg["hsc_label"],
                n_bootstrap=max(10, cfg["n_bootstrap"] // 2),
                random_state=cfg["seed"],
            )
        de_table = pseudobulk_de(
            work,
            min_cells=cfg["de_min_cells"],
            top_n=cfg["de_top_n"],
            min_confidence=cfg["min_confidence"],
            max_genes=cfg["de_max_genes"],
            random_state=cfg["seed"],
        )
    for _, r in table.iterrows():
        logger.info(
            "scorecard %s: fidelity %.3f [%.3f, %.3f]; identity %.3f, similarity %.3f, programme %.3f, "
            "composition %.3f, novel %.3f",
            r["sample"],
            r["fidelity_index"],
            r["fidelity_index_ci_low"],
            r["fidelity_index_ci_high"],
            r["identity"],
            r["similarity"],
            r["programme"],
            r["composition"],
            r["novel_share"],
        )
    if table.empty:
        logger.warning("no engineered/organoid sample to score: the scorecard is empty")
    # write the mapping back onto the full scored object (external reference cells are not part of it)
    cols = [
        "predicted_label",
        "closest_label",
        "label_confidence",
        "label_uncertainty",
        "reference_distance",
        "novel",
    ] + (["closest_stage"] if "closest_stage" in work.obs else [])
    mapped = work.obs.loc[work.obs_names.isin(adata.obs_names), cols]
    for c in cols:
        adata.obs[c] = mapped[c].reindex(adata.obs_names).to_numpy()
    adata.obs["predicted_label"] = adata.obs["predicted_label"].astype("category")
    adata.obs["novel"] = adata.obs["novel"].astype(bool)
    adata.uns["fidelity"] = {k: v for k, v in work.uns["fidelity"].items()}
    adata.uns["fidelity"]["params"] = {
        **adata.uns["fidelity"]["params"],
        "reference_source": source,
        "settings": {k: v for k, v in cfg.items() if v is not None},
    }
    adata.uns["scorecard"] = {"table": table, "composition": comp, "controls": control_table}
    write_h5ad(_h5ad_safe(adata), final)
    cell_cols = [
        "sample",
        "condition",
        "batch",
        "timepoint",
        "leiden",
        "predicted_label",
        "label_confidence",
        "label_uncertainty",
        "novel",
        "closest_label",
        "reference_distance",
    ]
    cell_cols += ["closest_stage"] if "closest_stage" in adata.obs else []
    # every score-stage column: hsc_score*, hsc_like*, score_*, ontogeny*
    cell_cols += [c for c in adata.obs if c.startswith(("hsc_score", "hsc_like", "score_", "ontogeny"))]
    cell_table = adata.obs[[c for c in cell_cols if c in adata.obs]].copy()
    cell_table.insert(0, "cell_id", adata.obs_names)
    write_table(cell_table, cells, index=False)
    write_table(table, scorecard, index=False)
    write_table(comp, composition, index=False)
    if de:
        write_table(de_table, de, index=False)
    if controls:
        write_table(control_table, controls, index=False)
    if timecourse:
        write_table(_timecourse(table, comp), timecourse, index=False)
    plot_scorecard(table, comp, control_table, figure)


def _h5ad_safe(adata: ad.AnnData) -> ad.AnnData:
    """Make uns tables writable (object columns -> str)."""
    for key in ("table", "composition", "controls"):
        df = adata.uns["scorecard"].get(key)
        if isinstance(df, pd.DataFrame):
            df = df.copy()
            for c in df.columns:
                if df[c].dtype == object or df[c].dtype == bool:
                    df[c] = df[c].astype(str)
            adata.uns["scorecard"][key] = df
    return adata
