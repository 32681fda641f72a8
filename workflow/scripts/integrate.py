from hscseq.integrate import run_integrate
from hscseq.workflow import run_from_snakemake

run_from_snakemake(snakemake, run_integrate)
