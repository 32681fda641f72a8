"""The integrate stage's settings object (config section ``integrate``; defaults from the config schema)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import ClassVar

from hscseq._settings import StageSettings, schema_field

STAGE = "integrate"


@dataclass(frozen=True)
class IntegrateSettings(StageSettings):
    """Settings of the integrate stage (meanings in ``workflow/schemas/config.schema.yaml`` and README)."""

    stage: ClassVar[str] = STAGE
    method: str = schema_field(STAGE, "method")
    n_top_genes: int = schema_field(STAGE, "n_top_genes")
    exclude_genes: Sequence[str] = schema_field(STAGE, "exclude_genes")
    exclude_cell_cycle_genes: bool = schema_field(STAGE, "exclude_cell_cycle_genes")
    n_latent: int = schema_field(STAGE, "n_latent")
    gene_likelihood: str = schema_field(STAGE, "gene_likelihood")
    n_pcs: int = schema_field(STAGE, "n_pcs")
    max_epochs: int | None = schema_field(STAGE, "max_epochs")
    max_steps: int | None = schema_field(STAGE, "max_steps")
    early_stopping: bool = schema_field(STAGE, "early_stopping")
    seed: int = schema_field(STAGE, "seed")
    silhouette_max_cells: int | None = schema_field(STAGE, "silhouette_max_cells")
    metric_bars: Mapping[str, float] = schema_field(STAGE, "metric_bars")


#: The default settings (the schema's ``integrate`` defaults); :func:`integrate`'s keyword defaults.
DEFAULT_SETTINGS = IntegrateSettings()
