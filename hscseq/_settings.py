"""Stage settings objects whose defaults come from the config schema (the single source of defaults).

``workflow/schemas/config.schema.yaml`` states every config key of every stage with its ``default:``. A
stage's settings object is a frozen dataclass whose fields take their defaults from the schema through
:func:`schema_field`, and which is built from a config section (validated against the same schema) by
:func:`settings_from_config`. No stage keeps a dict of defaults of its own.

Example (any stage can adopt it; :class:`StageSettings` gives it ``from_config``, ``replace``, ``as_dict``,
``as_params`` and ``coerce``)::

    @dataclass(frozen=True)
    class ClusterSettings(StageSettings):
        stage: ClassVar[str] = "cluster"
        n_neighbors: int = schema_field("cluster", "n_neighbors")
        ...

    cfg = ClusterSettings.from_config(config["cluster"])
"""

from __future__ import annotations

import copy
import dataclasses
import functools
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, Self, TypeVar

from hscseq._utils import input_error

SCHEMA_NAME = "config.schema.yaml"
_PACKAGE_DIR = Path(__file__).resolve().parent

T = TypeVar("T")


def schema_path() -> Path:
    """The config schema: ``workflow/schemas`` of a checkout, or ``hscseq/schemas`` of an installed wheel."""
    for root in (_PACKAGE_DIR / "schemas", _PACKAGE_DIR.parent / "workflow" / "schemas"):
        if (root / SCHEMA_NAME).is_file():
            return root / SCHEMA_NAME
    msg = f"{SCHEMA_NAME} not found next to the hscseq package"
    raise FileNotFoundError(msg)


@functools.cache
def config_schema() -> dict[str, Any]:
    """The parsed config schema (cached)."""
    import yaml

    return yaml.safe_load(schema_path().read_text())


def section_schema(stage: str) -> dict[str, Any]:
    """The JSON schema of one config section."""
    props = config_schema()["properties"]
    if stage not in props:
        msg = f"the config schema has no section {stage!r}"
        raise KeyError(msg)
    return props[stage]


def _default(prop: Mapping[str, Any]) -> Any:
    """Default of one schema property; an object's default is completed by its sub-properties' defaults."""
    value = copy.deepcopy(prop.get("default"))
    sub = prop.get("properties")
    if sub and (value is None or isinstance(value, dict)):
        value = {**{k: _default(p) for k, p in sub.items() if "default" in p}, **(value or {})}
    return value


def schema_defaults(stage: str) -> dict[str, Any]:
    """``{key: default}`` of every key of ``stage`` that has a default in the schema."""
    props = section_schema(stage).get("properties", {})
    return {k: _default(p) for k, p in props.items() if "default" in p or "properties" in p}


def schema_field(stage: str, key: str) -> Any:
    """A dataclass field whose default is the schema's default of ``stage.key`` (copied for lists/dicts)."""
    defaults = schema_defaults(stage)
    if key not in defaults:
        msg = f"config schema section {stage!r} has no default for {key!r}"
        raise KeyError(msg)
    value = defaults[key]
    if isinstance(value, dict | list):
        return dataclasses.field(default_factory=lambda: copy.deepcopy(value))
    return dataclasses.field(default=value)


def validate_section(stage: str, values: Mapping[str, Any] | None) -> dict[str, Any]:
    """Schema defaults overlaid with ``values``, validated against the section's schema.

    Raises :class:`hscseq.HscseqInputError` naming the config key and the rule it breaks.
    """
    import jsonschema

    merged = schema_defaults(stage)
    for key, value in (values or {}).items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = {**merged[key], **value}
        else:
            merged[key] = value
    try:
        jsonschema.validate(merged, section_schema(stage))
    except jsonschema.ValidationError as err:
        where = ".".join([stage, *map(str, err.absolute_path)])
        raise input_error(
            f"config {where}: {err.message}.",
            fix=f"fix the {stage!r} section of the config (see {SCHEMA_NAME}).",
        ) from None
    return merged


def settings_from_config(cls: type[T], stage: str, values: Mapping[str, Any] | None = None) -> T:
    """Build the frozen settings dataclass ``cls`` of ``stage`` from a (partial) config section."""
    merged = validate_section(stage, values)
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in merged.items() if k in names})


def settings_dict(settings: Any) -> dict[str, Any]:
    """The settings as a plain dict (for ``uns[...]["params"]`` and logs)."""
    return dataclasses.asdict(settings)


class StageSettings:
    """Methods of a stage's frozen settings dataclass; the subclass sets ``stage`` (its config section)."""

    stage: ClassVar[str]

    @classmethod
    def _section(cls, section: Mapping[str, Any] | None) -> dict[str, Any]:
        """The section as the schema validates it, tuples as lists (a hook for a stage's own reading)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in (section or {}).items()}

    @classmethod
    def from_config(cls, section: Mapping[str, Any] | None = None) -> Self:
        """Settings from a (partial) config section, validated against the schema."""
        return settings_from_config(cls, cls.stage, cls._section(section))

    @classmethod
    def coerce(cls, settings: Self | Mapping[str, Any] | None = None, **changes: Any) -> Self:
        """``settings`` (an object, a config section or ``None`` = defaults) with ``changes`` applied."""
        if isinstance(settings, cls):
            return settings.replace(**changes)
        return cls.from_config({**dict(settings or {}), **changes})

    def replace(self, **changes: Any) -> Self:
        """A copy with ``changes`` (validated against the schema like a config section)."""
        if not changes:
            return self
        return type(self).from_config({**self.as_dict(), **changes})

    def as_dict(self) -> dict[str, Any]:
        """Plain dict (recorded in ``uns[...]["params"]``)."""
        return settings_dict(self)

    def as_params(self) -> dict[str, Any]:
        """The settings without unset (``None``) values, as written to ``uns[...]["params"]["settings"]``."""
        return {k: v for k, v in self.as_dict().items() if v is not None}
