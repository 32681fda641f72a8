rule qc:
    input:
        h5ad="results/ingest/{sample}.h5ad",
    output:
        filtered="results/qc/{sample}.h5ad",
        summary="results/qc/{sample}.summary.tsv",
        cells="results/qc/{sample}.cells.tsv.gz",
        figure=report(
            "results/qc/{sample}.png",
            caption="../report/qc.rst",
            category="Quality control",
        ),
    log:
        "logs/qc/{sample}.log",
    benchmark:
        "benchmarks/qc/{sample}.tsv"
    conda:
        "../envs/hscseq.yaml"
    params:
        sample=sample_row,
        settings=stage_settings("qc"),
    script:
        "../scripts/qc.py"


rule qc_summary:
    input:
        summaries=expand("results/qc/{sample}.summary.tsv", sample=SAMPLE_NAMES),
    output:
        table="results/tables/qc_summary.tsv",
    log:
        "logs/qc/summary.log",
    benchmark:
        "benchmarks/qc/summary.tsv"
    conda:
        "../envs/hscseq.yaml"
    script:
        "../scripts/qc_summary.py"
