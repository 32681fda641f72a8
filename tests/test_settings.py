"""Settings objects: the config schema is the only source of defaults; config.yaml states the same values."""

import dataclasses
import inspect
from pathlib import Path

import pytest
import yaml

from hscseq import HscseqInputError
from hscseq._settings import config_schema, schema_defaults, settings_from_config
from hscseq.cluster import (
    ClusterSettings,
    cluster,
    dotplot_figure,
    marker_genes,
    markers_table,
    run_cluster,
)
from hscseq.fidelity import FidelitySettings
from hscseq.ingest import IngestSettings, read_sample, run_ingest
from hscseq.integrate import (
    DEFAULT_METRIC_BARS,
    METHODS,
    IntegrateSettings,
    integrate,
    run_integrate,
    select_features,
)
from hscseq.lineages import LineageSettings
from hscseq.merge import MergeSettings, merge_samples, run_merge
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
    (IngestSettings, "ingest"),
    (IntegrateSettings, "integrate"),
    (ClusterSettings, "cluster"),
    (MergeSettings, "merge"),
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
            "solo_max_steps": "solo_max_steps",
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


@pytest.mark.parametrize(("cls", "section"), STAGE_SETTINGS)
def test_settings_coerce_an_object_a_section_or_nothing(cls, section):
    assert cls.stage == section
    assert cls.coerce(None) == cls() and cls.coerce({}) == cls()
    s = cls()
    assert cls.coerce(s) is s


def test_stage_settings_accept_python_sequences_and_refuse_bad_values():
    s = ClusterSettings.coerce({"resolutions": (0.3, 0.6), "n_neighbors": 20})
    assert (s.resolutions, s.n_neighbors, s.seed) == ([0.3, 0.6], 20, 0)
    assert s.replace(seed=3) == ClusterSettings(resolutions=[0.3, 0.6], n_neighbors=20, seed=3)
    assert IntegrateSettings.coerce({"metric_bars": {"ilisi": 0.5}}).metric_bars == {
        **DEFAULT_METRIC_BARS,
        "ilisi": 0.5,
    }
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.seed = 1
    with pytest.raises(HscseqInputError, match=r"config cluster\.resolutions"):
        s.replace(resolutions=[])


def _same(*keys: str) -> dict[str, str]:
    return {k: k for k in keys}


#: keyword defaults of the library functions that a stage calls with a config value must be the schema's:
#: (function, config section, {parameter: config key})
KEYWORD_DEFAULTS = [
    (read_sample, "ingest", _same("min_known_gene_fraction", "counts_layer", "table_orientation")),
    (
        select_features,
        "integrate",
        {**_same("n_top_genes", "exclude_genes"), "exclude_cell_cycle": "exclude_cell_cycle_genes"},
    ),
    (
        integrate,
        "integrate",
        _same("method", "n_latent", "gene_likelihood", "n_pcs", "max_epochs", "early_stopping", "seed"),
    ),
    (cluster, "cluster", _same("resolutions", "resolution", "n_neighbors", "seed")),
    (
        markers_table,
        "cluster",
        {
            **_same("min_logfc", "max_pval_adj", "min_in_group_fraction", "max_out_group_fraction"),
            "n_genes": "n_markers",
        },
    ),
    (dotplot_figure, "cluster", {"n_genes": "dotplot_genes"}),
    (marker_genes, "cluster", {"max_cells_per_cluster": "max_cells_per_cluster", "random_state": "seed"}),
    (merge_samples, "merge", _same("min_shared_genes")),
]


@pytest.mark.parametrize(
    ("func", "stage", "keys"), KEYWORD_DEFAULTS, ids=lambda x: getattr(x, "__name__", "")
)
def test_library_keyword_defaults_are_the_schema_defaults(func, stage, keys):
    """A notebook call without options behaves like the pipeline with the default config."""
    params = inspect.signature(func).parameters
    defaults = schema_defaults(stage)
    for param, key in keys.items():
        default = params[param].default
        assert (list(default) if isinstance(default, tuple) else default) == defaults[key], (
            func.__name__,
            param,
        )


def test_integrate_constants_are_the_schema_values():
    assert list(METHODS) == config_schema()["properties"]["integrate"]["properties"]["method"]["enum"]
    assert schema_defaults("integrate")["metric_bars"] == DEFAULT_METRIC_BARS


def test_stage_entries_refuse_a_bad_config_section_before_reading(tmp_path):
    """A misspelt key or an out-of-range value names the config key; nothing is read or written."""
    missing = str(tmp_path / "absent.h5ad")
    with pytest.raises(HscseqInputError, match=r"config integrate\.n_top_genes"):
        run_integrate(
            merged=missing, integrated=missing, model=missing, metrics=missing, settings={"n_top_genes": 10}
        )
    with pytest.raises(HscseqInputError, match="'n_neighbours' was unexpected"):
        run_cluster(
            integrated=missing,
            clustered=missing,
            markers=missing,
            umap=missing,
            dotplot=missing,
            settings={"n_neighbours": 10},
        )
    with pytest.raises(HscseqInputError, match=r"config merge\.min_shared_genes"):
        run_merge(h5ads=[missing], merged=missing, settings={"min_shared_genes": 0})
    with pytest.raises(HscseqInputError, match=r"config ingest\.table_orientation"):
        run_ingest(
            counts=missing, h5ad=missing, sample={"sample": "s"}, settings={"table_orientation": "rows"}
        )
    assert not list(tmp_path.iterdir())
