"""The whole DAG through Snakemake: contract outputs, meaning of the results, input checks, lint."""

import json
import subprocess
import sys

import pandas as pd
import pytest

from hscseq import HscseqInputError
from hscseq.workflow import load_samples

from .conftest import REPO, snakemake_command

CONTRACT = [
    "results/report.html",
    "results/anndata/integrated.h5ad",
    "results/tables/cells.tsv.gz",
    "results/tables/qc_summary.tsv",
    "results/tables/scorecard.tsv",
    "results/tables/composition.tsv",
    "results/tables/lineage_presence.tsv",
]
CELL_COLUMNS = [
    "cell_id",
    "sample",
    "condition",
    "batch",
    "timepoint",
    "leiden",
    "predicted_label",
    "label_confidence",
    "novel",
    "hsc_score",
]


@pytest.fixture(scope="module")
def run(workflow_run):
    return workflow_run


@pytest.fixture(scope="module")
def cells(run):
    df = pd.read_csv(run.directory / "results/tables/cells.tsv.gz", sep="\t")
    truth = pd.read_csv(run.data / "truth.tsv.gz", sep="\t")
    truth["cell_id"] = truth["sample"] + ":" + truth["barcode"]
    return df.merge(truth.drop(columns="sample"), on="cell_id", how="left", validate="one_to_one")


@pytest.mark.workflow
def test_every_contract_output_exists(run):
    for path in CONTRACT:
        assert (run.directory / path).stat().st_size > 0, path
    # every rule logged and was benchmarked
    assert len(list((run.directory / "logs").rglob("*.log"))) >= 9
    assert len(list((run.directory / "benchmarks").rglob("*.tsv"))) >= 9


@pytest.mark.workflow
def test_lineage_presence_reads_the_planted_compositions(run):
    """Organoids make no lymphoid cells and many monocytes (planted); engineered cells carry off-target."""
    table = pd.read_csv(
        run.directory / "results/tables/lineage_presence.tsv", sep="\t", keep_default_na=False
    )
    status = table.set_index(["sample", "lineage"])["status"]
    for sample in ("organoid_week2", "organoid_week4"):
        assert status[(sample, "B")] in ("absent", "under-represented"), sample
    assert status[("organoid_week4", "monocyte")] == "over-represented"  # 36% planted vs 12% in vivo
    assert status[("engineered_7TF", "novel")] == "present"


@pytest.mark.workflow
def test_cells_table_follows_the_contract(run, cells):
    sheet = pd.read_csv(run.sheet, sep="\t")
    for col in CELL_COLUMNS:
        assert col in cells.columns, col
    assert any(c.startswith("score_") for c in cells.columns)
    assert cells["cell_id"].is_unique
    assert set(cells["sample"]) == set(sheet["sample"])
    assert cells["true_cell_type"].notna().all(), "every output cell traces back to a simulated cell"
    qc = pd.read_csv(run.directory / "results/tables/qc_summary.tsv", sep="\t")
    assert set(qc["sample"]) == set(sheet["sample"])


@pytest.mark.workflow
def test_offtarget_engineered_cells_score_below_in_vivo_hscs(cells):
    ref_hsc = cells[(cells["condition"] == "in_vivo") & (cells["true_cell_type"] == "HSC")]["hsc_score"]
    offtarget = cells[(cells["condition"] == "engineered") & cells["is_offtarget"]]["hsc_score"]
    assert len(ref_hsc) >= 10 and len(offtarget) >= 10
    assert offtarget.median() < ref_hsc.median()
    assert (offtarget < ref_hsc.quantile(0.25)).mean() > 0.8


@pytest.mark.workflow
def test_offtarget_states_are_flagged_novel_not_forced_into_a_label(cells):
    query = cells[cells["condition"] != "in_vivo"]
    off = query["is_offtarget"].astype(bool)
    assert query.loc[off, "novel"].mean() >= 0.8
    assert query.loc[~off, "novel"].mean() <= 0.05
    assert (query.loc[query["novel"].astype(bool), "predicted_label"] == "novel").all()


@pytest.mark.workflow
def test_scorecard_and_report_cover_every_query_sample(run):
    sheet = pd.read_csv(run.sheet, sep="\t")
    queries = set(sheet.loc[sheet["condition"] != "in_vivo", "sample"])
    scorecard = pd.read_csv(run.directory / "results/tables/scorecard.tsv", sep="\t")
    assert set(scorecard["sample"]) == queries
    html = (run.directory / "results/report.html").read_text()
    for sample in sheet["sample"]:
        assert sample in html
    composition = pd.read_csv(run.directory / "results/tables/composition.tsv", sep="\t")
    assert queries <= set(composition["sample"])
    # Methods lists the run's provenance record (issue #17): its config hash and each input's checksum
    record = json.loads((run.directory / "results/provenance.json").read_text())
    assert f"Config sha256 {record['config_sha256']}" in html
    for info in record["inputs"].values():
        assert info["sha256"] in html


@pytest.mark.workflow
def test_second_run_has_nothing_to_do(run):
    proc = subprocess.run([*run.command, "--dry-run"], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "Nothing to be done" in proc.stdout + proc.stderr


def _dry_run(tmp_path, sheet_text, *extra):
    sheet = tmp_path / "samples.tsv"
    sheet.write_text(sheet_text)
    cmd = snakemake_command(tmp_path / "run", sheet, "--dry-run", *extra)
    return subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, check=False)


def test_missing_input_file_is_refused_before_any_job(tmp_path):
    sheet = "sample\tpath\tspecies\tcondition\tbatch\nmyESC\t/nonexistent/counts.h5\tmouse\tengineered\tb1\n"
    proc = _dry_run(tmp_path, sheet)
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    assert "myESC" in out and "/nonexistent/counts.h5" in out
    assert "What to do" in out
    assert not (tmp_path / "run" / "results").exists()


def test_sheet_row_violating_the_schema_is_refused(tmp_path, repo):
    h5ad = repo / "resources/demo/invivo_donor1.h5ad"
    sheet = f"sample\tpath\tspecies\tcondition\tbatch\nd1\t{h5ad}\tzebrafish\tin_vivo\tb1\n"
    proc = _dry_run(tmp_path, sheet)
    assert proc.returncode != 0
    assert "zebrafish" in proc.stdout + proc.stderr


def test_unknown_config_key_is_refused(tmp_path, repo):
    h5ad = repo / "resources/demo/invivo_donor1.h5ad"
    sheet = f"sample\tpath\tspecies\tcondition\tbatch\nd1\t{h5ad}\tmouse\tin_vivo\tb1\n"
    extra = tmp_path / "extra.yaml"
    extra.write_text("qc:\n  n_madz: 3\n")
    proc = _dry_run(tmp_path, sheet, "--configfile", str(extra))
    assert proc.returncode != 0
    assert "n_madz" in proc.stdout + proc.stderr


def test_nested_command_line_config_values_are_typed_by_the_schema(tmp_path, repo):
    """README's `--config 'fidelity={n_bootstrap: 500}'`: Snakemake reads nested values as strings ("500"),
    which the schema refused; they are typed as the schema says, and a value that is no number is still
    refused by name."""
    sheet = (repo / "config" / "samples.tsv").read_text().replace("../resources", str(repo / "resources"))
    ok = _dry_run(tmp_path, sheet, "--config", "fidelity={n_bootstrap: 500}", "score={min_coverage: 0.3}")
    assert ok.returncode == 0, ok.stderr[-2000:]
    bad = _dry_run(tmp_path, sheet, "--config", "fidelity={n_bootstrap: many}")
    assert bad.returncode != 0
    assert "n_bootstrap" in bad.stdout + bad.stderr and "many" in bad.stdout + bad.stderr


def test_load_samples_resolves_paths_relative_to_the_sheet(tmp_path, repo):
    sheet = repo / "config" / "samples.tsv"
    df = load_samples(sheet)
    assert df.index.is_unique
    for path in df["path"]:
        assert path.startswith("/") and (repo / "resources" / "demo").as_posix() in path
    dup = tmp_path / "dup.tsv"
    dup.write_text(
        "sample\tpath\tspecies\tcondition\tbatch\na\t/x\tmouse\tin_vivo\tb\na\t/y\tmouse\tin_vivo\tb\n"
    )
    with pytest.raises(HscseqInputError, match="more than once"):
        load_samples(dup)


def test_snakemake_lint_is_clean(repo):
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "--lint", "--snakefile", str(REPO / "Snakefile")],
        cwd=repo,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Lints for" not in proc.stdout + proc.stderr, proc.stdout + proc.stderr


def test_unreadable_format_is_refused_at_dag_build(tmp_path):
    bogus = tmp_path / "counts.xlsx"
    bogus.write_text("not a matrix")
    sheet = f"sample\tpath\tspecies\tcondition\tbatch\nesc1\t{bogus}\tmouse\tengineered\tb1\n"
    proc = _dry_run(tmp_path, sheet)
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    assert "esc1" in out and "unknown count-matrix format" in out


def test_workflow_files_are_snakefmt_and_ruff_clean(repo):
    bin_dir = sys.executable.rsplit("/", 1)[0]
    checks = [
        [f"{bin_dir}/snakefmt", "--check", "Snakefile", "workflow/rules"],
        [f"{bin_dir}/ruff", "check", "hscseq", "tests", "workflow/scripts"],
        [f"{bin_dir}/ruff", "format", "--check", "hscseq", "tests", "workflow/scripts"],
    ]
    for cmd in checks:
        proc = subprocess.run(cmd, cwd=repo, capture_output=True, text=True, check=False)
        assert proc.returncode == 0, f"{' '.join(cmd)}:\n{proc.stdout}{proc.stderr}"


@pytest.mark.workflow
@pytest.mark.parametrize("method", ["none", "harmony", "scanvi"])
def test_every_integration_method_runs_from_config_through_the_dag(run, tmp_path, method):
    """Re-run integrate and cluster of the finished run with another method; downstream files follow."""
    import shutil

    workdir = tmp_path / "run"
    shutil.copytree(run.directory / "results", workdir / "results")
    overlay = tmp_path / "method.yaml"
    overlay.write_text(f"integrate:\n  method: {method}\n  max_epochs: 20\n")
    targets = ["results/tables/integration_metrics.tsv", "results/tables/markers.tsv"]
    cmd = snakemake_command(
        workdir, run.sheet, "--configfile", str(overlay), "--forcerun", "integrate", "--", *targets
    )
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, check=False, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    metrics = pd.read_csv(workdir / "results/tables/integration_metrics.tsv", sep="\t")
    assert set(metrics["method"]) == {method}
    value = metrics.set_index("metric")["value"]
    flagged = metrics.set_index("metric")["warning"].astype(str) == "True"
    assert value["clisi"] > 0.8, "cell types stay apart whatever the method"
    if method == "none":
        assert flagged["ilisi"], "without batch correction the donors do not mix, and the table says so"
    if method == "scanvi":
        assert value["nmi"] >= 0.5
    assert (workdir / "results/cluster/clustered.h5ad").stat().st_size > 0
