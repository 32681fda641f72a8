"""Signature scoring of AnnData cells with an expression-matched empirical null (scanpy conventions).

:func:`score_signatures` is the AnnData wrapper of the numeric cores in :mod:`hscseq.score.cores`: it maps
each signature onto the measured genes (:func:`~hscseq.score.signatures.resolve_genes`), records the coverage
and writes score, z-score and empirical p-value per cell.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping, Sequence

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from hscseq._utils import input_error
from hscseq.merge import analysis_species
from hscseq.score.cores import (
    aucell_rank_matrix,
    aucell_top_n,
    expression_bins,
    null_statistics,
    signature_with_null,
)
from hscseq.score.signatures import Signature, resolve_genes

logger = logging.getLogger(__name__)

BY_SAMPLE_COLUMNS = ["signature", "sample", "n_detected", "detected_fraction"]


def _excluded(adata: ad.AnnData, key: str | None) -> list[str]:
    if key and key in adata.var:
        return adata.var_names[adata.var[key].astype(bool).to_numpy()].tolist()
    return []


def _detected_by_sample(adata: ad.AnnData, X: sp.csr_matrix, sample_key: str | None) -> dict[str, np.ndarray]:
    """Per sample, which genes are detected in at least one of its cells."""
    out = {}
    if sample_key and sample_key in adata.obs:
        for s, idx in adata.obs.groupby(sample_key, observed=True).indices.items():
            out[str(s)] = np.asarray((X[idx] > 0).sum(axis=0)).ravel() > 0
    return out


def _map_signature(
    name: str,
    sig: Signature | Sequence[str],
    var_names: Sequence[str],
    species: str,
    excluded: Sequence[str],
    *,
    min_coverage: float,
) -> tuple[list[str], list[str], dict]:
    """The measured ``up`` and ``down`` genes of a signature and its row of the coverage table.

    A plain gene list is a signature in the analysis ``species``. ``scored`` in the row: enough genes
    measured (``min_coverage``) and at least one ``up`` gene.
    """
    if not isinstance(sig, Signature):
        sig = Signature(name=name, species=species, up=tuple(sig))
    up, why_up = resolve_genes(sig.up, var_names, source=sig.species, target=species, excluded=excluded)
    down, why_down = resolve_genes(sig.down, var_names, source=sig.species, target=species, excluded=excluded)
    why = {**why_up, **why_down}
    n_total = len(set(sig.up)) + len(set(sig.down))
    coverage = (len(up) + len(down)) / max(n_total, 1)
    return (
        up,
        down,
        {
            "signature": name,
            "species": sig.species,
            "role": sig.role,
            "n_genes": n_total,
            "n_mapped": n_total - sum(v == "no one-to-one ortholog" for v in why.values()),
            "n_measured": len(up) + len(down),
            "coverage": coverage,
            "scored": coverage >= min_coverage and len(up) > 0,
            "missing_genes": ",".join(f"{g} ({r})" for g, r in why.items()),
        },
    )


def _sample_detection_rows(
    name: str, genes: Sequence[int], n_total: int, detected_by_sample: Mapping[str, np.ndarray]
) -> list[dict]:
    """Per sample: how many of the signature's measured genes (indices) are detected."""
    rows = []
    for s, det in detected_by_sample.items():
        hit = sum(det[i] for i in genes)
        rows.append(
            {
                "signature": name,
                "sample": s,
                "n_detected": int(hit),
                "detected_fraction": hit / max(n_total, 1),
            }
        )
    return rows


def _set_unscored(adata: ad.AnnData, keys: Sequence[str], row: Mapping, min_coverage: float) -> None:
    """NaN scores for a signature with too few genes measured, with a warning (to the API caller)."""
    name = row["signature"]
    warnings.warn(
        f"signature {name!r}: only {row['n_measured']} of {row['n_genes']} genes measured "
        f"(coverage {row['coverage']:.2f} < min_coverage {min_coverage}); its score is NaN",
        UserWarning,
        stacklevel=3,
    )
    logger.warning(
        "signature %r: coverage %.2f below %.2f, score set to NaN", name, row["coverage"], min_coverage
    )
    for k in keys:
        adata.obs[k] = np.nan


def _set_scored(
    adata: ad.AnnData, keys: Sequence[str], row: Mapping, total: np.ndarray, null_total: np.ndarray
) -> None:
    """Score, z-score and empirical p-value of a signature into ``obs[keys]``."""
    z, p = null_statistics(total, null_total)
    adata.obs[keys[0]] = total.astype(np.float32)
    adata.obs[keys[1]] = z.astype(np.float32)
    adata.obs[keys[2]] = p.astype(np.float32)
    logger.info(
        "signature %s: %d/%d genes, median score %.3g, median z %.2f",
        row["signature"],
        row["n_measured"],
        row["n_genes"],
        float(np.median(total)),
        float(np.nanmedian(z)),
    )


def score_signatures(
    adata: ad.AnnData,
    signatures: Mapping[str, Signature | Sequence[str]],
    *,
    method: str = "control",
    n_null: int = 100,
    n_bins: int = 25,
    n_ctrl: int = 50,
    max_rank: float = 0.05,
    min_coverage: float = 0.5,
    species: str | None = None,
    layer: str | None = None,
    excluded_key: str | None = "hscseq_excluded",
    sample_key: str | None = "sample",
    prefix: str = "score_",
    key_added: str = "signatures",
    random_state: int = 0,
    copy: bool = False,
) -> ad.AnnData | None:
    """Score cells for gene signatures, with an expression-matched empirical null.

    Parameters
    ----------
    adata
        Cells x genes; ``X`` (or ``layer``) log-normalised and sparse.
    signatures
        Name -> :class:`Signature` (any species) or a list of genes in the analysis species.
    method
        ``"control"`` (control-gene score: mean log expression against expression-matched control genes)
        or ``"aucell"`` (rank based within each cell). On real cells the control score separated lineages
        and early progenitors better (README, "Signature scores").
    n_null
        Number of random gene sets matched for expression per signature (the null).
    n_bins
        Expression bins used for control genes and for matching null sets.
    n_ctrl
        Control genes per bin (``method="control"``).
    max_rank
        AUCell's top-ranked genes per cell: a count when >= 1; when < 1, this share of all genes but at
        least a quarter of the median number of genes detected per cell (small gene panels and small gene
        universes would otherwise leave too few ranks; AUCell's own default is 5% of the genes).
    min_coverage
        Signatures with a smaller share of their genes measured (after ortholog mapping and exclusion) give
        NaN scores, with a warning.
    species
        Analysis species (default: :func:`analysis_species`).
    layer
        Layer to score instead of ``X``.
    excluded_key
        Boolean ``var`` column of genes removed from every signature and from the null pool.
    sample_key
        ``obs`` column used for the per-sample detection part of the coverage table.
    prefix
        Scores go to ``obs[prefix + name]``, z-scores to ``..._z``, empirical p-values to ``..._p``.
    key_added
        ``uns`` key of the coverage table, the genes used and the parameters.
    random_state
        Seed of ties, control genes and null sets.
    copy
        Return a modified copy instead of writing into ``adata``.

    Returns
    -------
    ``None``, or the modified copy when ``copy=True``. Writes ``obs[f"{prefix}{name}"]``,
    ``obs[f"{prefix}{name}_z"]``, ``obs[f"{prefix}{name}_p"]`` and ``uns[key_added]`` with ``coverage``
    (one row per signature: genes, mapped, measured, coverage, scored, missing genes), ``coverage_by_sample``
    (share of signature genes detected in each sample), ``genes`` (the genes scored) and ``params``.
    """
    if method not in ("aucell", "control"):
        raise input_error(f"unknown scoring method {method!r}.", fix="use 'aucell' or 'control'.")
    adata = adata.copy() if copy else adata
    species = species or analysis_species(adata)
    X = adata.layers[layer] if layer is not None else adata.X
    X = sp.csr_matrix(X) if not sp.issparse(X) else X.tocsr()
    var_names = adata.var_names
    excluded = _excluded(adata, excluded_key)
    eligible = ~np.isin(var_names, excluded)
    index = {g: i for i, g in enumerate(var_names)}
    rng = np.random.default_rng(random_state)
    bins = expression_bins(np.asarray(X.mean(axis=0)).ravel(), n_bins)
    n_top = aucell_top_n(X, max_rank)
    ranks = aucell_rank_matrix(X, max_rank=n_top, rng=rng) if method == "aucell" else None
    core = dict(method=method, bins=bins, n_null=n_null, n_ctrl=n_ctrl, rng=rng, ranks=ranks, max_rank=n_top)
    detected_by_sample = _detected_by_sample(adata, X, sample_key)

    rows, by_sample, genes_used = [], [], {}
    for name, sig in signatures.items():
        up, down, row = _map_signature(name, sig, var_names, species, excluded, min_coverage=min_coverage)
        rows.append(row)
        by_sample += _sample_detection_rows(
            name, [index[g] for g in up + down], row["n_genes"], detected_by_sample
        )
        genes_used[name] = {"up": up, "down": down}
        keys = [f"{prefix}{name}", f"{prefix}{name}_z", f"{prefix}{name}_p"]
        if not row["scored"]:
            _set_unscored(adata, keys, row, min_coverage)
            continue
        up_idx, down_idx = np.array([index[g] for g in up]), np.array([index[g] for g in down])
        _set_scored(adata, keys, row, *signature_with_null(X, up_idx, down_idx, eligible=eligible, **core))
    adata.uns[key_added] = {
        "params": {
            "method": method,
            "n_null": n_null,
            "n_bins": n_bins,
            "n_ctrl": n_ctrl,
            "max_rank": n_top,
            "min_coverage": min_coverage,
            "species": species,
            "layer": layer,
            "excluded_key": excluded_key,
            "prefix": prefix,
            "random_state": random_state,
        },
        "coverage": pd.DataFrame(rows),
        "coverage_by_sample": pd.DataFrame(by_sample, columns=BY_SAMPLE_COLUMNS),
        "genes": genes_used,
    }
    return adata if copy else None
