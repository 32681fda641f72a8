rule lineages:
    input:
        final="results/anndata/integrated.h5ad",
    output:
        summary="results/tables/lineage_summary.tsv",
        presence="results/tables/lineage_presence.tsv",
        timecourse="results/tables/lineage_timecourse.tsv",
        trends="results/tables/lineage_trends.tsv",
        composition_figure=report(
            "results/figures/timecourse_composition.png",
            caption="../report/lineages.rst",
            category="Time course",
        ),
        fidelity_figure=report(
            "results/figures/timecourse_fidelity.png",
            caption="../report/lineages.rst",
            category="Time course",
        ),
    log:
        "logs/lineages.log",
    benchmark:
        "benchmarks/lineages.tsv"
    conda:
        "../envs/hscseq.yaml"
    params:
        settings=stage_settings("lineages"),
        samples=SAMPLES.to_dict(orient="records"),
    script:
        "../scripts/lineages.py"
