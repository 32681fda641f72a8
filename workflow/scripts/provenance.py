from hscseq.provenance import run_provenance
from hscseq.workflow import run_from_snakemake

run_from_snakemake(snakemake, run_provenance)
