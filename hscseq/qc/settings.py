"""The QC stage's settings object.

:class:`QCSettings` is the one settings object of the stage: :func:`~hscseq.qc.run_qc` reads it, and the
keyword defaults of the AnnData functions (:func:`~hscseq.qc.adaptive_thresholds`,
:func:`~hscseq.qc.detect_doublets`, ...) are its defaults. Its defaults are the ``qc`` section of
``workflow/schemas/config.schema.yaml`` (the single source of defaults; ``config/config.yaml`` states the same
values, which a test checks). Per-sample overrides (``qc.per_sample.<sample>``) are applied by
:meth:`QCSettings.for_sample`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from types import MappingProxyType
from typing import Any, ClassVar

from hscseq._settings import StageSettings, schema_field
from hscseq._utils import HscseqInputError, input_error

STAGE = "qc"


@dataclass(frozen=True)
class QCSettings(StageSettings):
    """Settings of the QC stage (config section ``qc``; meanings in the schema and README)."""

    stage: ClassVar[str] = STAGE
    n_mads: float = schema_field(STAGE, "n_mads")
    mito_n_mads: float = schema_field(STAGE, "mito_n_mads")
    mito_max_pct: float = schema_field(STAGE, "mito_max_pct")
    mito_scale: str = schema_field(STAGE, "mito_scale")
    min_counts: float | None = schema_field(STAGE, "min_counts")
    max_counts: float | None = schema_field(STAGE, "max_counts")
    min_genes: float | None = schema_field(STAGE, "min_genes")
    max_genes: float | None = schema_field(STAGE, "max_genes")
    max_pct_mt: float | None = schema_field(STAGE, "max_pct_mt")
    max_removed_fraction: float = schema_field(STAGE, "max_removed_fraction")
    continue_on_excess_removal: bool = schema_field(STAGE, "continue_on_excess_removal")
    doublet_methods: Sequence[str] = schema_field(STAGE, "doublet_methods")
    doublet_rule: str = schema_field(STAGE, "doublet_rule")
    expected_doublet_rate: float | None = schema_field(STAGE, "expected_doublet_rate")
    doublet_rate_per_1000_cells: float = schema_field(STAGE, "doublet_rate_per_1000_cells")
    max_cells_per_lane: int = schema_field(STAGE, "max_cells_per_lane")
    solo_max_epochs: int = schema_field(STAGE, "solo_max_epochs")
    solo_max_steps: int | None = schema_field(STAGE, "solo_max_steps")
    scrublet_n_prin_comps: int = schema_field(STAGE, "scrublet_n_prin_comps")
    scrublet_log_transform: bool = schema_field(STAGE, "scrublet_log_transform")
    scrublet_sim_doublet_ratio: float = schema_field(STAGE, "scrublet_sim_doublet_ratio")
    scrublet_max_sim_scored: int | None = schema_field(STAGE, "scrublet_max_sim_scored")
    remove_doublets: bool = schema_field(STAGE, "remove_doublets")
    min_cell_cycle_genes: int = schema_field(STAGE, "min_cell_cycle_genes")
    cell_cycle_phase_rule: str = schema_field(STAGE, "cell_cycle_phase_rule")
    seed: int = schema_field(STAGE, "seed")
    per_sample: Mapping[str, Mapping[str, Any]] = schema_field(STAGE, "per_sample")

    def as_params(self) -> dict[str, Any]:
        """The settings of one sample (without ``per_sample``), as recorded in ``uns["hscseq"]["qc"]``."""
        return {
            k: (list(v) if isinstance(v, list | tuple) else v) for k, v in _without_per_sample(self).items()
        }

    def for_sample(self, sample: str) -> QCSettings:
        """The settings of ``sample``: ``per_sample[sample]`` applied over the global values.

        Raises :class:`~hscseq.HscseqInputError` naming the sample for an unknown or invalid override.
        """
        override = dict((self.per_sample or {}).get(sample) or {})
        allowed = sorted(f.name for f in fields(self) if f.name != "per_sample")
        unknown = sorted(set(override) - set(allowed))
        if unknown:
            raise input_error(
                f"unknown key(s) {unknown} in config qc.per_sample.{sample}.",
                sample=sample,
                fix=f"use only {allowed}.",
            )
        try:
            return type(self).from_config({**_without_per_sample(self), **override})
        except HscseqInputError as err:
            raise input_error(f"config qc.per_sample.{sample}: {err}", sample=sample) from None


def _without_per_sample(settings: QCSettings) -> dict[str, Any]:
    return {f.name: getattr(settings, f.name) for f in fields(settings) if f.name != "per_sample"}


def qc_settings(settings: QCSettings | Mapping[str, Any] | None = None, **changes: Any) -> QCSettings:
    """``settings`` (an object, a ``qc`` config section or ``None`` = defaults) with ``changes`` applied."""
    return QCSettings.coerce(settings, **changes)


def resolve_settings(settings: QCSettings | Mapping[str, Any], sample: str) -> dict[str, Any]:
    """Global ``qc`` settings with the sample's overrides (``settings["per_sample"][sample]``) applied.

    Parameters
    ----------
    settings
        The ``qc`` config section (or a :class:`QCSettings`).
    sample
        Sample name.

    Returns
    -------
    Complete settings (schema defaults for missing keys), without ``per_sample``, as a dict
    (:meth:`QCSettings.for_sample` gives the settings object).
    """
    return qc_settings(settings).for_sample(sample).as_params()


#: The default settings (the schema's ``qc`` defaults); the AnnData functions' keyword defaults.
DEFAULT_SETTINGS = QCSettings()

#: Read-only view of the defaults of the ``qc`` config section (derived from the schema, not a second copy).
DEFAULTS: Mapping[str, Any] = MappingProxyType(DEFAULT_SETTINGS.as_dict())
