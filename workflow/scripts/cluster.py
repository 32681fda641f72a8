from hscseq.cluster import run_cluster
from hscseq.workflow import run_from_snakemake

run_from_snakemake(snakemake, run_cluster)
