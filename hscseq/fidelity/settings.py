"""The fidelity stage's settings object and shared constants.

:class:`FidelitySettings` is the one settings object of the stage: :func:`~hscseq.fidelity.run_fidelity`,
:func:`~hscseq.fidelity.map_to_reference`, :func:`~hscseq.fidelity.scorecard`,
:func:`~hscseq.fidelity.controls` and the sweeps all read it. Its defaults are the ``fidelity`` section of
``workflow/schemas/config.schema.yaml`` (the single source of defaults; ``config/config.yaml`` states the same
values, which a test checks).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from hscseq._settings import StageSettings, schema_field

NOVEL = "novel"
PARTS = ("identity", "similarity", "programme", "composition")
STAGE = "fidelity"


@dataclass(frozen=True)
class FidelitySettings(StageSettings):
    """Settings of the fidelity stage (config section ``fidelity``; meanings in the schema and README)."""

    stage: ClassVar[str] = STAGE
    method: str = schema_field(STAGE, "method")
    n_neighbors: int = schema_field(STAGE, "n_neighbors")
    n_bootstrap: int = schema_field(STAGE, "n_bootstrap")
    seed: int = schema_field(STAGE, "seed")
    novelty_space: str = schema_field(STAGE, "novelty_space")
    null_quantile: float = schema_field(STAGE, "null_quantile")
    absent_quantile: float = schema_field(STAGE, "absent_quantile")
    smooth_neighbors: int = schema_field(STAGE, "smooth_neighbors")
    label_metric: str = schema_field(STAGE, "label_metric")
    uncertainty_novel: bool = schema_field(STAGE, "uncertainty_novel")
    min_confidence: float = schema_field(STAGE, "min_confidence")
    min_cells: int = schema_field(STAGE, "min_cells")
    n_informative_genes: int = schema_field(STAGE, "n_informative_genes")
    index_weights: Mapping[str, float] = schema_field(STAGE, "index_weights")
    reference: str | None = schema_field(STAGE, "reference")
    reference_label_key: str = schema_field(STAGE, "reference_label_key")
    reference_stage_key: str | None = schema_field(STAGE, "reference_stage_key")
    reference_donor_key: str | None = schema_field(STAGE, "reference_donor_key")
    hsc_label: str | None = schema_field(STAGE, "hsc_label")
    negative_control_type: str | None = schema_field(STAGE, "negative_control_type")
    controls_max_cells_per_type: int | None = schema_field(STAGE, "controls_max_cells_per_type")
    max_epochs: int = schema_field(STAGE, "max_epochs")
    n_latent: int = schema_field(STAGE, "n_latent")
    de_top_n: int = schema_field(STAGE, "de_top_n")
    de_min_cells: int = schema_field(STAGE, "de_min_cells")
    de_max_genes: int = schema_field(STAGE, "de_max_genes")
    label_method: str = schema_field(STAGE, "label_method")
    hierarchy: str | None = schema_field(STAGE, "hierarchy")
    min_label_probability: float = schema_field(STAGE, "min_label_probability")
    min_parent_probability: float = schema_field(STAGE, "min_parent_probability")
    hierarchy_max_distance: float = schema_field(STAGE, "hierarchy_max_distance")
    sibling_genes: int = schema_field(STAGE, "sibling_genes")
    logreg_c: float = schema_field(STAGE, "logreg_c")
    logreg_max_cells_per_type: int | None = schema_field(STAGE, "logreg_max_cells_per_type")

    def mapping_method(self, *, external_reference: bool = False) -> str:
        """``method`` with ``auto`` resolved: scANVI surgery onto a reference h5ad, kNN otherwise."""
        if self.method != "auto":
            return self.method
        return "scanvi" if external_reference else "knn"

    @property
    def controls_n_bootstrap(self) -> int:
        """Bootstrap replicates of each control (half the scorecard's, at least 10)."""
        return max(10, self.n_bootstrap // 2)


DEFAULT_SETTINGS = FidelitySettings()


def fidelity_settings(
    settings: FidelitySettings | Mapping[str, Any] | None = None, **changes: Any
) -> FidelitySettings:
    """``settings`` (an object, a config section or ``None`` = defaults) with ``changes`` applied."""
    return FidelitySettings.coerce(settings, **changes)
