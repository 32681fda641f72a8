"""Scenario specs: in vivo reference donors, engineered precursors, organoid timepoints and the demo."""

from __future__ import annotations

from collections.abc import Sequence

import anndata as ad

from hscseq.datasets.model import SampleSpec
from hscseq.datasets.simulator import simulate

#: In vivo bone-marrow composition used for reference donors (fractions sum to 1).
REFERENCE_COMPOSITION: dict[str, float] = {
    "HSC": 0.07,
    "MPP": 0.08,
    "LMPP": 0.07,
    "GMP": 0.10,
    "MEP": 0.08,
    "MkP": 0.05,
    "erythroid": 0.16,
    "monocyte": 0.12,
    "neutrophil": 0.14,
    "B": 0.08,
    "T_NK": 0.05,
}

#: Engineered precursors: HSC-like (incomplete programme), some progenitors, and off-target states.
ENGINEERED_COMPOSITION: dict[str, float] = {
    "HSC": 0.40,
    "MPP": 0.12,
    "GMP": 0.08,
    "hemogenic_endothelium": 0.22,
    "primitive_erythroid": 0.18,
}

#: HSC genes switched off in engineered HSC-like cells (the "missing programme" planted in the demo).
DEFAULT_MISSING_HSC_GENES: tuple[str, ...] = ("Hlf", "Mecom", "Procr", "Fgd5", "Hoxb5")

#: Organoid output per timepoint: myeloid-skewed, no lymphoid output, erythroid fading with time.
ORGANOID_COMPOSITIONS: dict[str, dict[str, float]] = {
    "week2": {
        "HSC": 0.06,
        "MPP": 0.14,
        "GMP": 0.16,
        "MEP": 0.08,
        "MkP": 0.04,
        "erythroid": 0.16,
        "monocyte": 0.22,
        "neutrophil": 0.14,
    },
    "week4": {
        "HSC": 0.03,
        "MPP": 0.07,
        "GMP": 0.12,
        "MEP": 0.05,
        "MkP": 0.03,
        "erythroid": 0.08,
        "monocyte": 0.36,
        "neutrophil": 0.26,
    },
}


def reference_specs(n_cells: int = 1500, *, n_donors: int = 2, species: str = "mouse") -> list[SampleSpec]:
    """In vivo bone-marrow donors, one batch each."""
    return [
        SampleSpec(
            sample=f"invivo_donor{i + 1}",
            condition="in_vivo",
            n_cells=n_cells,
            composition=REFERENCE_COMPOSITION,
            batch=f"donor{i + 1}",
            donor=f"donor{i + 1}",
            species=species,
        )
        for i in range(n_donors)
    ]


def engineered_spec(
    n_cells: int = 1200,
    *,
    species: str = "mouse",
    sample: str = "engineered_7TF",
    missing_hsc_genes: Sequence[str] = DEFAULT_MISSING_HSC_GENES,
    hsc_programme_strength: float = 0.8,
    perturbation: float = 0.0,
) -> SampleSpec:
    """ESC-derived HSC precursors with an incomplete HSC programme and off-target states."""
    return SampleSpec(
        sample=sample,
        condition="engineered",
        n_cells=n_cells,
        composition=ENGINEERED_COMPOSITION,
        batch=sample,
        species=species,
        missing_hsc_genes=tuple(missing_hsc_genes),
        hsc_programme_strength=hsc_programme_strength,
        perturbation=perturbation,
    )


def organoid_specs(n_cells: int = 900, *, species: str = "human") -> list[SampleSpec]:
    """Bone-marrow organoid output at each timepoint of :data:`ORGANOID_COMPOSITIONS`."""
    return [
        SampleSpec(
            sample=f"organoid_{tp}",
            condition="organoid",
            n_cells=n_cells,
            composition=comp,
            batch=f"organoid_{tp}",
            timepoint=tp,
            species=species,
            perturbation=0.15,
        )
        for tp, comp in ORGANOID_COMPOSITIONS.items()
    ]


def demo(*, scale: float = 1.0, seed: int = 0, organoid_species: str = "human") -> dict[str, ad.AnnData]:
    """The demo scenario: two mouse in vivo donors, mouse engineered precursors, organoid timepoints.

    ``scale`` multiplies every sample's cell number (tests use small scales). ``organoid_species`` is the
    species of the organoid samples (human by default, as organoid labs grow human cells).
    """

    def n(x: int) -> int:
        return max(60, round(x * scale))

    specs = [
        *reference_specs(n(1500)),
        engineered_spec(n(1200)),
        *organoid_specs(n(900), species=organoid_species),
    ]
    return simulate(specs, seed=seed)
