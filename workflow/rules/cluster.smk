rule cluster:
    input:
        integrated="results/integrate/integrated.h5ad",
    output:
        clustered="results/cluster/clustered.h5ad",
        markers="results/tables/markers.tsv",
        umap=report(
            "results/figures/umap.png",
            caption="../report/umap.rst",
            category="Integration and clustering",
        ),
        dotplot=report(
            "results/figures/markers_dotplot.png",
            caption="../report/markers_dotplot.rst",
            category="Integration and clustering",
        ),
    log:
        "logs/cluster.log",
    benchmark:
        "benchmarks/cluster.tsv"
    conda:
        "../envs/hscseq.yaml"
    params:
        settings=stage_settings("cluster"),
    script:
        "../scripts/cluster.py"
