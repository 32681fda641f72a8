from hscseq.fidelity import run_fidelity
from hscseq.workflow import run_from_snakemake

run_from_snakemake(snakemake, run_fidelity)
