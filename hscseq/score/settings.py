"""The score stage's settings object.

:class:`ScoreSettings` is the one settings object of the stage: :func:`~hscseq.score.run_score` and the
identity step read it. Its defaults are the ``score`` section of ``workflow/schemas/config.schema.yaml`` (the
single source of defaults; ``config/config.yaml`` states the same values, which a test checks).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from hscseq._settings import StageSettings, schema_defaults, schema_field

STAGE = "score"


@dataclass(frozen=True)
class ScoreSettings(StageSettings):
    """Settings of the score stage (config section ``score``; meanings in the schema and README).

    Built by :meth:`from_config` / :func:`score_settings` (validated: an unknown key is an error).
    """

    stage: ClassVar[str] = STAGE
    min_coverage: float = schema_field(STAGE, "min_coverage")
    seed: int = schema_field(STAGE, "seed")
    method: str = schema_field(STAGE, "method")
    n_null: int = schema_field(STAGE, "n_null")
    n_bins: int = schema_field(STAGE, "n_bins")
    n_ctrl: int = schema_field(STAGE, "n_ctrl")
    aucell_max_rank: float = schema_field(STAGE, "aucell_max_rank")
    signatures: Sequence[str] | None = schema_field(STAGE, "signatures")
    user_signatures: Sequence[str] = schema_field(STAGE, "user_signatures")
    user_species: str | None = schema_field(STAGE, "user_species")
    hsc_signature: str = schema_field(STAGE, "hsc_signature")
    reference_hsc_labels: Sequence[str] = schema_field(STAGE, "reference_hsc_labels")
    hsc_quantile: float = schema_field(STAGE, "hsc_quantile")
    hsc_alpha: float = schema_field(STAGE, "hsc_alpha")
    n_bootstrap: int = schema_field(STAGE, "n_bootstrap")
    min_reference_cells: int = schema_field(STAGE, "min_reference_cells")
    min_reference_detection: float = schema_field(STAGE, "min_reference_detection")
    established_ratio: float = schema_field(STAGE, "established_ratio")
    min_query_cells: int = schema_field(STAGE, "min_query_cells")
    ontogeny_z: float = schema_field(STAGE, "ontogeny_z")
    ontogeny_min_fraction: float = schema_field(STAGE, "ontogeny_min_fraction")
    identity_z: float = schema_field(STAGE, "identity_z")
    identity_gate_min: int = schema_field(STAGE, "identity_gate_min")

    @classmethod
    def _section(cls, section: Mapping[str, Any] | None) -> dict[str, Any]:
        """A ``None`` value of a key whose default is not ``None`` means "the default" (as a config written
        with ``key:`` and no value); tuples are taken as lists."""
        nullable = {k for k, v in schema_defaults(STAGE).items() if v is None}
        return {
            k: list(v) if isinstance(v, tuple) else v
            for k, v in (section or {}).items()
            if v is not None or k in nullable
        }


def score_settings(
    settings: ScoreSettings | Mapping[str, Any] | None = None, **changes: Any
) -> ScoreSettings:
    """``settings`` (an object, a ``score`` config section or ``None``: defaults) with ``changes``."""
    return ScoreSettings.coerce(settings, **changes)
