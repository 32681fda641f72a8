"""The lineages stage's settings object (config section ``lineages``; defaults from the schema)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from hscseq._settings import schema_field, settings_dict, settings_from_config

STAGE = "lineages"


@dataclass(frozen=True)
class LineageSettings:
    """Settings of the lineages stage (meanings in the schema, ``config/config.yaml`` and README)."""

    hierarchy: str | None = schema_field(STAGE, "hierarchy")
    min_cells: int = schema_field(STAGE, "min_cells")
    background_rate: float = schema_field(STAGE, "background_rate")
    alpha: float = schema_field(STAGE, "alpha")
    power: float = schema_field(STAGE, "power")
    min_fraction: float = schema_field(STAGE, "min_fraction")
    min_confidence: float = schema_field(STAGE, "min_confidence")
    fdr: float = schema_field(STAGE, "fdr")

    @classmethod
    def from_config(cls, section: Mapping[str, Any] | None = None) -> LineageSettings:
        """Settings from a (partial) ``lineages`` config section, validated against the schema."""
        return settings_from_config(cls, STAGE, section)

    def as_dict(self) -> dict[str, Any]:
        return settings_dict(self)


def lineage_settings(settings: LineageSettings | Mapping[str, Any] | None = None) -> LineageSettings:
    """``settings`` as the settings object (an object, a config section, or ``None`` for the defaults)."""
    return settings if isinstance(settings, LineageSettings) else LineageSettings.from_config(settings)
