"""Files written by ``hscseq init``: a config overlay and a sample sheet, both with commented examples."""

from __future__ import annotations

from pathlib import Path

_CONFIG = """\
# hscseq run configuration ({scenario} scenario), written by `hscseq init`.
# Merged over the defaults in hscseq's config/config.yaml (every key and its default is listed there and in
# README, 'Configuration'); unknown keys are refused. Use it with
#   hscseq validate --configfile {config}
#   hscseq run --configfile {config} --cores 4          (or --profile slurm on a cluster)
# Values can be overridden on the command line as with snakemake: --config 'fidelity={{n_bootstrap: 500}}'

# The sample sheet: one row per sample, absolute paths (relative paths are relative to the sheet).
samples: {samples}
{body}
report:
  title: "{title}"
"""

_ENGINEERED = """
integrate:
  # keep the programming transcription factors out of the integration genes (they are expressed only by the
  # engineered cells and would separate them for a trivial reason), e.g. a 7-gene cocktail:
  exclude_genes: []   # e.g. [Runx1, Gfi1, Gata2, Erg, Lmo2, Lyl1, Tal1]

fidelity:
  # optional: an annotated in vivo reference h5ad (raw counts + a label column) instead of the sheet's
  # in vivo samples; a `stage` column (yolk_sac / AGM / fetal_liver / adult_bm) adds the closest stage
  reference: null     # e.g. /data/refs/mouse_fetal_hsc_atlas.h5ad
  reference_label_key: cell_type
  reference_stage_key: null
"""

_ORGANOID = """
integrate:
  method: scvi

fidelity:
  # optional: an annotated human bone-marrow reference h5ad (raw counts + a label column) instead of the
  # sheet's in vivo samples
  reference: null     # e.g. /data/refs/human_bm_atlas.h5ad
  reference_label_key: cell_type
"""

_SHEET_HEADER = "sample\tpath\tspecies\tcondition\tbatch\ttimepoint\tdonor\tlabel_column\n"

_SHEET_HELP = """\
# One row per sample, tab-separated; lines starting with # are ignored. Columns:
#   sample      unique name (letters, digits, _ . -)
#   path        count matrix: .h5ad, 10x .h5, 10x matrix directory (matrix.mtx.gz + features + barcodes),
#               .loom, or a .csv/.tsv(.gz) table; absolute path, or relative to this sheet
#   species     mouse | human
#   condition   in_vivo (the reference) | engineered | organoid
#   batch       processing batch; an engineered sample alone in its batch is flagged 'confounded'
#   timepoint   organoid time point (e.g. week2), empty otherwise
#   donor       in vivo donor (the held-out-donor control needs >= 2 in vivo donors)
#   label_column  in vivo samples only: the obs column of cell-type labels (h5ad/loom)
# Examples (remove the leading '# ' and edit the paths):
"""

_ENGINEERED_ROWS = [
    ["bm_donor1", "/data/invivo/donor1.h5ad", "mouse", "in_vivo", "donor1", "", "donor1", "cell_type"],
    ["bm_donor2", "/data/invivo/donor2.h5ad", "mouse", "in_vivo", "donor2", "", "donor2", "cell_type"],
    ["ESC_7TF", "/data/esc_7tf/filtered_feature_bc_matrix.h5", "mouse", "engineered", "run3", "", "", ""],
]

_ORGANOID_ROWS = [
    ["bm_donorA", "/data/bm/donorA.h5ad", "human", "in_vivo", "donorA", "", "donorA", "cell_type"],
    ["bm_donorB", "/data/bm/donorB.h5ad", "human", "in_vivo", "donorB", "", "donorB", "cell_type"],
    ["org_week2", "/data/organoid/week2/filtered_feature_bc_matrix", "human", "organoid", "org_w2", "week2"],
    ["org_week4", "/data/organoid/week4_counts.tsv.gz", "human", "organoid", "org_w4", "week4"],
]


def config_text(scenario: str, samples: Path) -> str:
    body = _ENGINEERED if scenario == "engineered" else _ORGANOID
    title = (
        "Engineered HSC precursors versus in vivo HSCs"
        if scenario == "engineered"
        else "Bone-marrow organoid versus in vivo haematopoiesis"
    )
    config = samples.parent / "config.yaml"
    return _CONFIG.format(scenario=scenario, config=config, samples=samples, body=body, title=title)


def samples_text(scenario: str) -> str:
    rows = _ENGINEERED_ROWS if scenario == "engineered" else _ORGANOID_ROWS
    lines = ["# " + "\t".join(row + [""] * (8 - len(row))) + "\n" for row in rows]
    return _SHEET_HEADER + _SHEET_HELP + "".join(lines)
