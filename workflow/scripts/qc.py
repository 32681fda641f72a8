from hscseq.qc import run_qc
from hscseq.workflow import run_from_snakemake

run_from_snakemake(snakemake, run_qc)
