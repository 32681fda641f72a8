rule report:
    input:
        final="results/anndata/integrated.h5ad",
        cells="results/tables/cells.tsv.gz",
        qc_summary="results/tables/qc_summary.tsv",
        scorecard="results/tables/scorecard.tsv",
        composition="results/tables/composition.tsv",
        hsc_programme="results/tables/hsc_programme.tsv",
        markers="results/tables/markers.tsv",
        qc_figures=expand("results/qc/{sample}.png", sample=SAMPLE_NAMES),
        figures=[
            "results/figures/umap.png",
            "results/figures/scores.png",
            "results/figures/fidelity.png",
        ],
    output:
        html="results/report.html",
    log:
        "logs/report.log",
    benchmark:
        "benchmarks/report.tsv"
    conda:
        "../envs/hscseq.yaml"
    params:
        settings=stage_settings("report"),
        samples=SAMPLES.to_dict(orient="records"),
    script:
        "../scripts/report.py"
