from hscseq.score import run_score
from hscseq.workflow import run_from_snakemake

run_from_snakemake(snakemake, run_score)
