from hscseq.qc import run_qc_summary
from hscseq.workflow import run_from_snakemake

run_from_snakemake(snakemake, run_qc_summary)
