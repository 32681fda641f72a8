"""The lineages stage's settings object (config section ``lineages``; defaults from the schema)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from hscseq._settings import StageSettings, schema_field

STAGE = "lineages"


@dataclass(frozen=True)
class LineageSettings(StageSettings):
    """Settings of the lineages stage (meanings in the schema, ``config/config.yaml`` and README)."""

    stage: ClassVar[str] = STAGE
    hierarchy: str | None = schema_field(STAGE, "hierarchy")
    min_cells: int = schema_field(STAGE, "min_cells")
    background_rate: float = schema_field(STAGE, "background_rate")
    alpha: float = schema_field(STAGE, "alpha")
    power: float = schema_field(STAGE, "power")
    min_fraction: float = schema_field(STAGE, "min_fraction")
    min_confidence: float = schema_field(STAGE, "min_confidence")
    fdr: float = schema_field(STAGE, "fdr")


def lineage_settings(settings: LineageSettings | Mapping[str, Any] | None = None) -> LineageSettings:
    """``settings`` as the settings object (an object, a config section, or ``None`` for the defaults)."""
    return LineageSettings.coerce(settings)
