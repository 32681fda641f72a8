rule integrate:
    input:
        merged="results/merge/merged.h5ad",
    output:
        integrated="results/integrate/integrated.h5ad",
        model=directory("results/integrate/model"),
        metrics=report(
            "results/tables/integration_metrics.tsv",
            caption="../report/integration_metrics.rst",
            category="Integration and clustering",
        ),
    log:
        "logs/integrate.log",
    benchmark:
        "benchmarks/integrate.tsv"
    conda:
        "../envs/hscseq.yaml"
    params:
        settings=stage_settings("integrate"),
    script:
        "../scripts/integrate.py"
