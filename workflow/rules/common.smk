# Helpers for every stage: config and sample-sheet validation, sample lookups.

from snakemake.utils import validate

from hscseq.validate import coerce_config_strings, load_schema, raise_if_invalid
from hscseq.workflow import load_samples, resolve_config_path

# `--config 'fidelity={n_bootstrap: 500}'`: Snakemake reads nested values as strings; type them as the
# schema says before anything reads the config
config.update(coerce_config_strings(config, load_schema("config.schema.yaml")))

# README "What is checked before the run starts": config, sample sheet, every count matrix and every file
# the config names, checked cheaply before any job; one error lists every problem (sample, file, fix).
# Job processes that re-parse the workflow (cluster execution) only reload the already checked sheet.
if workflow.is_main_process:
    raise_if_invalid(
        config, base_dir=workflow.basedir, config_files=workflow.configfiles
    )

validate(config, schema="../schemas/config.schema.yaml")

SAMPLE_SHEET = resolve_config_path(config["samples"], workflow.basedir)
SAMPLES = load_samples(SAMPLE_SHEET)

SAMPLE_NAMES = list(SAMPLES.index)


def sample_row(wildcards):
    """The sample sheet row of ``wildcards.sample`` as a plain dict (absolute path)."""
    return SAMPLES.loc[wildcards.sample].to_dict()


def sample_path(wildcards):
    return SAMPLES.loc[wildcards.sample, "path"]


def stage_settings(stage):
    """The config section of ``stage``, as passed to the stage's hscseq function."""
    return dict(config[stage])
