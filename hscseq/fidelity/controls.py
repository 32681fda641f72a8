"""Positive and negative controls of the fidelity index, run with exactly the scorecard's setup.

The controls take the same :class:`~hscseq.fidelity.FidelitySettings` and inputs as the scorecard: the same
mapping method (kNN or scANVI surgery), the same novelty space (the ``obsm`` key the scorecard measured
distances in), the same thresholds (quantiles, neighbours, confidence, cells, weights, HSC label) and the same
programme table (for a held-out donor, the score stage's ``hsc_programme_share`` of that donor's samples).
Only the number of bootstrap replicates is halved (:attr:`FidelitySettings.controls_n_bootstrap`), and with
``controls_max_cells_per_type`` the controls (their full-reference null included) run on a seeded subsample
of the reference with at most that many cells per type per donor (:func:`capped_reference`); the mapping and
the scorecard they check keep every cell.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd

from hscseq._utils import capped_positions
from hscseq.fidelity.mapping import _reference_mask, map_to_reference
from hscseq.fidelity.parts import _counts, _donor_column, _hsc_label, _Reference
from hscseq.fidelity.scorecard import scorecard
from hscseq.fidelity.settings import FidelitySettings, fidelity_settings
from hscseq.fidelity.spaces import novelty_rep

logger = logging.getLogger(__name__)

CONTROL = "control"
MAX_DONORS = 5  # donors held out in turn
SPLIT_DONOR = "heldout_20pct"  # the held-out part of a single donor
EXCLUDED = "excluded"  # cells a negative control leaves out of both its reference and its query


@dataclass
class _ControlSetup:
    """The reference cells, their donors, the off-target type and the full reference's nulls."""

    ref: ad.AnnData
    labels: np.ndarray
    donors: np.ndarray
    donor_list: list[str]
    negative_type: str | None
    full_null: Mapping[str, Any]
    null_ref: ad.AnnData
    prog_null: float
    distance_rep: str | None
    seed: int


def capped_reference(labels: np.ndarray, donors: np.ndarray, cap: int | None, *, seed: int) -> np.ndarray:
    """Sorted positions of a seeded subsample with at most ``cap`` cells of every (type, donor) pair (all
    positions when ``cap`` is None); pairs with fewer cells keep all of them."""
    if cap is None:
        return np.arange(len(labels))
    pairs = pd.Series(np.arange(len(labels))).groupby([labels, donors], sort=True)
    return capped_positions((g.to_numpy() for _, g in pairs), cap, np.random.default_rng([seed, 23]))


def _negative_type(
    latent: np.ndarray, labels: np.ndarray, classes: list[str], held: np.ndarray, min_cells: int
) -> str | None:
    """The reference type farthest from every other type (centroid distances) among the types with at least
    ``min_cells`` cells in every held-out donor (``held``: one row per held-out donor, True on its cells): a
    negative control scores that donor's cells of the type, and a handful of cells tests nothing. None when
    no type qualifies."""
    cents = np.vstack([latent[labels == c].mean(axis=0) for c in classes])
    dmat = np.linalg.norm(cents[:, None] - cents[None], axis=2)
    np.fill_diagonal(dmat, np.inf)
    far = dmat.min(axis=1)
    ok = [k for k, c in enumerate(classes) if all(((labels == c) & h).sum() >= min_cells for h in held)]
    return classes[max(ok, key=lambda k: far[k])] if ok else None


def _alias(adata: ad.AnnData) -> ad.AnnData:
    """A new AnnData on the same matrices as ``adata`` (X, layers, obsm, obsp, varm: shared, never written
    by the controls) with its own obs, var and uns, so annotating it leaves ``adata`` as it was. The full
    reference and the null reference of the controls are such aliases: two copies of the reference's counts
    less (about 2 x 0.75 of the dataset's matrices at any size)."""
    return ad.AnnData(
        X=adata.X,
        obs=adata.obs.copy(),
        var=adata.var.copy(),
        uns=copy.deepcopy(dict(adata.uns)),
        obsm=dict(adata.obsm),
        varm=dict(adata.varm),
        layers=dict(adata.layers),
        obsp=dict(adata.obsp),
    )


def _setup(
    adata: ad.AnnData,
    s: FidelitySettings,
    *,
    reference_key: str,
    use_rep: str,
    distance_rep: str | None,
    layer,
    seed,
    reference_null: Mapping[str, Any] | None = None,
) -> _ControlSetup:
    ref_mask = _reference_mask(adata, reference_key)
    sub = capped_reference(
        adata.obs[reference_key].astype(str).to_numpy()[ref_mask],
        _donor_column(adata, ref_mask)[ref_mask],
        s.controls_max_cells_per_type,
        seed=seed,
    )
    ref = adata[np.flatnonzero(ref_mask)[sub]].copy()
    if len(sub) < ref_mask.sum():
        logger.info(
            "controls: %d of %d reference cells (at most %d per type per donor, seed %d)",
            len(sub), int(ref_mask.sum()), s.controls_max_cells_per_type, seed,
        )  # fmt: skip
    if distance_rep is None:
        distance_rep = novelty_rep(ref, s, random_state=seed)
    labels = ref.obs[reference_key].astype(str).to_numpy()
    donors = _donor_column(ref, np.ones(ref.n_obs, bool))
    donor_list = sorted(pd.unique(donors))
    # a kNN mapping of this object with the same settings, seed and spaces (the stage's main mapping) has
    # this null when the controls keep every reference cell and its donors as folds: the thresholds come
    # from the reference cells' held-out folds alone, whatever the query cells
    reuse = len(sub) == ref_mask.sum() and len(donor_list) >= 2 and reference_null is not None
    if reuse:
        want = {"method": "knn", "reference_key": reference_key, "use_rep": use_rep, "null_given": False,
                "distance_rep": distance_rep, "random_state": seed, "settings": s.as_params()}  # fmt: skip
        reuse = all(reference_null["params"].get(k) == v for k, v in want.items())
    if len(donor_list) < 2:
        rng = np.random.default_rng([seed, 11])
        donors = np.where(rng.random(ref.n_obs) < 0.2, SPLIT_DONOR, "rest")
        donor_list = [SPLIT_DONOR]
    classes = sorted(pd.unique(labels))
    negative = s.negative_control_type
    if negative is None:
        space = use_rep if use_rep in ref.obsm else distance_rep
        held = np.array([donors == d for d in donor_list[:MAX_DONORS]])
        negative = _negative_type(
            np.asarray(ref.obsm[space], dtype=float), labels, classes, held, s.min_cells
        )
        if negative is None:
            logger.warning(
                "controls: no reference type has %d cells in every held-out donor; negative controls skipped",
                s.min_cells,
            )
    if reuse:
        logger.info("controls: the full reference's null is the main mapping's (every reference cell)")
        full_null = reference_null
    else:
        full_null = _full_null(ref, s, donors, reference_key, use_rep, distance_rep, layer, seed)
    null_ref = _alias(ref)
    null_ref.obs["donor"] = donors
    null_ref.obs["_ref"] = labels  # the label column the control objects use
    # HSC programme: the donor-to-donor null of the full reference (a held-out donor leaves one donor only)
    prog_null = _Reference(
        _counts(ref, layer),
        labels,
        donors,
        classes,
        min_cells=s.min_cells,
        hsc_label=_hsc_label(classes, s.hsc_label),
        seed=seed,
    ).hsc_null
    return _ControlSetup(
        ref,
        labels,
        donors,
        donor_list,
        negative,
        full_null,
        null_ref,
        prog_null,
        distance_rep,
        seed,
    )


def _full_null(
    ref: ad.AnnData,
    s: FidelitySettings,
    donors: np.ndarray,
    reference_key: str,
    use_rep: str,
    distance_rep: str,
    layer: str | None,
    seed: int,
) -> Mapping[str, Any]:
    """The full reference's null: ``uns["fidelity"]`` of the reference mapped onto itself, donors as folds."""
    full = _alias(ref)
    full.obs["donor"] = donors
    map_to_reference(
        full,
        settings=s,
        reference_key=reference_key,
        use_rep=use_rep,
        distance_rep=distance_rep,
        donor_key="donor",
        layer=layer,
        random_state=seed,
    )
    return full.uns["fidelity"]


def _control_programme(programme: pd.DataFrame | None, samples: pd.Series) -> pd.DataFrame | None:
    """The programme table row of a held-out donor: its samples' shares, weighted by their cells."""
    if programme is None or "hsc_programme_share" not in programme or "sample" not in programme:
        return None
    table = programme.assign(sample=programme["sample"].astype(str)).set_index("sample")
    n = samples.astype(str).value_counts()
    n = n[n.index.isin(table.index)]
    cols = [
        c
        for c in ("hsc_programme_share", "hsc_programme_share_ci_low", "hsc_programme_share_ci_high")
        if c in table
    ]
    values = table.loc[n.index, cols].astype(float)
    ok = np.isfinite(values["hsc_programme_share"].to_numpy())
    if not ok.any():
        return None
    w = n.to_numpy(dtype=float)[ok]
    row = {c: float(np.average(values[c].to_numpy()[ok], weights=w)) for c in cols}
    return pd.DataFrame([{"sample": CONTROL, **row}])


def _control_object(
    st: _ControlSetup, reference_key: str, held_donor: str, kind: str, *, alias: bool = True
) -> ad.AnnData:
    """Reference minus the held-out donor (minus the off-target type too for the negative control).

    The held-out donor's cells are the query (sample ``control``). A negative control queries only that
    donor's cells of the off-target type; the cells it leaves out (the donor's other cells, the other donors'
    cells of the type) stay in the object unlabelled, as sample ``excluded``, which the mapping leaves out
    (its ``query_mask``) and the scorecard does not score: a kNN mapping labels and measures each query cell
    against the reference alone (its smoothing groups are drawn per sample), so they change none of the
    control's numbers, and the control maps on the reference's own matrices. ``alias=False`` (scANVI
    surgery, which trains on every query cell) drops them from a copy instead.
    """
    held = st.donors == held_donor
    lab = st.labels.astype(object).copy()
    sample = np.where(held, CONTROL, "reference").astype(object)
    if kind == "negative":
        excluded = held != (st.labels == st.negative_type)
        sample[excluded] = EXCLUDED
        lab[excluded] = ""
    lab[held] = ""
    keep = sample != EXCLUDED
    copied = not alias and not keep.all()
    work = st.ref[keep].copy() if copied else _alias(st.ref)
    rows = keep if copied else slice(None)
    work.obs["_ref"] = pd.Series(lab[rows], index=work.obs_names).replace("", np.nan)
    work.obs["_sample"] = sample[rows]
    work.obs["_condition"] = np.where(sample[rows] == "reference", "in_vivo", sample[rows])
    work.obs["donor"] = st.donors[rows]
    work.obs["batch"] = st.donors[rows]
    return work


def _run_control(
    st: _ControlSetup,
    s: FidelitySettings,
    *,
    held_donor: str,
    kind: str,
    programme: pd.DataFrame | None,
    reference_key: str,
    sample_key: str,
    use_rep: str,
    layer: str | None,
    seed: int,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Map and score one control; returns its table row and the effective settings it ran with."""
    work = _control_object(st, reference_key, held_donor, kind, alias=s.mapping_method() == "knn")
    held_samples = (
        work.obs.loc[work.obs["_sample"] == CONTROL, sample_key] if sample_key in work.obs else None
    )
    prog = (
        _control_programme(programme, held_samples)
        if kind == "positive" and held_samples is not None
        else None
    )
    map_to_reference(
        work,
        settings=s,
        reference_key="_ref",
        use_rep=use_rep,
        distance_rep=st.distance_rep,
        sample_key="_sample",
        layer=layer,
        null=st.full_null,
        query_mask=(work.obs["_sample"] != EXCLUDED).to_numpy(),
        random_state=st.seed,
    )
    scorecard(
        work,
        settings=s.replace(n_bootstrap=s.controls_n_bootstrap),
        programme=prog,
        sample_key="_sample",
        condition_key="_condition",
        query_conditions=(CONTROL,),
        layer=layer,
        programme_null=st.prog_null,
        null_source=st.null_ref,
        random_state=seed,
    )
    row = work.uns["scorecard"]["table"].iloc[0].to_dict()
    f = row["fidelity_index"]
    if kind == "positive":
        name, expected, ok = f"positive: held-out donor {held_donor}", ">= 0.9", f >= 0.9
    else:
        name = f"negative: {st.negative_type} of {held_donor} absent from the reference"
        expected, ok = "<= 0.2", f <= 0.2
    logger.info(
        "control %s: fidelity index %.3f [%.3f, %.3f] (expected %s) -> %s",
        name,
        f,
        row["fidelity_index_ci_low"],
        row["fidelity_index_ci_high"],
        expected,
        "PASS" if ok else "FAIL",
    )
    drop = ("sample", "condition", "timepoint", "confounded")
    out = {"control": name, "kind": kind, "held_out": held_donor, "expected": expected, "pass": bool(ok)}
    out |= {k: v for k, v in row.items() if k not in drop}
    effective = {
        "mapping": dict(work.uns["fidelity"]["params"]),
        "scorecard": dict(work.uns["scorecard"]["params"]),
    }
    return out, effective


def controls(
    adata: ad.AnnData,
    *,
    settings: FidelitySettings | Mapping[str, Any] | None = None,
    programme: pd.DataFrame | None = None,
    reference_key: str = "reference_label",
    sample_key: str = "sample",
    use_rep: str = "X_integrated",
    distance_rep: str | None = None,
    layer: str | None = "counts",
    random_state: int | None = None,
    reference_null: Mapping[str, Any] | None = None,
    **overrides: Any,
) -> pd.DataFrame:
    """Positive and negative controls of the fidelity index, from the reference alone.

    Positive: each in vivo donor in turn (at most five) is removed from the reference and scored as a query
    (expected ``F >= 0.9``). Negative: one reference type (``negative_control_type``, default the type
    farthest from every other type among those with ``min_cells`` cells in every held-out donor; none
    qualifying: no negative controls) is removed from the reference as well, and that donor's cells of the
    type are scored as a query (expected ``F <= 0.2``: an off-target population absent from the reference).
    With a single donor, a random 20% of reference cells plays the held-out donor (``held_out`` is then
    ``heldout_20pct``: a split of one donor, not a second donor). Each control is mapped and scored
    with the scorecard's own setup (module docstring).

    Parameters
    ----------
    adata
        Cells with reference labels in ``obs[reference_key]`` (and ``obsm[use_rep]`` for kNN).
    settings
        The stage's settings: the same object the scorecard used.
    programme
        The score stage's programme table the scorecard used; a positive control's programme part is the
        cell-weighted ``hsc_programme_share`` of the held-out donor's samples (reference-derived when absent).
    reference_key
        obs column with the reference labels.
    sample_key
        obs column with samples (to find a held-out donor's rows of ``programme``).
    use_rep
        Shared latent used for kNN mapping.
    distance_rep
        ``obsm`` key where distances are measured: the scorecard's (default: from ``settings.novelty_space``).
    layer
        Layer with raw counts.
    random_state
        Seed (default ``settings.seed``).
    reference_null
        ``uns["fidelity"]`` of a mapping of ``adata`` (e.g. the scorecard's). When it is a kNN mapping with
        these settings, seed and spaces, and the controls use every reference cell and real donors, its
        thresholds are the full reference's null and the controls do not map the reference onto itself again
        (the same table, one mapping of the whole reference less).
    overrides
        Settings fields to change for this call, validated against the schema.

    Returns
    -------
    One row per control: control, held_out, expected, pass, fidelity_index (+ CI) and every part.
    ``attrs["settings"]`` holds the settings, ``attrs["effective"]`` the mapping and scorecard parameters
    each control ran with, ``attrs["null"]`` those of the full reference's null (the controls' thresholds),
    ``attrs["reference_cells"]`` the number of reference cells the controls used.
    """
    s = fidelity_settings(settings, **overrides)
    seed = s.seed if random_state is None else random_state
    st = _setup(
        adata,
        s,
        reference_key=reference_key,
        use_rep=use_rep,
        distance_rep=distance_rep,
        layer=layer,
        seed=seed,
        reference_null=reference_null,
    )
    rows, effective = [], []
    kinds = ("positive", "negative") if st.negative_type is not None else ("positive",)
    for k, d in enumerate(st.donor_list[:MAX_DONORS]):
        for kind in kinds:
            row, eff = _run_control(
                st,
                s,
                held_donor=d,
                kind=kind,
                programme=programme,
                reference_key=reference_key,
                sample_key=sample_key,
                use_rep=use_rep,
                layer=layer,
                seed=seed + k,
            )
            rows.append(row)
            effective.append(eff)
    table = pd.DataFrame(rows)
    table.attrs["settings"] = s.as_params()
    table.attrs["effective"] = effective
    table.attrs["null"] = dict(st.full_null["params"])
    table.attrs["reference_cells"] = st.ref.n_obs  # after controls_max_cells_per_type
    return table
