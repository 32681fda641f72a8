"""Positive and negative controls of the fidelity index."""

from __future__ import annotations

import logging
from collections.abc import Mapping

import anndata as ad
import numpy as np
import pandas as pd

from hscseq.fidelity.mapping import _reference_mask, map_to_reference
from hscseq.fidelity.parts import (
    _counts,
    _donor_column,
    _hsc_label,
    _Reference,
)
from hscseq.fidelity.scorecard import scorecard
from hscseq.fidelity.settings import PARTS

logger = logging.getLogger(__name__)


def controls(
    adata: ad.AnnData,
    *,
    reference_key: str = "reference_label",
    use_rep: str = "X_integrated",
    n_neighbors: int = 15,
    null_quantile: float = 0.99,
    absent_quantile: float = 0.05,
    layer: str | None = "counts",
    min_confidence: float = 0.5,
    min_cells: int = 10,
    n_genes: int = 2000,
    weights: Mapping[str, float] | None = None,
    negative_control_type: str | None = None,
    hsc_label: str | None = None,
    n_bootstrap: int = 100,
    random_state: int = 0,
) -> pd.DataFrame:
    """Positive and negative controls of the fidelity index, from the reference alone.

    Positive: each in vivo donor in turn is removed from the reference and scored as a query (expected
    ``F >= 0.9``). Negative: one reference type (``negative_control_type``, default the type farthest from
    every other type in the latent) is removed from the reference as well, and that donor's cells of the type
    are scored as a query (expected ``F <= 0.2``: an off-target population absent from the reference).
    With a single donor, a random 20% of reference cells plays the held-out donor.

    Parameters
    ----------
    adata
        Cells with reference labels in ``obs[reference_key]`` and the latent ``obsm[use_rep]``.
    reference_key
        obs column with the reference labels.
    use_rep
        Shared latent used for kNN mapping.
    n_neighbors
        Number of reference neighbours.
    null_quantile
        Quantile of the held-out null above which a cell is novel.
    absent_quantile
        Quantile of the held-out-type null a novel cell must also exceed (:func:`novelty_thresholds`).
    layer
        Layer with raw counts.
    min_confidence
        Label probability needed to count a cell as confidently mapped.
    min_cells
        Cells of a type needed for a pseudobulk.
    n_genes
        Informative genes for correlations.
    weights
        Index weights (default equal).
    negative_control_type
        Reference type used as the off-target population.
    hsc_label
        Reference label of HSCs.
    n_bootstrap
        Bootstrap replicates.
    random_state
        Seed.

    Returns
    -------
    One row per control: control, held_out, expected, pass, fidelity_index (+ CI) and every part.
    """
    ref_mask = _reference_mask(adata, reference_key)
    ref = adata[ref_mask].copy()
    labels = ref.obs[reference_key].astype(str).to_numpy()
    donors = _donor_column(ref, np.ones(ref.n_obs, bool))
    donor_list = sorted(pd.unique(donors))
    rng = np.random.default_rng([random_state, 11])
    if len(donor_list) < 2:
        donors = np.where(rng.random(ref.n_obs) < 0.2, "heldout_20pct", "rest")
        donor_list = ["heldout_20pct"]
    latent = np.asarray(ref.obsm[use_rep], dtype=float)
    classes = sorted(pd.unique(labels))
    if negative_control_type is None:
        cents = np.vstack([latent[labels == c].mean(axis=0) for c in classes])
        dmat = np.linalg.norm(cents[:, None] - cents[None], axis=2)
        np.fill_diagonal(dmat, np.inf)
        negative_control_type = classes[int(np.argmax(dmat.min(axis=1)))]
    weights = dict(weights or {p: 1.0 for p in PARTS})
    full = ref.copy()
    full.obs["donor"] = donors
    map_to_reference(
        full,
        reference_key=reference_key,
        use_rep=use_rep,
        n_neighbors=n_neighbors,
        null_quantile=null_quantile,
        absent_quantile=absent_quantile,
        donor_key="donor",
        random_state=random_state,
    )
    full_null = full.uns["fidelity"]
    null_ref = ref.copy()
    null_ref.obs["donor"] = donors
    null_ref.obs["_ref"] = labels  # the label column the control objects use
    # HSC programme: the donor-to-donor null of the full reference (a held-out donor leaves one donor only)
    x_full = _counts(ref, layer)
    prog_null = _Reference(
        x_full,
        labels,
        donors,
        classes,
        min_cells=min_cells,
        hsc_label=_hsc_label(classes, hsc_label),
        seed=random_state,
    ).hsc_null
    rows = []
    for k, d in enumerate(donor_list[:5]):
        for kind in ("positive", "negative"):
            work = ref.copy()
            held = donors == d
            lab = labels.astype(object).copy()
            if kind == "positive":
                lab[held] = ""
                keep = np.ones(ref.n_obs, bool)
            else:
                is_type = labels == negative_control_type
                keep = (~held & ~is_type) | (held & is_type)
                lab[held] = ""
            work = work[keep].copy()
            work.obs["_ref"] = pd.Series(lab[keep], index=work.obs_names).replace("", np.nan)
            work.obs["_sample"] = np.where(held[keep], "control", "reference")
            work.obs["_condition"] = np.where(held[keep], "control", "in_vivo")
            work.obs["donor"] = donors[keep]
            work.obs["batch"] = donors[keep]
            map_to_reference(
                work,
                reference_key="_ref",
                use_rep=use_rep,
                n_neighbors=n_neighbors,
                null_quantile=null_quantile,
                absent_quantile=absent_quantile,
                donor_key=None,
                sample_key="_sample",
                null=full_null,
                random_state=random_state,
            )
            scorecard(
                work,
                sample_key="_sample",
                condition_key="_condition",
                query_conditions=("control",),
                layer=layer,
                weights=weights,
                min_confidence=min_confidence,
                min_cells=min_cells,
                n_genes=n_genes,
                hsc_label=hsc_label,
                n_bootstrap=n_bootstrap,
                programme_null=prog_null,
                null_source=null_ref,
                random_state=random_state + k,
            )
            row = work.uns["scorecard"]["table"].iloc[0].to_dict()
            f = row["fidelity_index"]
            if kind == "positive":
                name, expected, ok = f"positive: held-out donor {d}", ">= 0.9", f >= 0.9
            else:
                name, expected, ok = (
                    f"negative: {negative_control_type} of {d} absent from the reference",
                    "<= 0.2",
                    f <= 0.2,
                )
            rows.append(
                {
                    "control": name,
                    "kind": kind,
                    "held_out": d,
                    "expected": expected,
                    "pass": bool(ok),
                    **{
                        k2: v
                        for k2, v in row.items()
                        if k2 not in ("sample", "condition", "timepoint", "confounded")
                    },
                }
            )
            logger.info(
                "control %s: fidelity index %.3f [%.3f, %.3f] (expected %s) -> %s",
                name,
                f,
                row["fidelity_index_ci_low"],
                row["fidelity_index_ci_high"],
                expected,
                "PASS" if ok else "FAIL",
            )
    return pd.DataFrame(rows)
