from hscseq.lineages import run_lineages
from hscseq.workflow import run_from_snakemake

run_from_snakemake(snakemake, run_lineages)
