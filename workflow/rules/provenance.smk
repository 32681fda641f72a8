rule provenance:
    input:
        ingested=expand("results/ingest/{sample}.h5ad", sample=SAMPLE_NAMES),
    output:
        provenance="results/provenance.json",
    log:
        "logs/provenance.log",
    benchmark:
        "benchmarks/provenance.tsv"
    conda:
        "../envs/hscseq.yaml"
    params:
        config=config,
        base_dir=workflow.basedir,
    script:
        "../scripts/provenance.py"
