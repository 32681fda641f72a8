from hscseq.merge import run_merge
from hscseq.workflow import run_from_snakemake

run_from_snakemake(snakemake, run_merge)
