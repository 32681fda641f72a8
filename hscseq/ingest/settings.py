"""The ingest stage's settings object (config section ``ingest``; defaults from the config schema)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from hscseq._settings import StageSettings, schema_field

STAGE = "ingest"


@dataclass(frozen=True)
class IngestSettings(StageSettings):
    """Settings of the ingest stage (meanings in ``workflow/schemas/config.schema.yaml`` and README)."""

    stage: ClassVar[str] = STAGE
    min_known_gene_fraction: float = schema_field(STAGE, "min_known_gene_fraction")
    counts_layer: str = schema_field(STAGE, "counts_layer")
    table_orientation: str = schema_field(STAGE, "table_orientation")
