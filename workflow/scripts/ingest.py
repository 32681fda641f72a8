from hscseq.ingest import run_ingest
from hscseq.workflow import run_from_snakemake

run_from_snakemake(snakemake, run_ingest)
