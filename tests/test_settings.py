"""Settings objects: the config schema is the only source of defaults; config.yaml states the same values."""

import dataclasses
from pathlib import Path

import pytest
import yaml

from hscseq import HscseqInputError
from hscseq._settings import config_schema, schema_defaults, settings_from_config
from hscseq.fidelity import FidelitySettings
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


@pytest.mark.parametrize(("cls", "section"), [(FidelitySettings, "fidelity"), (ScoreSettings, "score")])
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
