"""Primitive versus definitive haematopoiesis, called only on evidence (issue #13).

Primitive (yolk-sac) haematopoiesis is recognised by embryonic globins, which only erythroid cells make
(Palis 2014, doi:10.3389/fphys.2014.00003); a non-erythroid cell carries no primitive evidence, whatever its
globin-set z-score (ambient globin mRNA or noise in HSC precursors must not make them "primitive"). Definitive
evidence is an erythroid cell with adult globins, or a haematopoietic cell expressing the medial HOXA genes
(Hoxa5/7/9/10 demarcate definitive HSC potential: Dou et al. 2016, doi:10.1038/ncb3354).

Per cell (first match wins): ``primitive`` = erythroid programme on, embryonic-globin z >= ``z_min`` and above
the definitive z; ``definitive`` = erythroid on with definitive z >= ``z_min`` (and >= the primitive z), or
haematopoietic identity on with at least ``hoxa_min`` medial HOXA genes detected; else ``none``. Per sample:
``primitive`` / ``definitive`` when that evidence reaches ``min_fraction`` of the cells and at least twice the
other, ``mixed`` when both reach it, ``undetermined`` otherwise (including samples without erythroid or
HOXA-positive haematopoietic cells). When the erythroid programme cannot be scored (too few of its genes
measured), cells with a globin-set z >= ``z_min`` count as erythroid (globins are erythroid-only), with a
warning.

:func:`primitive_vs_definitive_evidence` is the evidence call the score stage uses;
:func:`primitive_vs_definitive` (numeric core :func:`ontogeny_calls`) is the plain call on the two globin-set
z-scores alone (the higher one if it reaches ``z_min``), with the same per-sample rule (:func:`sample_call`).
"""

from __future__ import annotations

import logging

import anndata as ad
import numpy as np
import pandas as pd

from hscseq._utils import input_error
from hscseq.genes import convert_symbols

logger = logging.getLogger(__name__)

#: Medial HOXA genes (human symbols; translated per species).
MEDIAL_HOXA: tuple[str, ...] = ("HOXA5", "HOXA7", "HOXA9", "HOXA10")


def evidence_calls(
    primitive_z: np.ndarray,
    definitive_z: np.ndarray,
    erythroid_on: np.ndarray,
    hoxa_count: np.ndarray,
    haematopoietic_on: np.ndarray,
    *,
    z_min: float = 3.0,
    hoxa_min: int = 2,
) -> np.ndarray:
    """Per cell 'primitive', 'definitive' or 'none' (rules: module docstring)."""
    p = np.nan_to_num(np.asarray(primitive_z, dtype=float), nan=-np.inf)
    d = np.nan_to_num(np.asarray(definitive_z, dtype=float), nan=-np.inf)
    ery = np.asarray(erythroid_on, dtype=bool)
    hoxa = (np.asarray(hoxa_count, dtype=float) >= hoxa_min) & np.asarray(haematopoietic_on, dtype=bool)
    primitive = ery & (p >= z_min) & (p > d)
    definitive = (ery & (d >= z_min) & (d >= p)) | hoxa
    return np.select([primitive, definitive], ["primitive", "definitive"], default="none").astype(object)


def sample_call(calls: np.ndarray, *, min_fraction: float = 0.02) -> tuple[float, float, str]:
    """Primitive and definitive evidence fractions of one sample and its call."""
    calls = np.asarray(calls, dtype=object)
    prim = float(np.mean(calls == "primitive")) if len(calls) else 0.0
    defi = float(np.mean(calls == "definitive")) if len(calls) else 0.0
    if prim >= min_fraction and prim >= 2 * defi:
        call = "primitive"
    elif defi >= min_fraction and defi >= 2 * prim:
        call = "definitive"
    elif prim >= min_fraction and defi >= min_fraction:
        call = "mixed"
    else:
        call = "undetermined"
    return prim, defi, call


def _hoxa_count(adata: ad.AnnData, species: str) -> tuple[np.ndarray, list[str]]:
    genes = [g for g in convert_symbols(list(MEDIAL_HOXA), "human", species) if g is not None]
    upper = {str(v).upper(): i for i, v in enumerate(adata.var_names)}
    idx = [upper[g.upper()] for g in genes if g.upper() in upper]
    if not idx:
        return np.zeros(adata.n_obs), []
    counts = np.asarray((adata.X[:, idx] > 0).sum(axis=1)).ravel().astype(float)
    return counts, [str(adata.var_names[i]) for i in idx]


def primitive_vs_definitive_evidence(
    adata: ad.AnnData,
    *,
    species: str,
    primitive_key: str = "score_primitive_z",
    definitive_key: str = "score_definitive_z",
    erythroid_key: str = "score_erythroid_z",
    haematopoietic_key: str = "score_haematopoietic_z",
    haematopoietic_threshold: float | None = None,
    sample_key: str = "sample",
    z_min: float = 3.0,
    hoxa_min: int = 2,
    min_fraction: float = 0.02,
    key_added: str = "ontogeny",
    copy: bool = False,
) -> ad.AnnData | None:
    """Per-cell and per-sample primitive / definitive call on evidence (rules: module docstring).

    An unscored erythroid programme means no cell counts as erythroid; an unscored haematopoietic programme
    lets every cell count as haematopoietic for the HOXA evidence.

    Parameters
    ----------
    adata
        Cells scored for the primitive, definitive, erythroid and haematopoietic signatures.
    species
        Analysis species (which HOXA symbols to read).
    primitive_key
        ``obs`` column of the primitive (embryonic globin) z-score.
    definitive_key
        ``obs`` column of the definitive z-score.
    erythroid_key
        ``obs`` column of the erythroid z-score (globin evidence counts only in erythroid cells).
    haematopoietic_key
        ``obs`` column of the haematopoietic-identity z-score (HOXA evidence counts only in those cells).
    haematopoietic_threshold
        Threshold of ``haematopoietic_key`` (default ``z_min``; the score stage passes the identity
        threshold).
    sample_key
        ``obs`` column with samples.
    z_min
        Threshold of the primitive, definitive and erythroid z-scores.
    hoxa_min
        Medial HOXA genes a haematopoietic cell must express to count as definitive evidence.
    min_fraction
        Smallest share of evidence cells that makes a sample's call (else ``undetermined``).
    key_added
        ``obs`` and ``uns`` key of the results.
    copy
        Return a modified copy instead of writing in place.

    Returns
    -------
    ``None``, or the modified copy when ``copy=True``. Writes ``obs[key_added]`` (categorical) and
    ``uns[key_added]`` with ``samples`` (primitive_fraction, definitive_fraction, primitive_definitive_call,
    n_erythroid, n_hoxa_haematopoietic) and ``params``.
    """
    adata = adata.copy() if copy else adata
    for key in (primitive_key, definitive_key):
        if key not in adata.obs:
            raise input_error(
                f"obs[{key!r}] is missing.", fix="score the 'primitive' and 'definitive' signatures first."
            )

    def col(key: str) -> np.ndarray:
        return adata.obs[key].to_numpy(dtype=float) if key in adata.obs else np.full(adata.n_obs, np.nan)

    ery_z = col(erythroid_key)
    if np.isfinite(ery_z).any():
        erythroid_on = np.isfinite(ery_z) & (ery_z >= z_min)
    else:  # erythroid programme not measurable: globin-high cells are erythroid (globins are erythroid-only)
        logger.warning("erythroid programme not scored: cells with globin z >= %g count as erythroid", z_min)
        glob = np.fmax(col(primitive_key), col(definitive_key))
        erythroid_on = np.isfinite(glob) & (glob >= z_min)
    haem_z = col(haematopoietic_key)
    t_haem = z_min if haematopoietic_threshold is None else haematopoietic_threshold
    haem_on = np.where(np.isfinite(haem_z), haem_z >= t_haem, True)
    hoxa, hoxa_genes = _hoxa_count(adata, species)
    calls = evidence_calls(
        col(primitive_key), col(definitive_key), erythroid_on, hoxa, haem_on, z_min=z_min, hoxa_min=hoxa_min
    )
    adata.obs[key_added] = pd.Categorical(calls, categories=["primitive", "definitive", "none"])
    samples = adata.obs[sample_key].astype(str).to_numpy()
    rows = []
    for s in pd.unique(samples):
        sel = samples == s
        prim, defi, call = sample_call(calls[sel], min_fraction=min_fraction)
        rows.append(
            {
                "sample": s,
                "primitive_fraction": prim,
                "definitive_fraction": defi,
                "primitive_definitive_call": call,
                "n_erythroid": int(erythroid_on[sel].sum()),
                "n_hoxa_haematopoietic": int(((hoxa >= hoxa_min) & haem_on)[sel].sum()),
            }
        )
    adata.uns[key_added] = {
        "params": {
            "primitive_key": primitive_key,
            "definitive_key": definitive_key,
            "erythroid_key": erythroid_key,
            "haematopoietic_key": haematopoietic_key,
            "haematopoietic_threshold": float(t_haem),
            "hoxa_genes": hoxa_genes,
            "z_min": z_min,
            "hoxa_min": hoxa_min,
            "min_fraction": min_fraction,
        },
        "samples": pd.DataFrame(rows),
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
