# hscseq: how close are lab-made blood cells to the real thing?
# Stages: ingest -> qc -> merge -> integrate -> cluster -> score -> fidelity -> report.
# All science lives in the hscseq package; rules only wire files to one hscseq call each.
import os

from snakemake.utils import min_version

min_version("9.0")


configfile: os.path.join(workflow.basedir, "config", "config.yaml")


include: "workflow/rules/common.smk"


wildcard_constraints:
    sample="|".join(SAMPLE_NAMES),


include: "workflow/rules/ingest.smk"
include: "workflow/rules/provenance.smk"
include: "workflow/rules/qc.smk"
include: "workflow/rules/merge.smk"
include: "workflow/rules/integrate.smk"
include: "workflow/rules/cluster.smk"
include: "workflow/rules/score.smk"
include: "workflow/rules/fidelity.smk"
include: "workflow/rules/lineages.smk"
include: "workflow/rules/report.smk"


rule all:
    default_target: True
    input:
        "results/report.html",
        "results/anndata/integrated.h5ad",
        "results/tables/cells.tsv.gz",
        "results/tables/qc_summary.tsv",
        "results/tables/scorecard.tsv",
        "results/tables/composition.tsv",
        "results/provenance.json",
        "results/tables/lineage_presence.tsv",
