"""The whole DAG on a plate-only experiment (issue #13, item 4), as a user runs it.

Two labelled in vivo plate donors (h5ad: integer read counts in X, and in ``layers["counts"]`` beside a
log-normalised X) and one engineered plate given as an RSEM-style genes x cells table of non-integer
expected counts at 55,000 genes (22,755 of them Ensembl IDs that no shipped table knows); Ensembl IDs mixed
with symbols and ERCC spike-ins in every file; absolute paths, run from a directory outside the repository.
"""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest

from hscseq import datasets

from .conftest import REPO, snakemake_command

#: Index-sorted HSPC plates: HSC-enriched, with progenitors and a few mature cells.
DONOR_COMPOSITION = {
    "HSC": 0.35,
    "MPP": 0.2,
    "LMPP": 0.1,
    "GMP": 0.1,
    "MEP": 0.1,
    "MkP": 0.05,
    "erythroid": 0.05,
    "monocyte": 0.05,
}
ENGINEERED = "plate_engineered"
#: sample -> (cells, genes, written as)
SAMPLES = {
    "plate_donor1": (180, 24_000, "h5ad, counts in X"),
    "plate_donor2": (160, 30_000, "h5ad, counts in layers"),
    ENGINEERED: (50, 55_000, "RSEM expected counts, genes x cells tsv.gz"),
}
_TABLE = REPO / "resources/genes/mouse_symbol_ensembl_10x.tsv"


@dataclass
class PlateRun:
    directory: Path
    inputs: dict[str, ad.AnnData]  # the simulated samples as written (truth in obs)
    seconds: float


@pytest.fixture(scope="module")
def plate_run(tmp_path_factory) -> PlateRun:
    base = tmp_path_factory.mktemp("plate_dag")
    data = base / "data"
    data.mkdir()
    specs = [
        datasets.plate_spec(
            "plate_donor1", 180, condition="in_vivo", composition=DONOR_COMPOSITION, donor="donor1"
        ),
        datasets.plate_spec(
            "plate_donor2", 160, condition="in_vivo", composition=DONOR_COMPOSITION, donor="donor2"
        ),
        datasets.plate_spec(
            ENGINEERED,
            50,
            missing_hsc_genes=datasets.DEFAULT_MISSING_HSC_GENES,
            hsc_programme_strength=0.8,
        ),
    ]
    samples = datasets.plate_samples(
        specs,
        n_genes=[v[1] for v in SAMPLES.values()],
        expected_counts=[False, False, True],  # featureCounts-style reads for the donors, RSEM for the plate
        seed=3,
    )
    datasets.write_h5ad_sample(samples["plate_donor1"], data / "donor1.h5ad", keep_obs=["true_cell_type"])
    datasets.write_h5ad_sample(
        samples["plate_donor2"], data / "donor2.h5ad", keep_obs=["true_cell_type"], counts_in="layers"
    )
    eng = samples[ENGINEERED]
    table = pd.DataFrame(eng.X.toarray().T, index=eng.var_names, columns=eng.obs_names)
    table.rename_axis("gene_id").to_csv(data / "engineered_rsem.genes.tsv.gz", sep="\t", float_format="%.2f")
    rows = [
        ("plate_donor1", data / "donor1.h5ad", "in_vivo", "true_cell_type", "donor1"),
        ("plate_donor2", data / "donor2.h5ad", "in_vivo", "true_cell_type", "donor2"),
        (ENGINEERED, data / "engineered_rsem.genes.tsv.gz", "engineered", "", ""),
    ]
    sheet = base / "samples.tsv"
    pd.DataFrame(
        [
            {
                "sample": s,
                "path": str(p),
                "species": "mouse",
                "condition": c,
                "batch": f"plate_{s}",
                "label_column": label,
                "donor": donor,
                "technology": "plate",
            }
            for s, p, c, label, donor in rows
        ]
    ).to_csv(sheet, sep="\t", index=False)
    workdir = base / "run"
    start = time.perf_counter()
    proc = subprocess.run(
        snakemake_command(workdir, sheet), cwd=base, capture_output=True, text=True, timeout=1500, check=False
    )
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        logs = "\n".join(
            f"--- {p}\n{p.read_text()[-3000:]}" for p in sorted((workdir / "logs").rglob("*.log"))
        )
        pytest.fail(f"snakemake failed ({proc.returncode}):\n{proc.stderr[-6000:]}\n{logs}")
    print(f"plate-only DAG: {seconds:.0f} s")
    return PlateRun(directory=workdir, inputs=samples, seconds=seconds)


def _table_ids() -> dict[str, str]:
    """Ensembl ID -> symbol of the shipped 10x mouse table, read here independently of hscseq.genes."""
    table = pd.read_csv(_TABLE, sep="\t", comment="#", dtype=str, keep_default_na=False)
    return dict(zip(table["ensembl_gene_id"], table["gene_symbol"], strict=True))


def _cells(run: PlateRun) -> pd.DataFrame:
    cells = pd.read_csv(run.directory / "results/tables/cells.tsv.gz", sep="\t")
    truth = pd.concat(
        [
            a.obs[["true_cell_type", "is_low_quality"]].set_axis(s + ":" + a.obs_names)
            for s, a in run.inputs.items()
        ]
    )
    return cells.join(truth, on="cell_id", validate="one_to_one")


@pytest.mark.workflow
def test_plate_qc_removes_no_doublet_and_thresholds_reads(plate_run):
    qc = pd.read_csv(plate_run.directory / "results/tables/qc_summary.tsv", sep="\t").set_index("sample")
    assert set(qc.index) == set(SAMPLES)
    assert sum(int(a.obs["is_low_quality"].sum()) for a in plate_run.inputs.values()) >= 10
    for sample, adata in plate_run.inputs.items():
        row = qc.loc[sample]
        assert row["cells_in"] == adata.n_obs
        assert row["removed_doublet"] == 0 and row["doublets_combined"] == 0, sample
        assert "plate-based sample: doublet calling off" in row["warnings"], sample
        # the depth thresholds are at read depth (median 200,000 reads), not at a droplet's UMI scale
        assert 10_000 < row["threshold_min_counts"] < row["median_counts_out"] < row["threshold_max_counts"]
        assert row["median_counts_out"] > 100_000
        account = pd.read_csv(plate_run.directory / f"results/qc/{sample}.cells.tsv.gz", sep="\t")
        account = account.set_index("cell")
        assert not account["predicted_doublet"].any() and not account["fail_doublet"].any()
        low = adata.obs["is_low_quality"].set_axis(sample + ":" + adata.obs_names).reindex(account.index)
        # the planted damaged cells go, the intact cells stay
        assert not account.loc[low.to_numpy(), "kept"].any(), sample
        assert account.loc[~low.to_numpy(), "kept"].mean() >= 0.95, sample


@pytest.mark.workflow
def test_plate_ingest_rounds_sets_aside_ercc_and_resolves_ids(plate_run):
    known = _table_ids()
    sources = {}
    for sample, adata in plate_run.inputs.items():
        out = ad.read_h5ad(plate_run.directory / f"results/ingest/{sample}.h5ad")
        info = out.uns["hscseq"]["ingest"]
        sources[sample] = info["counts_source"]
        assert info["set_aside_spike_ins"] == 92
        assert not out.var_names.str.fullmatch(r"ERCC-\d{5}").any()
        ercc = np.asarray(adata[:, adata.var_names.str.startswith("ERCC-")].X.sum(axis=1)).ravel()
        assert np.allclose(out.obs["spike_in_counts"].to_numpy(), ercc, rtol=1e-3), sample
        assert out.n_vars == SAMPLES[sample][1]
        assert np.all(out.X.data == np.round(out.X.data))
        given = pd.Index(adata.var_names[~adata.var_names.str.startswith("ERCC-")])
        as_id = given[given.str.startswith("ENSMUSG")]
        in_table = as_id[as_id.isin(list(known))]
        # every ID the table knows is now its symbol; the others are kept as they are, as their own gene_id
        assert set(in_table.map(known)) <= set(out.var_names), sample
        assert not out.var_names.isin(in_table).any(), sample
        unannotated = as_id[~as_id.isin(list(known))]
        assert (out.var.loc[unannotated, "gene_id"] == unannotated).all(), sample
        assert len(unannotated) == adata.uns["simulation"]["n_unannotated"]
    assert sources == {
        "plate_donor1": "X",
        "plate_donor2": "layers['counts']",
        ENGINEERED: "table",
    }
    eng = ad.read_h5ad(plate_run.directory / f"results/ingest/{ENGINEERED}.h5ad")
    assert eng.uns["hscseq"]["ingest"]["rounded_expected_counts"] > 0.9 * eng.X.nnz
    assert plate_run.inputs[ENGINEERED].uns["simulation"]["n_unannotated"] > 20_000


@pytest.mark.workflow
def test_plate_merged_data_has_symbols_and_no_spike_ins(plate_run):
    known = _table_ids()
    for path in ("results/merge/merged.h5ad", "results/anndata/integrated.h5ad"):
        backed = ad.read_h5ad(plate_run.directory / path, backed="r")
        assert set(backed.obs["technology"]) == {"plate"}, path  # the sheet's technology, per cell
        var_names = backed.var_names
        assert not var_names.str.fullmatch(r"ERCC-\d{5}").any(), path  # spike-ins gone (Ercc1-8 are genes)
        assert not var_names.isin(list(known)).any(), path  # no table-known gene left under its Ensembl ID
        # the native HSC genes are found by symbol, whatever name each file gave them
        assert {"Procr", "Hlf", "Mecom", "Fgd5", "Hoxb5", "Cdh5"} <= set(var_names), path
        assert len(var_names) >= 15_000, path


@pytest.mark.workflow
def test_plate_in_vivo_hscs_are_called_hsc_like(plate_run):
    cells = _cells(plate_run)
    assert cells["true_cell_type"].notna().all()
    in_vivo = cells[cells["condition"] == "in_vivo"]
    hsc = in_vivo["true_cell_type"] == "HSC"
    assert hsc.sum() >= 80
    assert (in_vivo.loc[hsc, "hsc_identity"] == "HSC-like").mean() >= 0.75
    committed = in_vivo["true_cell_type"].isin(["GMP", "MEP", "MkP", "erythroid", "monocyte"])
    assert (in_vivo.loc[committed, "hsc_identity"] == "HSC-like").mean() <= 0.05
    engineered = cells[cells["sample"] == ENGINEERED]
    endothelial = engineered["true_cell_type"] == "hemogenic_endothelium"
    assert endothelial.sum() >= 5
    assert not (engineered.loc[endothelial, "hsc_identity"] == "HSC-like").any()


@pytest.mark.workflow
def test_plate_engineered_cells_map_and_offtarget_cells_are_novel(plate_run):
    """The off-target hemogenic endothelium is novel; the engineered HSCs map onto the in vivo HSCs."""
    cells = _cells(plate_run)
    engineered = cells[cells["sample"] == ENGINEERED]
    off = engineered["true_cell_type"] == "hemogenic_endothelium"
    assert engineered.loc[off, "novel"].mean() >= 0.8
    assert engineered.loc[~off, "novel"].mean() <= 0.1
    hsc = engineered["true_cell_type"] == "HSC"
    assert (engineered.loc[hsc, "predicted_label"] == "HSC").mean() >= 0.8
    assert not cells.loc[cells["condition"] == "in_vivo", "novel"].any()


@pytest.mark.workflow
def test_plate_scorecard_and_report(plate_run):
    cells = _cells(plate_run)
    engineered = cells[cells["sample"] == ENGINEERED]
    scorecard = pd.read_csv(plate_run.directory / "results/tables/scorecard.tsv", sep="\t")
    assert scorecard["sample"].tolist() == [ENGINEERED]
    row = scorecard.iloc[0]
    assert row["n_cells"] == len(engineered)
    # the novel share is the planted off-target share; the index is a real score inside its CI
    planted = (engineered["true_cell_type"] == "hemogenic_endothelium").mean()
    assert abs(row["novel_share"] - planted) <= 0.1
    assert 0 < row["fidelity_index_ci_low"] <= row["fidelity_index"] <= row["fidelity_index_ci_high"] < 1
    html = (plate_run.directory / "results/report.html").read_text()
    for sample in SAMPLES:
        assert sample in html
