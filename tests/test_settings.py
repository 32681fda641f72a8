"""Settings objects: the config schema is the only source of defaults; config.yaml states the same values."""

import dataclasses
import inspect
from pathlib import Path

import pytest
import yaml

from hscseq import HscseqInputError
from hscseq._settings import config_schema, schema_defaults, settings_from_config
from hscseq.fidelity import FidelitySettings
from hscseq.lineages import LineageSettings
from hscseq.qc import (
    QCSettings,
    adaptive_thresholds,
    detect_doublets,
    filter_cells,
    resolve_settings,
    score_cell_cycle,
)
from hscseq.score import ScoreSettings, score_settings

REPO = Path(__file__).resolve().parents[1]
SECTIONS = [k for k, v in config_schema()["properties"].items() if v.get("type") == "object"]


@pytest.mark.parametrize("section", SECTIONS)
def test_config_yaml_states_the_schema_defaults(section):
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    defaults = schema_defaults(section)
    stated = config.get(section) or {}
    assert set(defaults) <= set(stated), f"config.yaml {section}: keys missing {set(defaults) - set(stated)}"
    for key, value in defaults.items():
        assert stated[key] == value, (
            f"config.yaml {section}.{key} = {stated[key]!r}, schema default {value!r}"
        )


STAGE_SETTINGS = [
    (FidelitySettings, "fidelity"),
    (ScoreSettings, "score"),
    (QCSettings, "qc"),
    (LineageSettings, "lineages"),
]


@pytest.mark.parametrize(("cls", "section"), STAGE_SETTINGS)
def test_settings_take_every_default_from_the_schema(cls, section):
    defaults = schema_defaults(section)
    fields = {f.name for f in dataclasses.fields(cls)}
    assert fields == set(defaults)  # one field per config key, nothing hidden in code
    assert cls().as_dict() == defaults


def test_settings_are_frozen_validated_and_merged():
    s = FidelitySettings.from_config({"n_bootstrap": 20, "index_weights": {"programme": 0.0}})
    assert s.n_bootstrap == 20
    assert s.index_weights == {"identity": 1.0, "similarity": 1.0, "programme": 0.0, "composition": 1.0}
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.n_bootstrap = 3
    with pytest.raises(HscseqInputError, match=r"fidelity\.null_quantile"):
        s.replace(null_quantile=1.5)
    with pytest.raises(HscseqInputError, match="'n_neighbours' was unexpected"):
        settings_from_config(FidelitySettings, "fidelity", {"n_neighbours": 10})
    assert s.replace(method="scanvi").method == "scanvi"
    assert FidelitySettings().mapping_method() == "knn"
    assert FidelitySettings().mapping_method(external_reference=True) == "scanvi"


def test_qc_settings_take_every_default_from_the_schema():
    defaults = schema_defaults("qc")
    assert {f.name for f in dataclasses.fields(QCSettings)} == set(defaults)
    assert QCSettings().as_dict() == defaults
    # the AnnData functions' keyword defaults are the same settings, not a second copy
    wired = {
        adaptive_thresholds: {"n_mads": "n_mads", "mito_max_pct": "mito_max_pct", "mito_scale": "mito_scale"},
        detect_doublets: {
            "rule": "doublet_rule",
            "solo_max_epochs": "solo_max_epochs",
            "random_state": "seed",
        },
        score_cell_cycle: {"min_genes": "min_cell_cycle_genes", "phase_rule": "cell_cycle_phase_rule"},
        filter_cells: {"max_removed_fraction": "max_removed_fraction", "remove_doublets": "remove_doublets"},
    }
    for func, params in wired.items():
        signature = inspect.signature(func).parameters
        for param, key in params.items():
            assert signature[param].default == defaults[key], (func.__name__, param)
    assert (
        list(inspect.signature(detect_doublets).parameters["methods"].default) == defaults["doublet_methods"]
    )


def test_qc_settings_per_sample_overrides_are_validated():
    s = QCSettings.from_config({"n_mads": 4, "per_sample": {"s1": {"mito_max_pct": 30}}})
    assert (s.for_sample("s1").mito_max_pct, s.for_sample("s1").n_mads) == (30, 4)
    assert s.for_sample("s2").mito_max_pct == 20 and s.for_sample("s2").per_sample == {}
    assert resolve_settings(s, "s1") == resolve_settings(
        {"n_mads": 4, "per_sample": {"s1": {"mito_max_pct": 30}}}, "s1"
    )
    assert "per_sample" not in resolve_settings(s, "s1")
    with pytest.raises(HscseqInputError, match=r"qc\.per_sample\.s1.*qc\.mito_max_pct"):
        s.replace(per_sample={"s1": {"mito_max_pct": 150}}).for_sample("s1")
    with pytest.raises(HscseqInputError, match=r"qc\.doublet_rule"):
        QCSettings.from_config({"doublet_rule": "vote"})


def test_score_settings_validate_and_keep_the_config_semantics():
    s = score_settings({"n_null": 40, "seed": None, "signatures": None, "reference_hsc_labels": ("HSC",)})
    assert s.n_null == 40
    assert s.seed == schema_defaults("score")["seed"]  # a key without value means the default
    assert s.reference_hsc_labels == ["HSC"]
    assert score_settings(s, method="control").method == "control"
    assert "signatures" not in s.as_params()  # unset values are not recorded
    with pytest.raises(HscseqInputError, match="'n_nul' was unexpected"):
        score_settings({"n_nul": 40})
    with pytest.raises(HscseqInputError, match=r"score\.method"):
        score_settings(s, method="mean")
