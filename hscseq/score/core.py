"""Signature scoring: a curated HSC / lineage library, robust scores with an empirical null, HSC-likeness,
the missing HSC programme and a primitive-versus-definitive call.

Numeric cores take numpy/scipy arrays and return arrays (:func:`expression_bins`, :func:`matched_random_sets`,
:func:`aucell_rank_matrix`, :func:`set_scores`, :func:`null_statistics`, :func:`hsc_threshold`,
:func:`bootstrap_fraction_ci`, :func:`programme_deficit`); the AnnData functions (:func:`score_signatures`,
:func:`hsc_likeness`, :func:`missing_programme`, :func:`primitive_vs_definitive`) follow the scanpy
conventions; :func:`run_score` is the file-level entry point of the Snakemake rule.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp
import yaml

from hscseq._bootstrap import percentile_ci
from hscseq._labels import DEFAULT_HSC_LABELS, is_hsc_label
from hscseq._plotting import finish, save_and_close
from hscseq._utils import input_error, resource_path, write_h5ad, write_table
from hscseq.genes import SPECIES, convert_symbols
from hscseq.merge import analysis_species  # the one rule (re-exported here for score's callers)
from hscseq.score.ontogeny import sample_call

logger = logging.getLogger(__name__)

LIBRARY_FILE = "hscseq_signatures.yaml"


#: Default settings of the score stage (config section ``score``; the schema carries the same defaults).
DEFAULT_SETTINGS: dict = {
    "min_coverage": 0.5,
    "seed": 0,
    "method": "aucell",
    "n_null": 100,
    "n_bins": 25,
    "n_ctrl": 50,
    "aucell_max_rank": 0.05,
    "signatures": None,
    "user_signatures": [],
    "user_species": None,
    "hsc_signature": "hsc_native",
    "reference_hsc_labels": list(DEFAULT_HSC_LABELS),
    "hsc_quantile": 0.1,
    "hsc_alpha": 0.05,
    "n_bootstrap": 1000,
    "min_reference_cells": 20,
    "min_reference_detection": 0.1,
    "established_ratio": 0.5,
    "min_query_cells": 10,
    "ontogeny_z": 3.0,
    "ontogeny_min_fraction": 0.02,
    "identity_z": 3.0,
    "identity_gate_min": 3,
}


# --------------------------------------------------------------------------------------------------------
# the signature library


@dataclass(frozen=True)
class Signature:
    """A gene signature in one species.

    ``up`` genes count for the score, ``down`` genes against it. ``role`` is one of hsc, lineage, ontogeny,
    cell_cycle or user; ``sources`` holds citations / DOIs.
    """

    name: str
    species: str
    up: tuple[str, ...]
    down: tuple[str, ...] = ()
    role: str = "user"
    description: str = ""
    sources: tuple[str, ...] = ()
    origin: str = ""
    evidence: Mapping[str, str] = field(default_factory=dict)


def _guess_species(genes: Sequence[str]) -> str:
    """Human HGNC symbols are upper case; mouse MGI symbols are capitalised."""
    letters = [g for g in genes if any(c.isalpha() for c in g)]
    upper = sum(g == g.upper() for g in letters)
    return "human" if letters and upper / len(letters) > 0.8 else "mouse"


def _entry_to_signature(entry: Mapping, *, path: Path, species: str | None) -> Signature:
    name = str(entry.get("name", "")).strip()
    if not name or any(c.isspace() for c in name):
        raise input_error(
            f"signature name {name!r} is empty or contains spaces.",
            path=path,
            fix="give every signature a name without spaces (it becomes obs['score_<name>']).",
        )
    up = tuple(str(g).strip() for g in entry.get("up") or entry.get("genes") or [] if str(g).strip())
    down = tuple(str(g).strip() for g in entry.get("down") or [] if str(g).strip())
    if not up:
        raise input_error(
            f"signature {name!r} has no 'up' genes.",
            path=path,
            fix="list the genes of the signature under 'up:' (and optionally 'down:').",
        )
    sp_ = entry.get("species") or species or _guess_species(up + down)
    if sp_ not in SPECIES:
        raise input_error(
            f"signature {name!r} has species {sp_!r}.", path=path, fix=f"use one of {list(SPECIES)}."
        )
    sources = []
    for src in entry.get("sources") or []:
        if isinstance(src, Mapping):
            sources.append("; ".join(f"{k}: {v}" for k, v in src.items()))
        else:
            sources.append(str(src))
    if entry.get("source"):
        sources.append(str(entry["source"]))
    return Signature(
        name=name,
        species=sp_,
        up=up,
        down=down,
        role=str(entry.get("role", "user")),
        description=str(entry.get("description", "")),
        sources=tuple(sources),
        origin=str(path),
        evidence=dict(entry.get("evidence") or {}),
    )


def read_signature_file(path: str | os.PathLike, *, species: str | None = None) -> list[Signature]:
    """Read signatures from a GMT or YAML file.

    GMT: ``name<TAB>description<TAB>gene...`` per line. YAML: either the library layout (``signatures:`` list
    of entries with name, species, up, down, ...) or a plain mapping ``name: [genes]``. ``species`` applies
    to entries without one; if ``None`` it is guessed from the symbol case (HGNC upper case = human).
    """
    path = Path(path)
    if not path.is_file():
        raise input_error(
            "the signature file does not exist.",
            path=path,
            fix="correct score.user_signatures in the config (GMT or YAML paths).",
        )
    out: list[Signature] = []
    if path.suffix.lower() == ".gmt":
        for lineno, line in enumerate(path.read_text().splitlines(), start=1):
            if not line.strip() or line.startswith("#"):
                continue
            fields = line.rstrip("\n").split("\t")
            if len(fields) < 3:
                raise input_error(
                    f"line {lineno} has fewer than 3 tab-separated fields.",
                    path=path,
                    fix="write GMT lines as name<TAB>description<TAB>gene1<TAB>gene2...",
                )
            out.append(
                _entry_to_signature(
                    {"name": fields[0], "description": fields[1], "up": fields[2:], "source": fields[1]},
                    path=path,
                    species=species,
                )
            )
    elif path.suffix.lower() in (".yaml", ".yml"):
        try:
            data = yaml.safe_load(path.read_text())
        except yaml.YAMLError as err:
            raise input_error(f"not valid YAML ({err}).", path=path, fix="fix the YAML syntax.") from err
        if isinstance(data, Mapping) and isinstance(data.get("signatures"), list):
            entries = data["signatures"]
        elif isinstance(data, Mapping):
            entries = [
                {"name": k, "up": v} if isinstance(v, list) else {"name": k, **v} for k, v in data.items()
            ]
        else:
            raise input_error(
                "the YAML holds neither a 'signatures:' list nor a name -> genes mapping.",
                path=path,
                fix="see resources/signatures/hscseq_signatures.yaml for the layout.",
            )
        out.extend(_entry_to_signature(e, path=path, species=species) for e in entries)
    else:
        raise input_error(
            f"unknown signature file type {path.suffix!r}.", path=path, fix="give .gmt or .yaml/.yml files."
        )
    return out


def load_signatures(
    paths: Iterable[str | os.PathLike] = (),
    *,
    species: str | None = None,
    include_library: bool = True,
    user_species: str | None = None,
    names: Sequence[str] | None = None,
) -> dict[str, Signature]:
    """Load the curated library plus user GMT/YAML files, one signature per name.

    Parameters
    ----------
    paths
        User signature files (GMT or YAML); a user signature replaces a library signature of the same name.
    species
        Analysis species: when a name exists in both species, the entry of this species is taken.
    include_library
        Include ``resources/signatures/hscseq_signatures.yaml``.
    user_species
        Species of user signatures that do not declare one (guessed from the symbol case if ``None``).
    names
        Keep only these names (``None``: all).

    Returns
    -------
    Signatures keyed by name.
    """
    entries: list[Signature] = []
    if include_library:
        entries.extend(read_signature_file(resource_path("signatures", LIBRARY_FILE)))
    library_names = {s.name for s in entries}
    user: list[Signature] = []
    for p in paths:
        user.extend(read_signature_file(p, species=user_species))
    for s in user:
        if s.name in library_names:
            logger.warning(
                "user signature %r (%s) replaces the library signature of that name", s.name, s.origin
            )
    user_names = {s.name for s in user}
    entries = [s for s in entries if s.name not in user_names] + user
    out: dict[str, Signature] = {}
    for s in entries:
        current = out.get(s.name)
        if current is None or (current.species != species and s.species == species):
            out[s.name] = s
    if names is not None:
        unknown = [n for n in names if n not in out]
        if unknown:
            raise input_error(
                f"signature(s) {unknown} are not in the library or the user files.",
                fix=f"choose among {sorted(out)} or add them through score.user_signatures.",
            )
        out = {n: out[n] for n in names}
    return out


def resolve_genes(
    genes: Sequence[str], var_names: Sequence[str], *, source: str, target: str, excluded: Iterable[str] = ()
) -> tuple[list[str], dict[str, str]]:
    """Map signature genes onto ``var_names`` (one-to-one orthologs across species, case-insensitive).

    Returns the matched var names and, for every unmatched gene, why (``no ortholog``, ``not measured``,
    ``excluded``).
    """
    converted = convert_symbols(genes, source, target)
    lookup: dict[str, str] = {}
    for v in var_names:
        lookup.setdefault(str(v).upper(), str(v))
    exact = set(map(str, var_names))
    excluded = set(excluded)
    found: list[str] = []
    why: dict[str, str] = {}
    for gene, conv in zip(genes, converted, strict=True):
        if conv is None:
            why[gene] = "no one-to-one ortholog"
            continue
        hit = conv if conv in exact else lookup.get(conv.upper())
        if hit is None:
            why[gene] = "not measured"
        elif hit in excluded:
            why[gene] = "excluded (hscseq_excluded)"
        elif hit not in found:
            found.append(hit)
    return found, why


# --------------------------------------------------------------------------------------------------------
# numeric cores


def expression_bins(mean_expression: np.ndarray, n_bins: int = 25) -> np.ndarray:
    """Bin genes into ``n_bins`` equally populated bins of mean expression (rank based, ties by order)."""
    mean_expression = np.asarray(mean_expression, dtype=float)
    order = np.argsort(mean_expression, kind="stable")
    bins = np.empty(len(order), dtype=int)
    bins[order] = np.floor(np.arange(len(order)) * n_bins / max(len(order), 1)).astype(int)
    return bins


def matched_random_sets(
    gene_idx: np.ndarray,
    bins: np.ndarray,
    *,
    n_sets: int,
    rng: np.random.Generator,
    eligible: np.ndarray | None = None,
) -> np.ndarray:
    """Random gene sets matched for expression: each gene is replaced by a random gene of its bin.

    Returns an ``(n_sets, len(gene_idx))`` array of gene indices (genes drawn without replacement within a
    set whenever the bin allows). ``eligible`` (bool per gene) restricts the pool; signature genes are never
    drawn.
    """
    gene_idx = np.asarray(gene_idx, dtype=int)
    pool_mask = (
        np.ones(len(bins), dtype=bool) if eligible is None else np.asarray(eligible, dtype=bool).copy()
    )
    pool_mask[gene_idx] = False
    out = np.empty((n_sets, len(gene_idx)), dtype=int)
    for b in np.unique(bins[gene_idx]):
        cols = np.flatnonzero(bins[gene_idx] == b)
        pool = np.flatnonzero(pool_mask & (bins == b))
        if len(pool) == 0:  # an extreme bin with only signature genes: widen to the neighbouring bins
            pool = np.flatnonzero(pool_mask & (np.abs(bins - b) <= 1))
        replace = len(pool) < len(cols)
        for s in range(n_sets):
            out[s, cols] = rng.choice(pool, size=len(cols), replace=replace)
    return out


def aucell_rank_matrix(
    X: sp.spmatrix | np.ndarray, *, max_rank: int, rng: np.random.Generator
) -> sp.csr_matrix:
    """Per-cell gene ranks for AUCell as a sparse recovery-weight matrix.

    Genes of each cell are ranked by decreasing expression (ties broken at random, seeded); entry
    ``(cell, gene)`` holds ``max_rank - rank`` for the ``max_rank`` top genes (rank 0 = highest) and is
    empty otherwise. Undetected genes are never recovered (AUCell breaks ties among zeros at random; a
    zero carries no evidence, so they count as not recovered here). The matrix stays sparse.
    """
    X = sp.csr_matrix(X)
    X.eliminate_zeros()
    n_cells, n_genes = X.shape
    rows = np.repeat(np.arange(n_cells), np.diff(X.indptr))
    jitter = rng.random(len(X.data))
    order = np.lexsort((jitter, -X.data, rows))
    starts = X.indptr[rows[order]]
    rank = np.arange(len(order)) - starts
    keep = rank < max_rank
    sel = order[keep]
    weights = (max_rank - rank[keep]).astype(np.float32)
    return sp.csr_matrix((weights, (rows[sel], X.indices[sel])), shape=(n_cells, n_genes))


def _set_matrix(
    sets: Sequence[np.ndarray], n_genes: int, *, normalise: str, max_rank: int = 0
) -> sp.csc_matrix:
    """Genes x sets weight matrix (mean weights, or AUCell's maximum-AUC normalisation)."""
    rows, cols, vals = [], [], []
    for j, s in enumerate(sets):
        s = np.unique(np.asarray(s, dtype=int))
        if normalise == "mean":
            w = 1.0 / len(s)
        else:
            k = min(len(s), max_rank)
            w = 1.0 / float(np.sum(max_rank - np.arange(k)))
        rows.append(s)
        cols.append(np.full(len(s), j))
        vals.append(np.full(len(s), w))
    return sp.csc_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n_genes, len(sets))
    )


def set_scores(
    X: sp.spmatrix | np.ndarray,
    sets: Sequence[np.ndarray],
    *,
    method: str = "aucell",
    bins: np.ndarray | None = None,
    n_ctrl: int = 50,
    rng: np.random.Generator | None = None,
    ranks: sp.csr_matrix | None = None,
    max_rank: int = 0,
    eligible: np.ndarray | None = None,
) -> np.ndarray:
    """Score every cell for every gene set; returns ``(n_cells, n_sets)``.

    ``method="aucell"``: area under the recovery curve of the set within each cell's ``max_rank`` top
    genes, normalised to [0, 1] (Aibar et al. 2017, doi:10.1038/nmeth.4463); needs ``ranks`` from
    :func:`aucell_rank_matrix`. ``method="control"``: mean log expression of the set minus the mean of
    ``n_ctrl`` random control genes drawn from the expression bin of each set gene (Tirosh et al. 2016,
    doi:10.1126/science.aad0501; scanpy's ``score_genes``); needs ``bins`` and ``rng``.
    """
    n_genes = X.shape[1]
    if method == "aucell":
        if ranks is None:
            raise ValueError("method='aucell' needs the rank matrix (aucell_rank_matrix)")
        M = _set_matrix(sets, n_genes, normalise="aucell", max_rank=max_rank)
        return np.asarray((ranks @ M).toarray(), dtype=np.float32)
    if method == "control":
        if bins is None or rng is None:
            raise ValueError("method='control' needs expression bins and a random generator")
        pool = np.ones(n_genes, dtype=bool) if eligible is None else np.asarray(eligible, dtype=bool)
        controls = []
        for s in sets:
            s = np.unique(np.asarray(s, dtype=int))
            mask = pool.copy()
            mask[s] = False
            ctrl = []
            for b in np.unique(bins[s]):
                cand = np.flatnonzero(mask & (bins == b))
                if len(cand):
                    ctrl.append(rng.choice(cand, size=min(n_ctrl, len(cand)), replace=False))
            controls.append(np.unique(np.concatenate(ctrl)) if ctrl else s)
        M = _set_matrix(sets, n_genes, normalise="mean") - _set_matrix(controls, n_genes, normalise="mean")
        out = X @ M
        return np.asarray(out.toarray() if sp.issparse(out) else out, dtype=np.float32)
    raise ValueError(f"unknown scoring method {method!r} (use 'aucell' or 'control')")


def null_statistics(
    observed: np.ndarray, null: np.ndarray, *, prior_draws: float = 10.0
) -> tuple[np.ndarray, np.ndarray]:
    """Per-cell z-score and one-sided empirical p-value of ``observed`` against ``null`` (cells x draws).

    ``p = (1 + #{null >= observed}) / (1 + n_draws)``. ``z = (observed - mean(null)) / sd`` where the
    per-cell null variance is moderated towards the variance pooled over all cells with the weight of
    ``prior_draws`` draws (rank scores of small sets often have a null without spread in a cell; the
    pooled variance keeps their z finite). NaN only if the null has no spread at all.
    """
    observed = np.asarray(observed, dtype=float)
    null = np.asarray(null, dtype=float)
    k = null.shape[1]
    mu = null.mean(axis=1)
    var = null.var(axis=1, ddof=1) if k > 1 else np.zeros(len(mu))
    pooled = float(np.mean(var)) if len(var) else 0.0
    sd = np.sqrt(((k - 1) * var + prior_draws * pooled) / (k - 1 + prior_draws))
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(sd > 0, (observed - mu) / np.where(sd > 0, sd, 1.0), np.nan)
    p = (1.0 + (null >= observed[:, None]).sum(axis=1)) / (1.0 + k)
    return z, p


def hsc_threshold(reference_scores: np.ndarray, *, quantile: float = 0.1) -> float:
    """The HSC-like threshold: the ``quantile`` of the HSC score among in vivo reference HSCs."""
    reference_scores = np.asarray(reference_scores, dtype=float)
    reference_scores = reference_scores[np.isfinite(reference_scores)]
    return float(np.quantile(reference_scores, quantile))


def bootstrap_fraction_ci(
    scores: np.ndarray,
    passes_null: np.ndarray,
    reference_scores: np.ndarray,
    *,
    quantile: float,
    n_bootstrap: int,
    rng: np.random.Generator,
    level: float = 0.95,
) -> tuple[float, float]:
    """Bootstrap CI of the HSC-like fraction of one sample.

    Each replicate resamples the reference HSCs (re-deriving the threshold, so its uncertainty propagates)
    and the sample's cells (a binomial draw of the share of cells above that threshold).
    """
    scores = np.asarray(scores, dtype=float)
    n = len(scores)
    if n == 0:
        return float("nan"), float("nan")
    eligible = np.sort(scores[np.asarray(passes_null, dtype=bool) & np.isfinite(scores)])
    ref = np.asarray(reference_scores, dtype=float)
    ref = ref[np.isfinite(ref)]
    fractions = np.empty(n_bootstrap)
    for b in range(n_bootstrap):
        t = np.quantile(rng.choice(ref, size=len(ref), replace=True), quantile) if len(ref) else -np.inf
        p = (len(eligible) - np.searchsorted(eligible, t, side="left")) / n
        fractions[b] = rng.binomial(n, p) / n
    return percentile_ci(fractions, level=level)


def programme_deficit(
    reference: np.ndarray,
    query: np.ndarray,
    *,
    min_reference_detection: float = 0.1,
    established_ratio: float = 0.5,
) -> dict[str, np.ndarray]:
    """Compare programme genes between reference HSCs and query cells (log-normalised, cells x genes).

    For each gene: detection rates, mean log expression, ``expression_ratio`` = mean linear expression in
    query / reference (``expm1`` of log values), ``detection_ratio`` and ``established`` (both ratios >=
    ``established_ratio``). Genes detected in fewer than ``min_reference_detection`` of reference cells are
    not part of the programme (``in_programme`` False).
    """
    reference = np.asarray(reference, dtype=float)
    query = np.asarray(query, dtype=float)
    det_r = (reference > 0).mean(axis=0)
    det_q = (query > 0).mean(axis=0) if len(query) else np.full(reference.shape[1], np.nan)
    lin_r = np.expm1(reference).mean(axis=0)
    lin_q = np.expm1(query).mean(axis=0) if len(query) else np.full(reference.shape[1], np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        expr_ratio = np.where(lin_r > 0, lin_q / lin_r, np.nan)
        det_ratio = np.where(det_r > 0, det_q / det_r, np.nan)
    in_programme = det_r >= min_reference_detection
    established = in_programme & (expr_ratio >= established_ratio) & (det_ratio >= established_ratio)
    return {
        "detection_reference": det_r,
        "detection_query": det_q,
        "mean_reference": reference.mean(axis=0),
        "mean_query": query.mean(axis=0) if len(query) else np.full(reference.shape[1], np.nan),
        "expression_ratio": expr_ratio,
        "detection_ratio": det_ratio,
        "in_programme": in_programme,
        "established": established,
    }


# --------------------------------------------------------------------------------------------------------
# AnnData API


def _excluded(adata: ad.AnnData, key: str | None) -> list[str]:
    if key and key in adata.var:
        return adata.var_names[adata.var[key].astype(bool).to_numpy()].tolist()
    return []


def score_signatures(
    adata: ad.AnnData,
    signatures: Mapping[str, Signature | Sequence[str]],
    *,
    method: str = "aucell",
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
        ``"aucell"`` (rank based, robust to library size) or ``"control"`` (control-gene score).
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
    mean_expr = np.asarray(X.mean(axis=0)).ravel()
    bins = expression_bins(mean_expr, n_bins)
    if max_rank < 1:  # a share of the genes, but at least a quarter of the median genes detected per cell
        median_detected = float(np.median(np.diff(X.indptr))) if X.shape[0] else 0.0
        n_top = max(round(max_rank * X.shape[1]), round(0.25 * median_detected))
    else:
        n_top = int(max_rank)
    n_top = max(1, min(n_top, X.shape[1]))
    ranks = aucell_rank_matrix(X, max_rank=n_top, rng=rng) if method == "aucell" else None
    detected_by_sample = {}
    if sample_key and sample_key in adata.obs:
        for s, idx in adata.obs.groupby(sample_key, observed=True).indices.items():
            detected_by_sample[str(s)] = np.asarray((X[idx] > 0).sum(axis=0)).ravel() > 0

    rows, by_sample, genes_used = [], [], {}
    for name, sig in signatures.items():
        if not isinstance(sig, Signature):
            sig = Signature(name=name, species=species, up=tuple(sig))
        up, why_up = resolve_genes(sig.up, var_names, source=sig.species, target=species, excluded=excluded)
        down, why_down = resolve_genes(
            sig.down, var_names, source=sig.species, target=species, excluded=excluded
        )
        n_total = len(set(sig.up)) + len(set(sig.down))
        coverage = (len(up) + len(down)) / max(n_total, 1)
        scored = coverage >= min_coverage and len(up) > 0
        why = {**why_up, **why_down}
        rows.append(
            {
                "signature": name,
                "species": sig.species,
                "role": sig.role,
                "n_genes": n_total,
                "n_mapped": n_total - sum(v == "no one-to-one ortholog" for v in why.values()),
                "n_measured": len(up) + len(down),
                "coverage": coverage,
                "scored": scored,
                "missing_genes": ",".join(f"{g} ({r})" for g, r in why.items()),
            }
        )
        for s, det in detected_by_sample.items():
            hit = sum(det[index[g]] for g in up + down)
            by_sample.append(
                {
                    "signature": name,
                    "sample": s,
                    "n_detected": int(hit),
                    "detected_fraction": hit / max(n_total, 1),
                }
            )
        keys = [f"{prefix}{name}", f"{prefix}{name}_z", f"{prefix}{name}_p"]
        if not scored:
            warnings.warn(
                f"signature {name!r}: only {len(up) + len(down)} of {n_total} genes measured "
                f"(coverage {coverage:.2f} < min_coverage {min_coverage}); its score is NaN",
                UserWarning,
                stacklevel=2,
            )
            logger.warning(
                "signature %r: coverage %.2f below %.2f, score set to NaN", name, coverage, min_coverage
            )
            for k in keys:
                adata.obs[k] = np.nan
            genes_used[name] = {"up": up, "down": down}
            continue
        total = np.zeros(adata.n_obs)
        null_total = np.zeros((adata.n_obs, n_null))
        for genes, sign in ((up, 1.0), (down, -1.0)):
            if not genes:
                continue
            gidx = np.array([index[g] for g in genes])
            null_sets = matched_random_sets(gidx, bins, n_sets=n_null, rng=rng, eligible=eligible)
            sets = [gidx, *list(null_sets)]
            values = set_scores(
                X,
                sets,
                method=method,
                bins=bins,
                n_ctrl=n_ctrl,
                rng=rng,
                ranks=ranks,
                max_rank=n_top,
                eligible=eligible,
            )
            total += sign * values[:, 0]
            null_total += sign * values[:, 1:]
        z, p = null_statistics(total, null_total)
        adata.obs[keys[0]] = total.astype(np.float32)
        adata.obs[keys[1]] = z.astype(np.float32)
        adata.obs[keys[2]] = p.astype(np.float32)
        genes_used[name] = {"up": up, "down": down}
        logger.info(
            "signature %s: %d/%d genes, median score %.3g, median z %.2f",
            name,
            len(up) + len(down),
            n_total,
            float(np.median(total)),
            float(np.nanmedian(z)),
        )
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
        "coverage_by_sample": pd.DataFrame(
            by_sample, columns=["signature", "sample", "n_detected", "detected_fraction"]
        ),
        "genes": genes_used,
    }
    return adata if copy else None


def _reference_hsc_mask(
    adata: ad.AnnData,
    *,
    condition_key: str,
    label_key: str,
    reference_condition: str,
    hsc_labels: Sequence[str],
) -> np.ndarray:
    if condition_key not in adata.obs or label_key not in adata.obs:
        return np.zeros(adata.n_obs, dtype=bool)
    in_vivo = adata.obs[condition_key].astype(str).to_numpy() == reference_condition
    return in_vivo & is_hsc_label(adata.obs[label_key].astype(str).to_numpy(), hsc_labels)


def hsc_likeness(
    adata: ad.AnnData,
    *,
    score_key: str = "hsc_score",
    pval_key: str | None = "hsc_score_p",
    sample_key: str = "sample",
    condition_key: str = "condition",
    label_key: str = "reference_label",
    reference_condition: str = "in_vivo",
    hsc_labels: Sequence[str] = DEFAULT_HSC_LABELS,
    quantile: float = 0.1,
    alpha: float = 0.05,
    min_reference_cells: int = 20,
    n_bootstrap: int = 1000,
    key_added: str = "hsc_like",
    random_state: int = 0,
    copy: bool = False,
) -> ad.AnnData | None:
    """Call HSC-like cells with a threshold calibrated on the in vivo reference HSCs.

    Rule: a cell is HSC-like when its HSC score is at least the ``quantile`` of the scores of in vivo
    reference HSCs (``condition == reference_condition`` and ``label_key`` in ``hsc_labels``; by default the
    10th percentile, i.e. 90% of reference HSCs pass) AND its score beats expression-matched random gene
    sets (empirical ``p < alpha``). With fewer than ``min_reference_cells`` reference HSCs the first part
    is dropped (null only) and a warning is logged. Per sample, the HSC-like fraction gets a bootstrap CI
    that resamples both the reference HSCs (threshold) and the sample's cells.

    Parameters
    ----------
    adata
        Scored cells (see :func:`score_signatures`).
    score_key
        ``obs`` column of the HSC score.
    pval_key
        ``obs`` column of its empirical p-value (``None``: no null condition).
    sample_key
        ``obs`` column of samples.
    condition_key
        ``obs`` column of the condition (in vivo reference vs engineered / organoid).
    label_key
        ``obs`` column of reference labels.
    reference_condition
        Condition value of the in vivo reference.
    hsc_labels
        Reference labels counted as HSCs (case-insensitive).
    quantile
        Quantile of reference HSC scores used as threshold.
    alpha
        Empirical p-value cut of the null condition.
    min_reference_cells
        Minimum number of reference HSCs to calibrate on.
    n_bootstrap
        Bootstrap replicates of the per-sample CI.
    key_added
        ``obs`` column of the boolean call and ``uns`` key of the calibration and per-sample table.
    random_state
        Seed of the bootstrap.
    copy
        Return a modified copy instead of writing into ``adata``.

    Returns
    -------
    ``None``, or the modified copy when ``copy=True``. Writes ``obs[key_added]`` (bool) and
    ``uns[key_added]`` with ``threshold``, ``rule``, calibration numbers, ``samples`` (per sample
    n_cells, n_hsc_like, hsc_like_fraction, hsc_like_ci_low, hsc_like_ci_high) and ``params``.
    """
    adata = adata.copy() if copy else adata
    if score_key not in adata.obs:
        raise input_error(
            f"obs[{score_key!r}] is missing.", fix="run score_signatures with the HSC signature."
        )
    scores = adata.obs[score_key].to_numpy(dtype=float)
    passes = np.ones(adata.n_obs, dtype=bool)
    if pval_key is not None and pval_key in adata.obs:
        passes = adata.obs[pval_key].to_numpy(dtype=float) < alpha
    ref = _reference_hsc_mask(
        adata,
        condition_key=condition_key,
        label_key=label_key,
        reference_condition=reference_condition,
        hsc_labels=hsc_labels,
    )
    ref_scores = scores[ref & np.isfinite(scores)]
    if len(ref_scores) >= min_reference_cells:
        threshold = hsc_threshold(ref_scores, quantile=quantile)
        rule = (
            f"{score_key} >= {quantile:g} quantile of {len(ref_scores)} in vivo reference HSCs "
            f"({threshold:.4g}) and empirical p < {alpha:g}"
        )
    else:
        logger.warning(
            "only %d in vivo reference HSCs (labels %s in obs[%r]); HSC-like = empirical p < %g "
            "only, not calibrated",
            len(ref_scores),
            list(hsc_labels),
            label_key,
            alpha,
        )
        threshold = -np.inf
        ref_scores = np.array([])
        rule = f"empirical p < {alpha:g} only (fewer than {min_reference_cells} reference HSCs)"
    calls = passes & np.isfinite(scores) & (scores >= threshold)
    adata.obs[key_added] = calls
    rng = np.random.default_rng(random_state)
    rows = []
    samples = (
        adata.obs[sample_key].astype(str)
        if sample_key in adata.obs
        else pd.Series("all", index=adata.obs_names)
    )
    conditions = adata.obs[condition_key].astype(str) if condition_key in adata.obs else samples
    for s in pd.unique(samples):
        idx = np.flatnonzero(samples.to_numpy() == s)
        lo, hi = bootstrap_fraction_ci(
            scores[idx], passes[idx], ref_scores, quantile=quantile, n_bootstrap=n_bootstrap, rng=rng
        )
        rows.append(
            {
                "sample": s,
                "condition": conditions.iloc[idx[0]],
                "n_cells": len(idx),
                "n_hsc_like": int(calls[idx].sum()),
                "hsc_like_fraction": float(calls[idx].mean()),
                "hsc_like_ci_low": lo,
                "hsc_like_ci_high": hi,
            }
        )
    in_vivo = conditions.to_numpy() == reference_condition
    adata.uns[key_added] = {
        "params": {
            "score_key": score_key,
            "pval_key": pval_key,
            "quantile": quantile,
            "alpha": alpha,
            "hsc_labels": list(hsc_labels),
            "reference_condition": reference_condition,
            "min_reference_cells": min_reference_cells,
            "n_bootstrap": n_bootstrap,
            "random_state": random_state,
        },
        "threshold": float(threshold),
        "rule": rule,
        "n_reference_hsc": len(ref_scores),
        "reference_hsc_sensitivity": float(calls[ref].mean()) if ref.any() else float("nan"),
        "in_vivo_non_hsc_rate": float(calls[in_vivo & ~ref].mean())
        if (in_vivo & ~ref).any() and ref.any()
        else float("nan"),
        "samples": pd.DataFrame(rows),
    }
    logger.info("HSC-like rule: %s", rule)
    return adata if copy else None


def _dense_genes(adata: ad.AnnData, cells: np.ndarray, genes: Sequence[str], layer: str | None) -> np.ndarray:
    X = adata.layers[layer] if layer is not None else adata.X
    gidx = adata.var_names.get_indexer(genes)
    sub = X[cells][:, gidx]
    return sub.toarray() if sp.issparse(sub) else np.asarray(sub)


def missing_programme(
    adata: ad.AnnData,
    genes: Sequence[str],
    *,
    query_key: str = "hsc_like",
    sample_key: str = "sample",
    condition_key: str = "condition",
    label_key: str = "reference_label",
    reference_condition: str = "in_vivo",
    hsc_labels: Sequence[str] = DEFAULT_HSC_LABELS,
    layer: str | None = None,
    min_reference_detection: float = 0.1,
    established_ratio: float = 0.5,
    min_query_cells: int = 10,
    key_added: str = "missing_programme",
    copy: bool = False,
) -> ad.AnnData | None:
    """The native HSC genes that HSC-like cells of each sample lack compared with in vivo HSCs.

    Reference = in vivo cells labelled HSC (else in vivo cells with ``obs[query_key]``). Query = cells of a
    sample with ``obs[query_key]``. Per gene: detection rate and mean in both, expression ratio (linear
    scale), ``established`` when both expression and detection ratios reach ``established_ratio``. Missing
    genes are ranked by expression ratio (lowest first), then detection ratio. The programme share =
    established genes / genes of the programme (detected in >= ``min_reference_detection`` of reference
    HSCs).

    Parameters
    ----------
    adata
        Log-normalised cells x genes with ``obs[query_key]``.
    genes
        The programme genes (e.g. the HSC signature genes scored).
    query_key
        Boolean ``obs`` column selecting the cells to compare (HSC-like cells).
    sample_key
        ``obs`` column of samples.
    condition_key
        ``obs`` column of the condition.
    label_key
        ``obs`` column of reference labels.
    reference_condition
        Condition of the in vivo reference.
    hsc_labels
        Reference labels counted as HSCs.
    layer
        Layer with log-normalised values instead of ``X``.
    min_reference_detection
        Genes detected in fewer reference HSCs are not counted in the programme.
    established_ratio
        Minimum query/reference expression and detection ratio of an established gene.
    min_query_cells
        Samples with fewer query cells get no comparison (NaN share).
    key_added
        ``uns`` key of the results.
    copy
        Return a modified copy instead of writing into ``adata``.

    Returns
    -------
    ``None``, or the modified copy when ``copy=True``. Writes ``uns[key_added]`` with ``genes`` (one row per
    sample and gene: detection/mean in reference and query, ratios, established, rank among the missing),
    ``samples`` (n_query_cells, hsc_programme_share, missing_genes comma-separated and ranked) and ``params``.
    """
    adata = adata.copy() if copy else adata
    genes = [g for g in genes if g in adata.var_names]
    ref = _reference_hsc_mask(
        adata,
        condition_key=condition_key,
        label_key=label_key,
        reference_condition=reference_condition,
        hsc_labels=hsc_labels,
    )
    query_all = adata.obs[query_key].to_numpy(dtype=bool)
    if ref.sum() < min_query_cells and condition_key in adata.obs:
        ref = query_all & (adata.obs[condition_key].astype(str).to_numpy() == reference_condition)
        logger.warning(
            "too few labelled reference HSCs: the missing programme compares with in vivo %s cells", query_key
        )
    gene_rows, sample_rows = [], []
    samples = adata.obs[sample_key].astype(str).to_numpy()
    ref_values = _dense_genes(adata, np.flatnonzero(ref), genes, layer) if ref.any() and genes else None
    for s in pd.unique(samples):
        q = np.flatnonzero((samples == s) & query_all)
        if ref_values is None or len(q) < min_query_cells:
            sample_rows.append(
                {"sample": s, "n_query_cells": len(q), "hsc_programme_share": np.nan, "missing_genes": ""}
            )
            continue
        res = programme_deficit(
            ref_values,
            _dense_genes(adata, q, genes, layer),
            min_reference_detection=min_reference_detection,
            established_ratio=established_ratio,
        )
        df = pd.DataFrame({"sample": s, "gene": genes, **res})
        missing = df[df["in_programme"] & ~df["established"]].sort_values(
            ["expression_ratio", "detection_ratio"], kind="stable"
        )
        df["missing_rank"] = pd.Series(np.arange(1, len(missing) + 1), index=missing.index)
        gene_rows.append(df)
        n_prog = int(df["in_programme"].sum())
        sample_rows.append(
            {
                "sample": s,
                "n_query_cells": len(q),
                "hsc_programme_share": df["established"].sum() / n_prog if n_prog else np.nan,
                "missing_genes": ",".join(missing["gene"]),
            }
        )
    genes_df = (
        pd.concat(gene_rows, ignore_index=True)
        if gene_rows
        else pd.DataFrame(columns=["sample", "gene", "missing_rank"])
    )
    adata.uns[key_added] = {
        "params": {
            "query_key": query_key,
            "min_reference_detection": min_reference_detection,
            "established_ratio": established_ratio,
            "min_query_cells": min_query_cells,
            "n_reference_cells": int(ref.sum()),
            "layer": layer,
        },
        "genes": genes_df,
        "samples": pd.DataFrame(sample_rows),
    }
    return adata if copy else None


def ontogeny_calls(primitive_z: np.ndarray, definitive_z: np.ndarray, *, z_min: float = 3.0) -> np.ndarray:
    """Per cell 'primitive', 'definitive' or 'none': the higher of two z-scores if it reaches ``z_min``."""
    p = np.nan_to_num(np.asarray(primitive_z, dtype=float), nan=-np.inf)
    d = np.nan_to_num(np.asarray(definitive_z, dtype=float), nan=-np.inf)
    out = np.full(len(p), "none", dtype=object)
    out[(p >= z_min) & (p > d)] = "primitive"
    out[(d >= z_min) & (d >= p)] = "definitive"
    return out


def primitive_vs_definitive(
    adata: ad.AnnData,
    *,
    primitive_key: str = "score_primitive_z",
    definitive_key: str = "score_definitive_z",
    sample_key: str = "sample",
    z_min: float = 3.0,
    min_fraction: float = 0.02,
    key_added: str = "ontogeny",
    copy: bool = False,
) -> ad.AnnData | None:
    """Primitive (yolk-sac-like) versus definitive haematopoiesis, per cell and per sample.

    A cell is 'primitive' when its primitive z-score (against expression-matched random sets) reaches
    ``z_min`` and beats the definitive one, 'definitive' in the symmetric case, else 'none'. Per sample:
    'primitive' when the primitive fraction is >= ``min_fraction`` and at least twice the definitive
    fraction, 'definitive' symmetrically, 'mixed' when both reach ``min_fraction`` otherwise, and
    'undetermined' when neither does.

    Parameters
    ----------
    adata
        Cells scored for the primitive and definitive signatures.
    primitive_key
        ``obs`` column of the primitive z-score.
    definitive_key
        ``obs`` column of the definitive z-score.
    sample_key
        ``obs`` column of samples.
    z_min
        Minimum z-score of a primitive/definitive cell.
    min_fraction
        Minimum share of cells for a sample-level call.
    key_added
        ``obs`` column of the per-cell call and ``uns`` key of the per-sample table.
    copy
        Return a modified copy instead of writing into ``adata``.

    Returns
    -------
    ``None``, or the modified copy when ``copy=True``. Writes ``obs[key_added]`` (categorical) and
    ``uns[key_added]`` with ``samples`` (primitive_fraction, definitive_fraction,
    primitive_definitive_call) and ``params``.
    """
    adata = adata.copy() if copy else adata
    for key in (primitive_key, definitive_key):
        if key not in adata.obs:
            raise input_error(
                f"obs[{key!r}] is missing.", fix="score the 'primitive' and 'definitive' signatures first."
            )
    calls = ontogeny_calls(
        adata.obs[primitive_key].to_numpy(), adata.obs[definitive_key].to_numpy(), z_min=z_min
    )
    adata.obs[key_added] = pd.Categorical(calls, categories=["primitive", "definitive", "none"])
    rows = []
    samples = adata.obs[sample_key].astype(str).to_numpy()
    for s in pd.unique(samples):
        prim, defi, call = sample_call(calls[samples == s], min_fraction=min_fraction)
        rows.append(
            {
                "sample": s,
                "primitive_fraction": prim,
                "definitive_fraction": defi,
                "primitive_definitive_call": call,
            }
        )
    adata.uns[key_added] = {
        "params": {
            "primitive_key": primitive_key,
            "definitive_key": definitive_key,
            "z_min": z_min,
            "min_fraction": min_fraction,
        },
        "samples": pd.DataFrame(rows),
    }
    return adata if copy else None


# --------------------------------------------------------------------------------------------------------
# stage entry point


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

PROGRAMME_COLUMNS = [
    "sample",
    "condition",
    "n_cells",
    "n_hsc_like",
    "hsc_like_fraction",
    "hsc_like_ci_low",
    "hsc_like_ci_high",
    "hsc_programme_share",
    "missing_genes",
    "primitive_definitive_call",
]


def _settings(settings: Mapping | None) -> dict:
    out = dict(DEFAULT_SETTINGS)
    out.update(
        {k: v for k, v in (settings or {}).items() if v is not None or k in ("signatures", "user_species")}
    )
    unknown = sorted(set(out) - set(DEFAULT_SETTINGS))
    if unknown:
        raise input_error(f"unknown score setting(s) {unknown}.", fix=f"use only {sorted(DEFAULT_SETTINGS)}.")
    return out


def _check_input(adata: ad.AnnData, path: str) -> None:
    missing = [c for c in ("sample", "condition") if c not in adata.obs]
    if missing:
        raise input_error(
            f"obs lacks the column(s) {missing}.",
            path=path,
            fix="run the upstream stages (ingest -> cluster) which add them.",
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


def run_score(
    *,
    clustered: str,
    scored: str,
    programme: str,
    figure: str,
    settings: Mapping,
    coverage: str | None = None,
    missing: str | None = None,
) -> None:
    """Score the clustered cells and write the scored h5ad, the HSC-programme table and a figure.

    Outputs: ``scored`` (obs ``hsc_score`` = the identity-aware HSC score of
    :mod:`hscseq.score.identity`, ``score_<name>`` (+ ``_z``, ``_p``) for every library / user signature
    (the native programme alone: ``score_hsc_native``), ``hsc_identity`` (class) and its ``_score``,
    ``_lineage``, ``_gate``, ``hsc_like``, ``hsc_stage``, ``ontogeny``; uns ``signatures``, ``hsc_identity``,
    ``hsc_like``, ``hsc_stage``, ``missing_programme``, ``ontogeny``), ``programme`` (one row per sample,
    :data:`PROGRAMME_COLUMNS` plus details: identity class fractions with CIs, stage shares), ``figure``
    (PNG), optionally ``coverage`` (coverage per signature and per sample) and
    ``missing`` (per sample and gene comparison with in vivo HSCs).
    """
    cfg = _settings(settings)
    if not Path(clustered).is_file():
        raise input_error("the clustered h5ad does not exist.", path=clustered, fix="run the cluster stage.")
    adata = ad.read_h5ad(clustered)
    _check_input(adata, clustered)
    species = analysis_species(adata)
    signatures = load_signatures(
        cfg["user_signatures"], species=species, user_species=cfg["user_species"], names=cfg["signatures"]
    )
    hsc_name = cfg["hsc_signature"]
    if hsc_name not in signatures:
        all_sigs = load_signatures(cfg["user_signatures"], species=species, user_species=cfg["user_species"])
        if hsc_name not in all_sigs:
            raise input_error(
                f"the HSC signature {hsc_name!r} is not in the library or the user files.",
                path=clustered,
                fix=f"set score.hsc_signature to one of {sorted(all_sigs)}.",
            )
        signatures[hsc_name] = all_sigs[hsc_name]
    library = load_signatures(species=species)
    for needed in IDENTITY_SIGNATURES:  # programmes of the identity call, stage and ontogeny
        if needed not in signatures:
            signatures[needed] = library[needed]
    logger.info(
        "scoring %d signatures (%s) on %d cells, species %s",
        len(signatures),
        cfg["method"],
        adata.n_obs,
        species,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("always", UserWarning)
        score_signatures(
            adata,
            signatures,
            method=cfg["method"],
            n_null=cfg["n_null"],
            n_bins=cfg["n_bins"],
            n_ctrl=cfg["n_ctrl"],
            max_rank=cfg["aucell_max_rank"],
            min_coverage=cfg["min_coverage"],
            species=species,
            random_state=cfg["seed"],
        )
    from hscseq.score.identity import run_identity

    run_identity(adata, cfg, hsc_name=hsc_name, species=species)  # hsc_score, hsc_like, stage, ontogeny
    labels = cfg["reference_hsc_labels"]
    hsc_genes = adata.uns["signatures"]["genes"][hsc_name]["up"]
    missing_programme(
        adata,
        hsc_genes,
        hsc_labels=labels,
        min_reference_detection=cfg["min_reference_detection"],
        established_ratio=cfg["established_ratio"],
        min_query_cells=cfg["min_query_cells"],
    )
    table = programme_table(adata)
    adata.uns.setdefault("hscseq", {})
    adata.uns["hscseq"]["score"] = {
        "settings": {k: v for k, v in cfg.items() if v is not None},
        "hsc_signature": hsc_name,
        "species": species,
    }
    write_h5ad(adata, scored)
    write_table(table, programme, index=False)
    if coverage:
        cov = adata.uns["signatures"]["coverage"].merge(
            adata.uns["signatures"]["coverage_by_sample"], on="signature", how="left"
        )
        write_table(cov, coverage, index=False)
    if missing:
        write_table(adata.uns["missing_programme"]["genes"], missing, index=False)
    save_and_close(plot_scores(adata), figure)
    logger.info(
        "HSC-like fractions:\n%s",
        table[["sample", "hsc_like_fraction", "hsc_programme_share", "primitive_definitive_call"]].to_string(
            index=False
        ),
    )


def programme_table(adata: ad.AnnData) -> pd.DataFrame:
    """Join the per-sample HSC-likeness, missing programme and ontogeny tables (one row per sample)."""
    like = adata.uns["hsc_like"]["samples"]
    miss = adata.uns["missing_programme"]["samples"]
    onto = adata.uns["ontogeny"]["samples"]
    table = like.merge(miss, on="sample", how="left").merge(onto, on="sample", how="left")
    for key in ("hsc_stage", "hsc_identity"):  # identity classes and stage (issue #13)
        if key in adata.uns:
            extra = adata.uns[key]["samples"]
            dup = [c for c in extra.columns if c in table.columns and c != "sample"]
            table = table.merge(extra.drop(columns=dup), on="sample", how="left")
    table["hsc_threshold"] = adata.uns["hsc_like"]["threshold"]
    table["role"] = np.where(
        table["condition"] == adata.uns["hsc_like"]["params"]["reference_condition"], "calibration", "query"
    )
    rest = [c for c in table.columns if c not in PROGRAMME_COLUMNS]
    return table[PROGRAMME_COLUMNS + rest]


def _plot_identity(ax, identity: pd.DataFrame) -> None:
    """Stacked bars: per sample, the share of each HSC identity class (why cells are or are not HSC-like)."""
    from hscseq.score.identity import CLASS_SLUGS

    colours = ["#1b9e77", "#66a61e", "#e7298a", "#7570b3", "#bbbbbb"]
    bottom = np.zeros(len(identity))
    for (label, slug), colour in zip(CLASS_SLUGS.items(), colours, strict=True):
        values = identity[f"frac_{slug}"].to_numpy(dtype=float)
        ax.bar(range(len(identity)), values, bottom=bottom, color=colour, label=label)
        bottom += np.nan_to_num(values)
    ax.set_xticks(range(len(identity)), identity.index, rotation=45, ha="right", fontsize=8)
    ax.set_ylim(0, 1)
    ax.set_title("HSC identity classes")
    ax.legend(fontsize=6, loc="upper right")


def plot_scores(adata: ad.AnnData, *, show: bool | None = None, save: str | None = None):
    """Figure: HSC identity score per sample, HSC-like share (95% CI), lineage z-scores, identity classes.

    Parameters
    ----------
    adata
        Scored object (:func:`score_signatures`, :func:`hsc_likeness` (its score is shown),
        :func:`missing_programme`, :func:`primitive_vs_definitive`).
    show
        Show the figure (``plt.show()``) and return ``None``.
    save
        Path to write the figure to (format from the suffix).

    Returns
    -------
    The :class:`matplotlib.figure.Figure` (``None`` when ``show=True``).
    """
    import matplotlib.pyplot as plt

    table = programme_table(adata)
    samples = table["sample"].tolist()
    obs = adata.obs
    lineage = [c[len("score_") : -2] for c in obs.columns if c.startswith("score_") and c.endswith("_z")]
    identity = adata.uns.get("hsc_identity", {}).get("samples")
    n_panels = 4 if identity is not None else 3
    fig, axes = plt.subplots(
        1,
        n_panels,
        figsize=(6 + (2.9 if identity is not None else 2.2) * len(samples), 4.8),
        gridspec_kw={"width_ratios": [1.2, 1, 1.4, 1.3][:n_panels]},
    )
    palette = {"in_vivo": "#1b9e77", "engineered": "#d95f02", "organoid": "#7570b3"}
    key = adata.uns["hsc_like"]["params"].get("score_key", "hsc_score")  # the score hsc_likeness used
    data = [obs.loc[obs["sample"].astype(str) == s, key].dropna().to_numpy() for s in samples]
    box = axes[0].boxplot(data, patch_artist=True, showfliers=False)
    for patch, cond in zip(box["boxes"], table["condition"], strict=True):
        patch.set_facecolor(palette.get(cond, "#999999"))
    thr = adata.uns["hsc_like"]["threshold"]
    if np.isfinite(thr):
        axes[0].axhline(thr, color="k", ls="--", lw=1, label="HSC-like threshold")
        axes[0].legend(fontsize=7)
    axes[0].set_xticks(range(1, len(samples) + 1), samples, rotation=45, ha="right", fontsize=8)
    axes[0].set_title("HSC identity score")
    frac = table["hsc_like_fraction"].to_numpy()
    err = np.vstack([frac - table["hsc_like_ci_low"], table["hsc_like_ci_high"] - frac]).clip(min=0)
    axes[1].bar(
        range(len(samples)),
        frac,
        yerr=err,
        capsize=3,
        color=[palette.get(c, "#999999") for c in table["condition"]],
    )
    axes[1].set_xticks(range(len(samples)), samples, rotation=45, ha="right", fontsize=8)
    axes[1].set_title("HSC-like fraction (95% CI)")
    means = pd.DataFrame(
        {
            name: obs.groupby(obs["sample"].astype(str), observed=True)[f"score_{name}_z"].mean()
            for name in lineage
        }
    ).reindex(samples)
    im = axes[2].imshow(
        means.T.to_numpy(dtype=float),
        aspect="auto",
        cmap="RdBu_r",
        vmin=-np.nanmax(np.abs(means.to_numpy(dtype=float))) if means.size else -1,
        vmax=np.nanmax(np.abs(means.to_numpy(dtype=float))) if means.size else 1,
    )
    axes[2].set_yticks(range(len(lineage)), lineage, fontsize=7)
    axes[2].set_xticks(range(len(samples)), samples, rotation=45, ha="right", fontsize=8)
    axes[2].set_title("mean signature z-score")
    fig.colorbar(im, ax=axes[2], shrink=0.7)
    if identity is not None:
        _plot_identity(axes[3], identity.set_index("sample").reindex(samples))
    fig.tight_layout()
    return finish(fig, show=show, save=save)
