"""HSC identity as a combination of programmes, per cell (issue #13).

A native HSC programme score alone is fooled by cells that switch on part of it: arterial / haemogenic
endothelium expresses many HSC genes (Procr, Esam, Vwf, Ly6a, Mecom, Gata2, Sox18, Ramp2...), EHT-stalled
cells add Runx1, and committed progenitors keep part of the programme. Each cell is therefore scored for
several programmes, each against its own expression-matched null (z-scores of :func:`score_signatures`):
the native HSC programme, haematopoietic identity, the endothelial programme, the EHT programme and the
committed-lineage programmes (plus, in human, the Calvanese 2022 co-expression gate). The rules, in order
(first match wins; ``on`` means z >= the programme's threshold):

1. ``committed progenitor``: haematopoietic on, endothelial off, and the strongest lineage programme on with
   a larger margin over its threshold than the HSC programme's (margin = z - threshold);
2. ``HSC-like``: HSC programme on (and the human gate passed), haematopoietic on, endothelial off;
3. ``pre-HSC/EHT-like``: HSC programme on (gate passed) and either endothelial on with EHT or haematopoietic
   on, or EHT on without full haematopoietic identity (early precursors can be CD45-negative and
   Cdh5-positive);
4. ``endothelial look-alike``: endothelial on, neither EHT nor haematopoietic on (whatever its HSC genes);
5. ``committed progenitor``: haematopoietic on, a lineage programme on, HSC programme off;
6. ``other``.

Haematopoietic identity only counts when it is not overshadowed by endothelial identity (an endothelial cell
with a larger endothelial margin than haematopoietic margin is not haematopoietic: this keeps the rules
sane when the in vivo HSCs anchor the haematopoietic threshold low). A programme that could not be scored
(too few genes measured: NaN) drops out of the rules: it neither blocks nor supports a call (an unscored
haematopoietic programme does not stop HSC-like or committed calls, nor counts as a haematopoietic signal
against an endothelial look-alike); endothelial / EHT / lineage count as off. Thresholds
(:func:`identity_thresholds`) are anchored on the in vivo reference HSCs of the run when there are at least
``min_reference_cells`` of them; otherwise documented defaults (``z_on``) apply. The continuous identity
score (:func:`identity_score`) is the HSC programme margin minus how far each other condition is failed, so
ranking cells by it ranks HSC identity.

Numeric cores (:func:`identity_thresholds`, :func:`identity_calls`, :func:`identity_score`,
:func:`class_fraction_ci`) take arrays; :func:`hsc_identity` is the AnnData wrapper.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from hscseq._labels import DEFAULT_HSC_LABELS
from hscseq._utils import input_error
from hscseq.genes import convert_symbols
from hscseq.merge import analysis_species
from hscseq.score.likeness import _reference_hsc_mask

logger = logging.getLogger(__name__)

#: The per-cell classes, in the order of the table columns.
IDENTITY_CLASSES: tuple[str, ...] = (
    "HSC-like",
    "pre-HSC/EHT-like",
    "endothelial look-alike",
    "committed progenitor",
    "other",
)

#: Column-name slug of each class in hsc_programme.tsv.
CLASS_SLUGS: dict[str, str] = {
    "HSC-like": "hsc_like",
    "pre-HSC/EHT-like": "pre_hsc_eht_like",
    "endothelial look-alike": "endothelial_lookalike",
    "committed progenitor": "committed_progenitor",
    "other": "other",
}

#: Calvanese et al. 2022 (doi:10.1038/s41586-022-04571-x): RUNX1+HOXA9+MLLT3+MECOM+HLF+SPINK2+ HSCs.
CALVANESE_GATE: tuple[str, ...] = ("RUNX1", "HOXA9", "MLLT3", "MECOM", "HLF", "SPINK2")

#: Programmes whose z-scores the rules use (obs columns ``score_<name>_z``).
PROGRAMMES = ("haematopoietic", "endothelial", "eht")

#: Lineage signatures that are not committed lineages (multipotent progenitors).
NOT_COMMITTED = ("mpp_lmpp",)


def _quantile(values: np.ndarray, q: float) -> float:
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    return float(np.quantile(values, q)) if len(values) else float("nan")


def identity_thresholds(
    z: Mapping[str, np.ndarray],
    reference: np.ndarray,
    *,
    gate_count: np.ndarray | None = None,
    z_on: float = 3.0,
    quantile: float = 0.1,
    min_reference_cells: int = 20,
    gate_min: int = 3,
) -> tuple[dict, dict[str, str]]:
    """Thresholds of each programme and how each was set (``lineage``: one per column of ``z['lineage']``).

    ``z`` maps ``hsc``, ``haematopoietic``, ``endothelial``, ``eht`` to per-cell z-scores and ``lineage`` to
    a cells x lineages array;
    ``reference`` marks in vivo reference HSCs. With at least ``min_reference_cells`` reference HSCs:
    HSC programme on = at least the ``quantile`` of reference HSCs (and at least ``z_on``: it must beat the
    null); haematopoietic on = at least ``z_on`` or the ``quantile`` of reference HSCs if lower (the
    reference shows what an HSC's haematopoietic signal looks like at this depth); endothelial on = above
    ``z_on`` and above the ``1 - quantile`` quantile of reference HSCs (HSCs' own endothelial-gene signal is
    not held against them), the same for each committed lineage separately (HSC lineage priming); human
    gate = at least ``gate_min`` of the gate genes detected, or the ``quantile`` of reference HSCs if lower.
    EHT: ``z_on``. Without enough reference HSCs every threshold is its default (``z_on``, ``gate_min``).
    """
    reference = np.asarray(reference, dtype=bool)
    n_ref = int(reference.sum())
    t: dict = {k: z_on for k in ("hsc", "progenitor", "haematopoietic", "endothelial", "eht", "lineage")}
    t["gate"] = float(gate_min)
    how = {k: f"default z >= {z_on:g}" for k in t}
    how["gate"] = f"default: >= {gate_min} gate genes detected"
    if n_ref >= min_reference_cells:
        q = _quantile(z["hsc"][reference], quantile)
        if np.isfinite(q):
            t["hsc"] = max(q, z_on)
            how["hsc"] = f"max(z_on, {quantile:g} quantile of {n_ref} in vivo HSCs = {q:.3g})"
        q = _quantile(z["haematopoietic"][reference], quantile)
        if np.isfinite(q):
            t["haematopoietic"] = min(q, z_on)
            how["haematopoietic"] = f"min(z_on, {quantile:g} quantile of in vivo HSCs = {q:.3g})"
        q = _quantile(z["endothelial"][reference], 1 - quantile)  # HSCs' own endothelial genes are allowed
        if np.isfinite(q):
            t["endothelial"] = max(q, z_on)
            how["endothelial"] = f"max(z_on, {1 - quantile:g} quantile of in vivo HSCs = {q:.3g})"
        lin = _as_2d(z["lineage"])  # each lineage on its own: HSC priming of one lineage is allowed
        qs = np.array([_quantile(lin[reference, j], 1 - quantile) for j in range(lin.shape[1])])
        t["lineage"] = np.where(np.isfinite(qs), np.maximum(qs, z_on), z_on)
        how["lineage"] = f"per lineage max(z_on, {1 - quantile:g} quantile of in vivo HSCs)"
        if gate_count is not None:
            q = _quantile(gate_count[reference], quantile)
            if np.isfinite(q):
                t["gate"] = min(q, float(gate_min))
                how["gate"] = f"min({gate_min}, {quantile:g} quantile of in vivo HSCs = {q:.3g})"
    return t, how


def _as_2d(values: np.ndarray) -> np.ndarray:
    values = np.asarray(values, dtype=float)
    return values[:, None] if values.ndim == 1 else values


def lineage_margin(z_lineage: np.ndarray, thresholds: float | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per cell the largest lineage margin ``z - threshold`` (NaN if no lineage scored) and its column."""
    m = _as_2d(z_lineage) - np.asarray(thresholds, dtype=float)
    finite = np.isfinite(m).any(axis=1)
    best = np.where(finite, np.argmax(np.where(np.isfinite(m), m, -np.inf), axis=1), 0)
    return np.where(finite, m[np.arange(len(m)), best], np.nan), best


def _on(values: np.ndarray, threshold: float, *, if_missing: bool) -> np.ndarray:
    values = np.asarray(values, dtype=float)
    return np.where(np.isfinite(values), values >= threshold, if_missing)


def identity_calls(
    z: Mapping[str, np.ndarray],
    thresholds: Mapping[str, float],
    *,
    gate_count: np.ndarray | None = None,
) -> np.ndarray:
    """Per-cell identity class (:data:`IDENTITY_CLASSES`) from programme z-scores (rules: module doc)."""
    hsc = _on(z["hsc"], thresholds["hsc"], if_missing=False)
    if gate_count is not None:
        hsc &= np.asarray(gate_count, dtype=float) >= thresholds["gate"]
    endo = _on(z["endothelial"], thresholds["endothelial"], if_missing=False)
    # haematopoietic identity does not count where a stronger endothelial identity overshadows it
    m_haem = np.asarray(z["haematopoietic"], dtype=float) - thresholds["haematopoietic"]
    m_endo = np.asarray(z["endothelial"], dtype=float) - thresholds["endothelial"]
    overshadowed = endo & (m_endo > np.nan_to_num(m_haem, nan=np.inf))
    haem_signal = _on(z["haematopoietic"], thresholds["haematopoietic"], if_missing=False) & ~overshadowed
    haem = haem_signal | ~np.isfinite(m_haem)  # an unscored programme does not block a call
    eht = _on(z["eht"], thresholds["eht"], if_missing=False)
    m_lin = np.nan_to_num(lineage_margin(z["lineage"], thresholds["lineage"])[0], nan=-np.inf)
    lineage = m_lin >= 0
    m_hsc = np.nan_to_num(np.asarray(z["hsc"], dtype=float) - thresholds["hsc"], nan=-np.inf)
    lineage_dominant = lineage & (m_lin > m_hsc)
    conditions = [
        haem & ~endo & lineage_dominant,
        hsc & haem & ~endo,
        hsc & ((endo & (eht | haem_signal)) | (eht & ~haem_signal)),
        endo & ~eht & ~haem_signal,
        haem & lineage & ~hsc,
    ]
    choices = ["committed progenitor", "HSC-like", "pre-HSC/EHT-like", "endothelial look-alike"]
    choices.append("committed progenitor")
    return np.select(conditions, choices, default="other").astype(object)


def identity_score(
    z: Mapping[str, np.ndarray],
    thresholds: Mapping[str, float],
    *,
    gate_count: np.ndarray | None = None,
) -> np.ndarray:
    """Continuous HSC identity: HSC-programme margin minus every failed condition's shortfall.

    With margins ``m_x = z_x - t_x``: ``score = s + min(0, m_haem) - max(0, m_endo) - max(0, m_lineage)
    [+ min(0, gate_count - t_gate) in human]`` where ``s = m_hsc`` when the HSC programme is on and else
    ``max(m_hsc, min(m_progenitor, 0))`` (multipotent progenitors, which keep part of the HSC state, rank
    above cells with neither programme; never above a cell with the HSC programme on). Unscored programmes
    contribute 0. The endothelial and lineage
    thresholds sit above what in vivo HSCs show, so only signal in excess of an HSC's is held against a
    cell. Cells passing every HSC-like condition keep their native-programme ordering;
    look-alikes lose what they lack (haematopoietic identity) and what they carry in excess (endothelial or
    committed-lineage programmes).

    """

    def arr(key: str) -> np.ndarray:
        return np.asarray(z[key], dtype=float)

    m_hsc = arr("hsc") - thresholds["hsc"]
    score = m_hsc.copy()
    if "progenitor" in z:  # below the HSC threshold, multipotent-progenitor signal ranks before none
        m_mpp = np.minimum(arr("progenitor") - thresholds.get("progenitor", thresholds["hsc"]), 0.0)
        score = np.where(m_hsc < 0, np.fmax(m_hsc, m_mpp), m_hsc)
    score += np.nan_to_num(np.minimum(0.0, arr("haematopoietic") - thresholds["haematopoietic"]))
    score -= np.nan_to_num(np.maximum(0.0, arr("endothelial") - thresholds["endothelial"]))
    score -= np.nan_to_num(np.maximum(0.0, lineage_margin(z["lineage"], thresholds["lineage"])[0]))
    if gate_count is not None:
        score += np.minimum(0.0, np.asarray(gate_count, dtype=float) - thresholds["gate"])
    return score


def class_fraction_ci(
    calls: np.ndarray,
    classes: Sequence[str] = IDENTITY_CLASSES,
    *,
    n_bootstrap: int = 1000,
    rng: np.random.Generator,
    level: float = 0.95,
) -> pd.DataFrame:
    """Fraction of each class among ``calls`` with a percentile bootstrap CI over cells (multinomial)."""
    calls = np.asarray(calls, dtype=object)
    n = len(calls)
    counts = np.array([(calls == c).sum() for c in classes], dtype=float)
    if n == 0:
        nan = np.full(len(classes), np.nan)
        return pd.DataFrame({"class": classes, "n": 0, "fraction": nan, "ci_low": nan, "ci_high": nan})
    draws = rng.multinomial(n, counts / n, size=n_bootstrap) / n
    alpha = (1 - level) / 2
    return pd.DataFrame(
        {
            "class": list(classes),
            "n": counts.astype(int),
            "fraction": counts / n,
            "ci_low": np.quantile(draws, alpha, axis=0),
            "ci_high": np.quantile(draws, 1 - alpha, axis=0),
        }
    )


# --------------------------------------------------------------------------------------------------------
# AnnData wrapper


def gate_counts(
    adata: ad.AnnData, genes: Sequence[str] = CALVANESE_GATE, *, species: str, layer: str | None = None
) -> tuple[np.ndarray, list[str]]:
    """Per cell, how many of the (human) gate genes are detected; also returns the genes measured."""
    converted = [c for c in convert_symbols(list(genes), "human", species) if c is not None]
    upper = {str(v).upper(): i for i, v in enumerate(adata.var_names)}
    idx = [upper[g.upper()] for g in converted if g.upper() in upper]
    X = adata.layers[layer] if layer is not None else adata.X
    sub = X[:, idx] if idx else sp.csr_matrix((adata.n_obs, 0))
    detected = np.asarray((sub > 0).sum(axis=1)).ravel()
    return detected.astype(float), [str(adata.var_names[i]) for i in idx]


def _lineage_keys(adata: ad.AnnData, signatures_key: str) -> list[str]:
    try:
        cov = adata.uns[signatures_key]["coverage"]
        prefix = adata.uns[signatures_key]["params"].get("prefix", "score_")
    except (KeyError, TypeError):
        return []
    names = cov.loc[(cov["role"] == "lineage") & cov["scored"].astype(bool), "signature"]
    return [f"{prefix}{n}_z" for n in names if n not in NOT_COMMITTED and f"{prefix}{n}_z" in adata.obs]


def programme_z_scores(
    adata: ad.AnnData,
    keys: Mapping[str, str],
    lineage_keys: Sequence[str] | None = None,
    signatures_key: str = "signatures",
) -> tuple[dict[str, np.ndarray], list[str]]:
    """Per-cell programme z-scores for the rules (a missing column: NaN, unscored) and the lineage columns.

    ``keys`` maps ``hsc``, ``haematopoietic``, ``endothelial``, ``eht`` and ``progenitor`` to ``obs``
    columns; ``z['lineage']`` is cells x lineages (default lineages: :func:`_lineage_keys`). The HSC column
    must exist.
    """
    if keys["hsc"] not in adata.obs:
        raise input_error(f"obs[{keys['hsc']!r}] is missing.", fix="score the HSC signature first.")
    nan = np.full(adata.n_obs, np.nan)

    def col(key: str) -> np.ndarray:
        return adata.obs[key].to_numpy(dtype=float) if key in adata.obs else nan

    lineage_keys = list(_lineage_keys(adata, signatures_key) if lineage_keys is None else lineage_keys)
    z = {name: col(key) for name, key in keys.items()}
    z["lineage"] = np.column_stack([col(k) for k in lineage_keys]) if lineage_keys else nan[:, None]
    return z, lineage_keys


def _gate(
    adata: ad.AnnData, genes: Sequence[str], *, species: str | None, use_gate: bool | None
) -> tuple[bool, np.ndarray | None, list[str]]:
    """Whether the co-expression gate applies (default: human analyses), its per-cell counts and genes."""
    species = species or analysis_species(adata)
    use_gate = species == "human" if use_gate is None else bool(use_gate)
    if not use_gate:
        return False, None, []
    return True, *gate_counts(adata, genes, species=species)


def _anchored_thresholds(
    z: Mapping[str, np.ndarray], reference: np.ndarray, gate: np.ndarray | None, anchors: Mapping
) -> tuple[dict, dict[str, str]]:
    """:func:`identity_thresholds` with ``anchors`` (z_on, quantile, min_reference_cells, gate_min); warns
    when there are too few reference HSCs to anchor on."""
    thresholds, how = identity_thresholds(z, reference, gate_count=gate, **anchors)
    if reference.sum() < anchors["min_reference_cells"]:
        logger.warning(
            "only %d in vivo reference HSCs: identity thresholds are the defaults (z >= %g)",
            int(reference.sum()),
            anchors["z_on"],
        )
    return thresholds, how


def _write_calls(
    adata: ad.AnnData,
    z: Mapping[str, np.ndarray],
    thresholds: Mapping,
    gate: np.ndarray | None,
    lineage_keys: Sequence[str],
    key_added: str,
) -> tuple[np.ndarray, list[str]]:
    """Write the class, identity score, strongest lineage on and (human) gate count per cell into ``obs``.

    Returns the calls and the lineage names (``[""]`` without lineages).
    """
    calls = identity_calls(z, thresholds, gate_count=gate)
    adata.obs[key_added] = pd.Categorical(calls, categories=list(IDENTITY_CLASSES))
    adata.obs[f"{key_added}_score"] = identity_score(z, thresholds, gate_count=gate).astype(np.float32)
    names = [k.removeprefix("score_").removesuffix("_z") for k in lineage_keys] or [""]
    m_lin, best = lineage_margin(z["lineage"], thresholds["lineage"])
    on = np.isfinite(m_lin) & (m_lin >= 0)
    adata.obs[f"{key_added}_lineage"] = np.where(on, np.asarray(names, dtype=object)[best], "")
    if gate is not None:
        adata.obs[f"{key_added}_gate"] = gate.astype(np.int16)
    return calls, names


def _identity_uns(
    params: dict,
    thresholds: Mapping,
    how: Mapping[str, str],
    names: Sequence[str],
    calls: np.ndarray,
    reference: np.ndarray,
    samples: pd.DataFrame,
) -> dict:
    """``uns[key_added]`` of :func:`hsc_identity` (and the log line of thresholds and class counts)."""
    logger.info(
        "HSC identity thresholds %s; classes %s",
        {k: np.round(v, 2) for k, v in thresholds.items()},
        pd.Series(calls).value_counts().to_dict(),
    )
    return {
        "params": params,
        "thresholds": {k: float(v) for k, v in thresholds.items() if k != "lineage"},
        "lineage_thresholds": dict(
            zip(names, np.broadcast_to(thresholds["lineage"], len(names)).tolist(), strict=True)
        ),
        "how": how,
        "rules": RULES,
        "n_reference_hsc": int(reference.sum()),
        "reference_hsc_sensitivity": float(np.mean(calls[reference] == "HSC-like"))
        if reference.any()
        else float("nan"),
        "samples": samples,
    }


def hsc_identity(
    adata: ad.AnnData,
    *,
    hsc_key: str = "score_hsc_native_z",
    haematopoietic_key: str = "score_haematopoietic_z",
    endothelial_key: str = "score_endothelial_z",
    eht_key: str = "score_eht_z",
    progenitor_key: str = "score_mpp_lmpp_z",
    lineage_keys: Sequence[str] | None = None,
    species: str | None = None,
    use_gate: bool | None = None,
    gate_genes: Sequence[str] = CALVANESE_GATE,
    sample_key: str = "sample",
    condition_key: str = "condition",
    label_key: str = "reference_label",
    reference_condition: str = "in_vivo",
    hsc_labels: Sequence[str] = DEFAULT_HSC_LABELS,
    z_on: float = 3.0,
    quantile: float = 0.1,
    min_reference_cells: int = 20,
    gate_min: int = 3,
    n_bootstrap: int = 1000,
    signatures_key: str = "signatures",
    key_added: str = "hsc_identity",
    random_state: int = 0,
    copy: bool = False,
) -> ad.AnnData | None:
    """Per-cell HSC identity call and continuous identity score from programme z-scores.

    Parameters
    ----------
    adata
        Cells scored by :func:`score_signatures` for the HSC, ``haematopoietic``, ``endothelial``, ``eht``
        and lineage signatures (log-normalised ``X`` for the gate).
    hsc_key
        ``obs`` column of the native HSC programme z-score (required; other programme columns may be absent).
    haematopoietic_key
        ``obs`` column of the haematopoietic-identity z-score.
    endothelial_key
        ``obs`` column of the endothelial z-score.
    eht_key
        ``obs`` column of the EHT z-score.
    progenitor_key
        ``obs`` column of the multipotent-progenitor z-score (orders cells below the HSC threshold only).
    lineage_keys
        ``obs`` z-score columns of the committed lineages (default: every scored signature of role
        ``lineage`` except ``mpp_lmpp``); the per-cell maximum is the lineage programme.
    species
        Analysis species (default :func:`analysis_species`).
    use_gate
        Apply the Calvanese 2022 co-expression gate (default: in human only).
    gate_genes
        Gate genes (human symbols, translated for other species).
    sample_key
        ``obs`` column with samples.
    condition_key
        ``obs`` column with conditions.
    label_key
        ``obs`` column with the in vivo reference labels.
    reference_condition
        Condition of the in vivo cells that anchor the thresholds.
    hsc_labels
        Reference labels that are HSCs.
    z_on
        Default threshold of every programme z-score (p ~ 0.001 under a normal null).
    quantile
        Quantile of reference HSCs anchoring the thresholds (:func:`identity_thresholds`).
    min_reference_cells
        Fewer reference HSCs: default thresholds, with a warning.
    gate_min
        Default minimum number of gate genes detected.
    n_bootstrap
        Bootstrap replicates of the per-sample class fractions.
    signatures_key
        ``uns`` key written by :func:`score_signatures` (to find the lineage signatures).
    key_added
        ``obs[key_added]`` (categorical call), ``obs[key_added + "_score"]``, ``obs[key_added + "_lineage"]``
        (strongest lineage), ``obs[key_added + "_gate"]`` (human) and ``uns[key_added]``.
    random_state
        Seed of the bootstrap.
    copy
        Return a modified copy instead of writing into ``adata``.

    Returns
    -------
    ``None``, or the modified copy when ``copy=True``. ``uns[key_added]`` holds ``thresholds``, ``how``
    (how each threshold was set), ``rules``, ``samples`` (per sample and class: n, fraction, 95% CI, in wide
    form ``frac_<class>``, ``frac_<class>_ci_low``, ``frac_<class>_ci_high``), ``n_reference_hsc`` and
    ``params``.
    """
    adata = adata.copy() if copy else adata
    keys = {"hsc": hsc_key, "haematopoietic": haematopoietic_key, "endothelial": endothelial_key}
    keys.update(eht=eht_key, progenitor=progenitor_key)
    z, lineage_keys = programme_z_scores(adata, keys, lineage_keys, signatures_key)
    use_gate, gate, gate_measured = _gate(adata, gate_genes, species=species, use_gate=use_gate)
    reference = _reference_hsc_mask(
        adata,
        condition_key=condition_key,
        label_key=label_key,
        reference_condition=reference_condition,
        hsc_labels=hsc_labels,
    )
    anchors = dict(z_on=z_on, quantile=quantile, min_reference_cells=min_reference_cells, gate_min=gate_min)
    thresholds, how = _anchored_thresholds(z, reference, gate, anchors)
    calls, names = _write_calls(adata, z, thresholds, gate, lineage_keys, key_added)
    samples = _sample_table(adata, calls, sample_key, condition_key, n_bootstrap, random_state)
    params = {
        **{f"{k}_key": v for k, v in keys.items()},
        "lineage_keys": lineage_keys,
        "use_gate": use_gate,
        "gate_genes_measured": gate_measured,
        **anchors,
        "n_bootstrap": n_bootstrap,
        "reference_condition": reference_condition,
        "hsc_labels": list(hsc_labels),
        "random_state": random_state,
    }
    adata.uns[key_added] = _identity_uns(params, thresholds, how, names, calls, reference, samples)
    return adata if copy else None


RULES = (
    "first match wins; on = z >= threshold. committed progenitor: haematopoietic on, endothelial off, "
    "strongest lineage on, its margin above the HSC margin | HSC-like: HSC on (+human gate), haematopoietic "
    "on, endothelial off | pre-HSC/EHT-like: HSC on (+gate) and (endothelial on with EHT or haematopoietic "
    "on, or EHT on without haematopoietic) | "
    "endothelial look-alike: endothelial on, EHT and haematopoietic off | committed progenitor: "
    "haematopoietic on, a lineage on, HSC off | other. Haematopoietic counts as off where endothelial is on "
    "with a larger margin."
)


def _sample_table(
    adata: ad.AnnData,
    calls: np.ndarray,
    sample_key: str,
    condition_key: str,
    n_bootstrap: int,
    random_state: int,
) -> pd.DataFrame:
    rng = np.random.default_rng(random_state)
    samples = (
        adata.obs[sample_key].astype(str).to_numpy()
        if sample_key in adata.obs
        else np.full(adata.n_obs, "all", dtype=object)
    )
    conditions = adata.obs[condition_key].astype(str).to_numpy() if condition_key in adata.obs else samples
    rows = []
    for s in pd.unique(samples):
        idx = np.flatnonzero(samples == s)
        ci = class_fraction_ci(calls[idx], n_bootstrap=n_bootstrap, rng=rng)
        row: dict = {"sample": s, "condition": conditions[idx[0]], "n_cells": len(idx)}
        for r in ci.itertuples():
            slug = CLASS_SLUGS[r[1]]
            row[f"n_{slug}"] = int(r.n)
            row[f"frac_{slug}"] = float(r.fraction)
            row[f"frac_{slug}_ci_low"] = float(r.ci_low)
            row[f"frac_{slug}_ci_high"] = float(r.ci_high)
        rows.append(row)
    return pd.DataFrame(rows)


def hsc_like_summary(adata: ad.AnnData, *, key: str = "hsc_identity", key_added: str = "hsc_like") -> None:
    """``obs[key_added]`` (bool, HSC-like call) and ``uns[key_added]`` in the layout of :func:`hsc_likeness`.

    The per-sample HSC-like fraction and its CI come from the identity classes; ``threshold`` is 0 on the
    identity score (the HSC-programme threshold); ``in_vivo_non_hsc_rate`` is the share of in vivo cells
    not labelled HSC that are called HSC-like.
    """
    info = adata.uns[key]
    calls = adata.obs[key].astype(str).to_numpy()
    adata.obs[key_added] = calls == "HSC-like"
    samples = info["samples"]
    table = pd.DataFrame(
        {
            "sample": samples["sample"],
            "condition": samples["condition"],
            "n_cells": samples["n_cells"],
            "n_hsc_like": samples["n_hsc_like"],
            "hsc_like_fraction": samples["frac_hsc_like"],
            "hsc_like_ci_low": samples["frac_hsc_like_ci_low"],
            "hsc_like_ci_high": samples["frac_hsc_like_ci_high"],
        }
    )
    params = info["params"]
    condition = (
        adata.obs["condition"].astype(str).to_numpy()
        if "condition" in adata.obs
        else np.full(adata.n_obs, "", dtype=object)
    )
    labels = (
        adata.obs["reference_label"].astype(str).str.lower().to_numpy()
        if "reference_label" in adata.obs
        else np.full(adata.n_obs, "", dtype=object)
    )
    in_vivo = condition == params["reference_condition"]
    hsc_labels = params.get("hsc_labels", DEFAULT_HSC_LABELS)
    hsc = in_vivo & np.isin(labels, [h.lower() for h in hsc_labels])
    other = in_vivo & ~hsc
    adata.uns[key_added] = {
        "params": {"identity_key": key, "reference_condition": params["reference_condition"]},
        "threshold": 0.0,
        "rule": f"identity class 'HSC-like' ({RULES})",
        "n_reference_hsc": info["n_reference_hsc"],
        "reference_hsc_sensitivity": info["reference_hsc_sensitivity"],
        "in_vivo_non_hsc_rate": float(np.mean(calls[other] == "HSC-like"))
        if other.any() and hsc.any()
        else float("nan"),
        "samples": table,
    }
