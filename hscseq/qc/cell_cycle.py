"""Cell cycle: Tirosh et al. 2016 S / G2M genes of either species, scores and phase.

Numeric core: :func:`assign_phase`; AnnData wrapper: :func:`score_cell_cycle`.
"""

from __future__ import annotations

import logging
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from hscseq._utils import input_error, resource_path
from hscseq.qc.metrics import GENE_PATTERNS, _as_csr
from hscseq.qc.settings import DEFAULT_SETTINGS as _D
from hscseq.qc.thresholds import otsu_threshold

logger = logging.getLogger(__name__)


def cell_cycle_genes(species: str) -> tuple[list[str], list[str]]:
    """Tirosh et al. 2016 S-phase and G2/M genes in ``species`` symbols.

    Human: ``cell_cycle_tirosh2016.yaml`` plus the current symbols of the renamed genes (through the mouse
    list and one-to-one orthologs, e.g. MLF1IP -> CENPU); mouse: ``cell_cycle_mouse_hemascoper.tsv`` plus
    one-to-one orthologs of the human list.

    Parameters
    ----------
    species
        ``"mouse"`` or ``"human"``.

    Returns
    -------
    S-phase genes and G2/M genes.
    """
    import yaml

    from hscseq.genes import ortholog_map

    if species not in GENE_PATTERNS:
        raise input_error(
            f"unknown species {species!r} for cell-cycle genes.",
            fix=f"set species to one of {sorted(GENE_PATTERNS)} in the sample sheet.",
        )
    with open(resource_path("genesets", "cell_cycle_tirosh2016.yaml")) as fh:
        human = yaml.safe_load(fh)
    mouse = pd.read_csv(resource_path("genesets", "cell_cycle_mouse_hemascoper.tsv"), sep="\t", comment="#")
    mouse_s = mouse.loc[mouse["Phase"] == "G1-S", "Gene"].tolist()
    mouse_g2m = mouse.loc[mouse["Phase"] == "G2-M", "Gene"].tolist()
    if species == "human":
        m2h = ortholog_map("mouse", "human")
        s = list(human["s_genes"]) + [m2h[g] for g in mouse_s if g in m2h]
        g2m = list(human["g2m_genes"]) + [m2h[g] for g in mouse_g2m if g in m2h]
    else:
        h2m = ortholog_map("human", "mouse")
        s = mouse_s + [h2m[g] for g in human["s_genes"] if g in h2m]
        g2m = mouse_g2m + [h2m[g] for g in human["g2m_genes"] if g in h2m]
    s = list(dict.fromkeys(s))
    g2m = [g for g in dict.fromkeys(g2m) if g not in set(s)]
    return s, g2m


def score_cell_cycle(
    adata: ad.AnnData,
    *,
    species: str,
    layer: str | None = None,
    min_genes: int = _D.min_cell_cycle_genes,
    phase_rule: str = _D.cell_cycle_phase_rule,
    random_state: int = _D.seed,
    key_added: str = "cell_cycle",
    copy: bool = False,
) -> ad.AnnData | None:
    """S and G2/M scores and phase (Tirosh et al. 2016 genes) on library-size-normalised log counts.

    Uses ``scanpy.tl.score_genes_cell_cycle`` on a normalised copy of the counts (sparse; ``X`` itself is not
    changed). With fewer than ``min_genes`` S or G2/M genes measured, scores are NaN and phase is
    ``"unknown"`` (logged and recorded).

    Parameters
    ----------
    adata
        Raw counts in ``X`` (or in ``layer``).
    species
        ``"mouse"`` or ``"human"``.
    layer
        Layer holding the counts; ``None`` uses ``X``.
    min_genes
        Minimum number of measured genes of each phase list.
    phase_rule
        ``"otsu"`` (per-sample score cut-offs, :func:`assign_phase`) or ``"scanpy"`` (scores above 0).
    random_state
        Seed of the control-gene sampling.
    key_added
        ``uns`` key receiving ``params`` and the genes used.
    copy
        Return a modified copy instead of writing in place.

    Returns
    -------
    The modified copy if ``copy=True``, else ``None``.
    """
    import scanpy as sc

    adata = adata.copy() if copy else adata
    s_all, g2m_all = cell_cycle_genes(species)
    present = set(adata.var_names)
    s_genes = [g for g in s_all if g in present]
    g2m_genes = [g for g in g2m_all if g in present]
    if phase_rule not in ("otsu", "scanpy"):
        raise input_error(f"unknown phase rule {phase_rule!r}.", fix="use 'otsu' or 'scanpy'.")
    uns: dict[str, Any] = {
        "params": {
            "phase_rule": phase_rule,
            "species": species,
            "min_genes": int(min_genes),
            "random_state": int(random_state),
            "layer": layer or "X",
        },
        "s_genes": s_genes,
        "g2m_genes": g2m_genes,
    }
    if len(s_genes) < min_genes or len(g2m_genes) < min_genes:
        msg = (
            f"only {len(s_genes)} S and {len(g2m_genes)} G2/M genes measured (minimum {min_genes}); "
            "cell-cycle phase not assigned"
        )
        logger.warning(msg)
        adata.obs["S_score"] = np.nan
        adata.obs["G2M_score"] = np.nan
        adata.obs["phase"] = pd.Categorical(["unknown"] * adata.n_obs)
        uns["warning"] = msg
        adata.uns[key_added] = uns
        return adata if copy else None
    counts = _as_csr(adata.layers[layer] if layer is not None else adata.X).astype(np.float32)
    lib = np.asarray(counts.sum(axis=1)).ravel()
    norm = sp.csr_matrix(sp.diags((1e4 / np.maximum(lib, 1)).astype(np.float32)) @ counts)
    norm.data = np.log1p(norm.data)
    tmp = ad.AnnData(X=norm, obs=pd.DataFrame(index=adata.obs_names), var=pd.DataFrame(index=adata.var_names))
    sc.tl.score_genes_cell_cycle(tmp, s_genes=s_genes, g2m_genes=g2m_genes, random_state=random_state)
    adata.obs["S_score"] = tmp.obs["S_score"].to_numpy()
    adata.obs["G2M_score"] = tmp.obs["G2M_score"].to_numpy()
    if phase_rule == "scanpy":
        phase = tmp.obs["phase"].astype(str).to_numpy()
    else:
        phase, cuts = assign_phase(tmp.obs["S_score"].to_numpy(), tmp.obs["G2M_score"].to_numpy())
        uns["thresholds"] = cuts
    adata.obs["phase"] = pd.Categorical(phase, categories=["G1", "S", "G2M"])
    adata.uns[key_added] = uns
    counts_by_phase = adata.obs["phase"].value_counts()
    logger.info(
        "cell cycle (%d S, %d G2/M genes): %s",
        len(s_genes),
        len(g2m_genes),
        ", ".join(f"{k} {v}" for k, v in counts_by_phase.items()),
    )
    return adata if copy else None


def assign_phase(s_score: np.ndarray, g2m_score: np.ndarray) -> tuple[np.ndarray, dict[str, float]]:
    """Cell-cycle phase from S and G2/M scores with per-sample score cut-offs.

    scanpy calls a cell cycling when a score is above 0, i.e. above its control genes; on real and simulated
    data G1 cells often score slightly above 0, which calls many of them S. Here a score counts only above
    ``max(0, Otsu threshold of that score)`` (:func:`otsu_threshold`), which separates the cycling cells'
    high scores from the G1 bulk; a cell above a cut-off takes the phase of its higher score (as in scanpy),
    others are G1.

    Parameters
    ----------
    s_score
        S-phase score per cell.
    g2m_score
        G2/M score per cell.

    Returns
    -------
    Phase per cell (``"G1"``, ``"S"``, ``"G2M"``) and the two cut-offs used.
    """
    s = np.asarray(s_score, dtype=np.float64)
    g = np.asarray(g2m_score, dtype=np.float64)
    cut_s = max(0.0, otsu_threshold(s) or 0.0)
    cut_g = max(0.0, otsu_threshold(g) or 0.0)
    phase = np.full(s.shape, "G1", dtype=object)
    cycling = (s > cut_s) | (g > cut_g)
    phase[cycling & (s >= g)] = "S"
    phase[cycling & (g > s)] = "G2M"
    return phase.astype(str), {"S": float(cut_s), "G2M": float(cut_g)}
