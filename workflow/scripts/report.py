from hscseq.report import run_report
from hscseq.workflow import run_from_snakemake

run_from_snakemake(snakemake, run_report)
