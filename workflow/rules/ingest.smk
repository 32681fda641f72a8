rule ingest:
    input:
        counts=sample_path,
    output:
        h5ad="results/ingest/{sample}.h5ad",
    log:
        "logs/ingest/{sample}.log",
    benchmark:
        "benchmarks/ingest/{sample}.tsv"
    conda:
        "../envs/hscseq.yaml"
    params:
        sample=sample_row,
        settings=stage_settings("ingest"),
    script:
        "../scripts/ingest.py"
