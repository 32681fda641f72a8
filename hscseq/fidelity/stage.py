"""Stage entry point of the fidelity stage: read, map, score, control, explain, write."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anndata as ad
import pandas as pd

from hscseq._plotting import save_and_close
from hscseq._utils import HscseqInputError, input_error, write_h5ad, write_table
from hscseq.fidelity.controls import controls as _controls
from hscseq.fidelity.de import pseudobulk_de
from hscseq.fidelity.ensemble import calibration_table
from hscseq.fidelity.hierarchy import roll_up
from hscseq.fidelity.mapping import _reference_mask, map_to_reference
from hscseq.fidelity.plot import scorecard_figure
from hscseq.fidelity.plot_calibration import plot_reliability
from hscseq.fidelity.profiles import _profile_scorecard, map_to_profiles, profile_hierarchy
from hscseq.fidelity.reference_io import _joint_with_reference, _load_external_reference
from hscseq.fidelity.scorecard import scorecard as _scorecard
from hscseq.fidelity.settings import FidelitySettings
from hscseq.fidelity.timecourse import timecourse as _timecourse
from hscseq.merge import analysis_species
from hscseq.score.run import attach_scores

logger = logging.getLogger(__name__)

MAPPED_COLUMNS = (
    "predicted_label",
    "closest_label",
    "label_confidence",
    "label_uncertainty",
    "reference_distance",
    "novel",
)
CELL_COLUMNS = (
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
)


@dataclass
class _Source:
    """Where the reference comes from, the object to map, and the settings with ``method`` resolved."""

    work: ad.AnnData
    description: str
    settings: FidelitySettings
    stage_key: str | None = None
    profiles: bool = False


def _read_input(clustered: str, scores: str | None) -> ad.AnnData:
    """The clustered cells with the score stage's annotations (``scores``; None: already on them)."""
    adata = ad.read_h5ad(clustered)
    if scores:
        attach_scores(adata, ad.read_h5ad(scores), path=scores)
    for col in ("sample", "condition"):
        if col not in adata.obs:
            raise input_error(
                f"obs lacks {col!r}.", path=clustered, fix="run the pipeline from the integrate stage."
            )
    if "counts" not in adata.layers:
        raise input_error(
            "layers['counts'] (raw counts) is missing.",
            path=clustered,
            fix="rerun the integrate stage; it keeps raw counts in layers['counts'].",
        )
    return adata


def _reference_source(adata: ad.AnnData, s: FidelitySettings, path: str) -> _Source:
    """Reference (first that applies): ``settings.reference`` (an h5ad), the sheet's in vivo samples, the
    built-in HematoMap profiles (human only)."""
    if s.reference:
        ref = _load_external_reference(
            s.reference,
            adata,
            label_key=s.reference_label_key,
            stage_key=s.reference_stage_key,
            donor_key=s.reference_donor_key,
        )
        work = _joint_with_reference(adata, ref, seed=s.seed)
        # a single-cell reference of its own: train scVI/scANVI on it, map the query by scArches surgery
        resolved = s.replace(method=s.mapping_method(external_reference=True))
        stage_key = "stage" if s.reference_stage_key else None
        return _Source(work, f"reference h5ad {s.reference}", resolved, stage_key=stage_key)
    if "reference_label" in adata.obs and _reference_mask(adata, "reference_label").any():
        return _Source(adata, "in vivo samples of the sample sheet", s.replace(method=s.mapping_method()))
    try:
        species = analysis_species(adata)
    except HscseqInputError:
        species = ""  # unknown species: the profiles refuse non-human genes by themselves
    if species and species != "human":
        raise input_error(
            f"no single-cell reference and the analysis species is {species!r}; the built-in "
            "profile reference is human only.",
            path=path,
            fix="label the in vivo samples (label_column) or set fidelity.reference.",
        )
    return _Source(adata, "built-in HematoMap human bone-marrow profiles", s, profiles=True)


def score_with_controls(
    work: ad.AnnData,
    settings: FidelitySettings,
    *,
    programme: pd.DataFrame | None = None,
    stage_key: str | None = None,
    with_controls: bool = True,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Map, score and run the controls with ONE settings object (the stage's analysis, reusable).

    The controls get the same settings, the same novelty space (``uns["fidelity"]["params"]["distance_rep"]``
    of the mapping) and the same programme table as the scorecard. Returns the scorecard table, the
    composition table and the controls table (empty without controls).
    """
    map_to_reference(work, settings=settings, stage_key=stage_key)
    _scorecard(work, settings=settings, programme=programme)
    table, comp = work.uns["scorecard"]["table"], work.uns["scorecard"]["composition"]
    control_table = pd.DataFrame()
    if with_controls:
        control_table = _controls(
            work,
            settings=settings,
            programme=programme,
            distance_rep=work.uns["fidelity"]["params"]["distance_rep"],
            reference_null=work.uns["fidelity"],
        )
    return table, comp, control_table


def _log_scorecard(table: pd.DataFrame) -> None:
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


def _write_back(adata: ad.AnnData, src: _Source, tables: dict[str, pd.DataFrame]) -> None:
    """The mapping of ``src.work`` onto the scored object (external reference cells are not part of it)."""
    work = src.work
    cols = [*MAPPED_COLUMNS, *[c for c in ("closest_stage", "mapped_label") if c in work.obs]]
    mapped = work.obs.loc[work.obs_names.isin(adata.obs_names), cols]
    for c in cols:
        adata.obs[c] = mapped[c].reindex(adata.obs_names).to_numpy()
    adata.obs["predicted_label"] = adata.obs["predicted_label"].astype("category")
    adata.obs["novel"] = adata.obs["novel"].astype(bool)
    adata.uns["fidelity"] = dict(work.uns["fidelity"].items())
    adata.uns["fidelity"]["params"] = {
        **adata.uns["fidelity"]["params"],
        "reference_source": src.description,
        "settings": src.settings.as_params(),
    }
    adata.uns["scorecard"] = {k: tables[k] for k in ("table", "composition", "controls")}


def _cell_table(adata: ad.AnnData) -> pd.DataFrame:
    cell_cols = [*CELL_COLUMNS, *[c for c in ("closest_stage", "mapped_label") if c in adata.obs]]
    # every score-stage column: hsc_score*, hsc_like*, hsc_identity* (class, score, lineage, gate), hsc_stage,
    # score_*, ontogeny*
    prefixes = ("hsc_score", "hsc_like", "hsc_identity", "hsc_stage", "score_", "ontogeny")
    cell_cols += [c for c in adata.obs if c.startswith(prefixes)]
    cell_table = adata.obs[[c for c in cell_cols if c in adata.obs]].copy()
    cell_table.insert(0, "cell_id", adata.obs_names)
    return cell_table


def run_fidelity(
    *,
    clustered: str,
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
    mapping_accuracy: str | None = None,
    mapping_calibration: str | None = None,
    calibration_figure: str | None = None,
    scores: str | None = None,
) -> None:
    """Stage entry point: map, score, control, explain; write the final object and the tables.

    ``clustered`` is the cluster stage's h5ad, ``scores`` the score stage's annotations of the same cells
    (:func:`hscseq.score.attach_scores`; None when ``clustered`` already carries them, e.g. from a notebook).

    With ``label_method: ensemble`` it also writes the per-type accuracy card of held-out reference cells
    (``mapping_accuracy``), the reliability bins and expected calibration errors (``mapping_calibration``)
    and the reliability curve (``calibration_figure``).

    ``settings`` is the ``fidelity`` config section; it becomes one :class:`FidelitySettings` (schema
    defaults, validated) that the mapping, the scorecard, the controls and the DE all read. Method ``auto``:
    with a reference h5ad, scVI/scANVI trained on the reference and scArches surgery for the query
    (``scanvi``); with the sheet's in vivo samples, kNN in the integrated latent (``knn``). With either method
    novelty is measured in the uncorrected PCA (``novelty_space``): the surgery latent, like any
    batch-corrected latent, can pull off-target states onto the reference. The controls run when their
    output (``controls``) is requested, with the scorecard's settings and programme table.
    """
    s = FidelitySettings.from_config(settings)
    adata = _read_input(clustered, scores)
    prog_table = pd.read_csv(programme, sep="\t") if programme and Path(programme).is_file() else None
    src = _reference_source(adata, s, clustered)
    s = src.settings
    logger.info(
        "fidelity reference: %s; method %s", src.description, "profiles" if src.profiles else s.method
    )
    tables: dict[str, Any] = {"controls": pd.DataFrame(), "de": pd.DataFrame()}
    if src.profiles:
        map_to_profiles(src.work, min_confidence=s.min_confidence, random_state=s.seed)
        tables["table"], tables["composition"] = _profile_scorecard(src.work, s)
    else:
        tables["table"], tables["composition"], tables["controls"] = score_with_controls(
            src.work,
            s,
            programme=prog_table,
            stage_key=src.stage_key,
            with_controls=bool(controls) and ("X_integrated" in src.work.obsm or s.method == "scanvi"),
        )
        tables["de"] = pseudobulk_de(
            src.work,
            min_cells=s.de_min_cells,
            top_n=s.de_top_n,
            min_confidence=s.min_confidence,
            max_genes=s.de_max_genes,
            random_state=s.seed,
        )
    tables["composition"] = _with_lineage(tables["composition"], src.work)
    _log_scorecard(tables["table"])
    _write_back(adata, src, tables)
    write_h5ad(_h5ad_safe(adata), final)
    write_table(_cell_table(adata), cells, index=False)
    write_table(tables["table"], scorecard, index=False)
    write_table(tables["composition"], composition, index=False)
    for path, key in ((de, "de"), (controls, "controls")):
        if path:
            write_table(tables[key], path, index=False)
    if timecourse:
        write_table(_timecourse(tables["table"], tables["composition"]), timecourse, index=False)
    save_and_close(scorecard_figure(tables["table"], tables["composition"], tables["controls"]), figure)
    _write_mapping_quality(src.work, mapping_accuracy, mapping_calibration, calibration_figure)


def _with_lineage(composition: pd.DataFrame, work: ad.AnnData) -> pd.DataFrame:
    """The composition with a ``lineage`` column after ``cell_type``: the root of the label hierarchy the
    mapping used (the built-in profiles: their HematoMap lineages; a reference: ``fidelity.hierarchy`` or the
    hierarchy built from it), the type itself without one. The report shades a lineage's types alike."""
    if work.uns.get("fidelity", {}).get("params", {}).get("method") == "profiles":
        hierarchy = profile_hierarchy(work)
    else:
        found = work.uns.get("mapping", {}).get("hierarchy")
        hierarchy = dict(found) if isinstance(found, dict) else {}
    out = composition.copy()
    if "cell_type" in out:
        lineage = roll_up(out["cell_type"].astype(str).to_numpy(), hierarchy, level="root")
        out.insert(out.columns.get_loc("cell_type") + 1, "lineage", lineage)
    return out


def _write_mapping_quality(
    work: ad.AnnData, accuracy: str | None, calibration: str | None, figure: str | None
) -> None:
    """Accuracy card, calibration table and reliability curve (a note without the ensemble)."""
    info = work.uns.get("mapping")
    note = "no ensemble mapping (label_method knn or profile reference): no held-out accuracy card"
    if accuracy:
        acc = pd.DataFrame(info["accuracy"]) if info else pd.DataFrame({"note": [note]})
        write_table(acc, accuracy, index=False)
    if calibration:
        write_table(
            calibration_table(work) if info else pd.DataFrame({"note": [note]}), calibration, index=False
        )
    if figure:
        rel = (
            pd.DataFrame(info["reliability"])
            if info
            else pd.DataFrame(columns=["confidence", "accuracy", "share"])
        )
        save_and_close(plot_reliability(rel, ece=float(info["ece"]) if info else None), figure)


def _h5ad_safe(adata: ad.AnnData) -> ad.AnnData:
    """Make uns tables writable (object columns -> str; DataFrame attrs dropped) and the label hierarchy a
    child/parent table (as a dict, h5ad would nest a label such as ``HSC/MPP`` into groups)."""
    mapping = adata.uns.get("mapping")
    if isinstance(mapping, dict) and isinstance(mapping.get("hierarchy"), dict):
        hier = mapping["hierarchy"]
        mapping["hierarchy"] = pd.DataFrame({"child": list(hier), "parent": [str(v) for v in hier.values()]})
    for key in ("table", "composition", "controls"):
        df = adata.uns["scorecard"].get(key)
        if isinstance(df, pd.DataFrame):
            df = df.copy()
            df.attrs = {}
            for c in df.columns:
                if df[c].dtype == object or df[c].dtype == bool:
                    df[c] = df[c].astype(str)
            adata.uns["scorecard"][key] = df
    return adata
