rule merge:
    input:
        h5ads=expand("results/qc/{sample}.h5ad", sample=SAMPLE_NAMES),
    output:
        merged="results/merge/merged.h5ad",
    log:
        "logs/merge.log",
    benchmark:
        "benchmarks/merge.tsv"
    conda:
        "../envs/hscseq.yaml"
    params:
        settings=stage_settings("merge"),
    script:
        "../scripts/merge.py"
