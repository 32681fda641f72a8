"""Human bone-marrow organoid samples (issue #15): the planted lineage plan per week, the HematoMap types of
each lineage, and :class:`OrganoidSpec` replicates drawn around the plan.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

#: Planted lineage composition of organoid output per week (fractions sum to 1). Megakaryocytes emerge
#: (0 -> 10%), HSPC fade, myeloid output rises, erythroid, dendritic and stromal stay flat; B, T and NK are
#: never made; ``novel`` is an off-reference endothelial-like state.
ORGANOID_LINEAGE_PLAN: dict[str, dict[str, float]] = {
    "week1": {
        "HSPC": 0.42,
        "myeloid": 0.15,
        "erythroid": 0.22,
        "megakaryocyte": 0.00,
        "dendritic": 0.03,
        "stromal": 0.10,
        "novel": 0.08,
    },
    "week2": {
        "HSPC": 0.34,
        "myeloid": 0.20,
        "erythroid": 0.22,
        "megakaryocyte": 0.03,
        "dendritic": 0.03,
        "stromal": 0.10,
        "novel": 0.08,
    },
    "week4": {
        "HSPC": 0.26,
        "myeloid": 0.25,
        "erythroid": 0.21,
        "megakaryocyte": 0.07,
        "dendritic": 0.03,
        "stromal": 0.10,
        "novel": 0.08,
    },
    "week6": {
        "HSPC": 0.21,
        "myeloid": 0.28,
        "erythroid": 0.20,
        "megakaryocyte": 0.10,
        "dendritic": 0.03,
        "stromal": 0.10,
        "novel": 0.08,
    },
}

#: HematoMap types making up each planted lineage, with their share within it.
ORGANOID_LINEAGE_TYPES: dict[str, dict[str, float]] = {
    "HSPC": {"HSC/MPP": 0.5, "LMPP": 0.2, "CMP": 0.3},
    "myeloid": {"GMP": 0.25, "pro-Mono": 0.25, "CD14 Mono": 0.35, "CD16 Mono": 0.15},
    "erythroid": {"MEP": 0.2, "pro-Ery1": 0.25, "pro-Ery2": 0.25, "Ery": 0.3},
    "megakaryocyte": {"MKP": 0.5, "MK": 0.5},
    "dendritic": {"pDC": 0.5, "pre-DC": 0.5},
    "stromal": {"Stromal": 1.0},
    "novel": {"endothelial_like": 1.0},
}

#: Replicate organoids per week in the demo (two at every week: the time course needs the scatter).
ORGANOID_REPLICATES: dict[str, int] = {"week1": 2, "week2": 2, "week4": 2, "week6": 2}


@dataclass(frozen=True)
class OrganoidSpec:
    """One organoid sample simulated from the HematoMap profiles.

    ``composition`` maps HematoMap types (or ``endothelial_like``) to planted fractions; ``perturbation``
    is the standard deviation of a per-organoid log fold change on 10% of genes (lower = more faithful).
    """

    sample: str
    timepoint: str
    replicate: str
    n_cells: int
    composition: Mapping[str, float]
    perturbation: float = 0.3
    doublet_rate: float = 0.03
    low_quality_rate: float = 0.03
    median_umis: float = 2500.0


def organoid_type_composition(lineages: Mapping[str, float]) -> dict[str, float]:
    """Lineage fractions -> HematoMap type fractions through :data:`ORGANOID_LINEAGE_TYPES`."""
    out: dict[str, float] = {}
    for lineage, frac in lineages.items():
        for cell_type, share in ORGANOID_LINEAGE_TYPES[lineage].items():
            out[cell_type] = out.get(cell_type, 0.0) + frac * share
    return out


def organoid_specs_from_profiles(
    n_cells: int = 500,
    *,
    plan: Mapping[str, Mapping[str, float]] = ORGANOID_LINEAGE_PLAN,
    replicates: Mapping[str, int] = ORGANOID_REPLICATES,
    concentration: float = 300.0,
    seed: int = 0,
) -> list[OrganoidSpec]:
    """Organoid samples per week and replicate; replicate compositions vary around the week's plan.

    Each replicate's lineage fractions are a Dirichlet draw with mean the planted fractions and the given
    ``concentration`` (between-organoid variance); lineages planted at 0 stay at 0. Fidelity improves over
    time: the perturbation falls from 0.45 (first week) to 0.2 (last week).
    """
    rng = np.random.default_rng([seed, 15, 1])
    weeks = list(plan)
    specs = []
    for w, week in enumerate(weeks):
        lineages = [k for k, v in plan[week].items() if v > 0]
        mean = np.array([plan[week][k] for k in lineages])
        for r in range(replicates.get(week, 1)):
            draw = rng.dirichlet(concentration * mean / mean.sum())
            comp = organoid_type_composition(dict(zip(lineages, draw, strict=True)))
            specs.append(
                OrganoidSpec(
                    sample=f"organoid_{week}_r{r + 1}",
                    timepoint=week,
                    replicate=f"r{r + 1}",
                    n_cells=n_cells,
                    composition=comp,
                    perturbation=0.45 - 0.25 * w / max(len(weeks) - 1, 1),
                )
            )
    return specs
