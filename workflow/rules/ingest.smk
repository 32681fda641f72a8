rule ingest:
    input:
        counts=sample_path,
    output:
        h5ad="results/ingest/{sample}.h5ad",
    params:
        sample=sample_row,
        settings=stage_settings("ingest"),
    log:
        "logs/ingest/{sample}.log",
    benchmark:
        "benchmarks/ingest/{sample}.tsv"
    conda:
        "../envs/hscseq.yaml"
    script:
        "../scripts/ingest.py"
