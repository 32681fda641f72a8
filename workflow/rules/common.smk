# Helpers for every stage: config and sample-sheet validation, sample lookups.

from snakemake.utils import validate

from hscseq.workflow import load_samples, resolve_config_path

validate(config, schema="../schemas/config.schema.yaml")

SAMPLE_SHEET = resolve_config_path(config["samples"], workflow.basedir)
SAMPLES = load_samples(SAMPLE_SHEET)
for _, _row in SAMPLES.iterrows():
    validate(
        _row.to_frame().T.replace("", None).dropna(axis=1),
        schema="../schemas/samples.schema.yaml",
    )

SAMPLE_NAMES = list(SAMPLES.index)


def sample_row(wildcards):
    """The sample sheet row of ``wildcards.sample`` as a plain dict (absolute path)."""
    return SAMPLES.loc[wildcards.sample].to_dict()


def sample_path(wildcards):
    return SAMPLES.loc[wildcards.sample, "path"]


def stage_settings(stage):
    """The config section of ``stage``, as passed to the stage's hscseq function."""
    return dict(config[stage])
