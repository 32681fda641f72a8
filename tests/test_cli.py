"""The ``hscseq`` command as a new user meets it: init, validate, run, report."""

import io
import logging
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from hscseq.cli import main
from hscseq.runner import ProgressReporter

from .conftest import DATA, REPO

HEAVY = ("scanpy", "anndata", "torch", "snakemake", "pandas", "numpy", "scvi")


def test_console_script_is_declared(repo):
    project = tomllib.loads((repo / "pyproject.toml").read_text())["project"]
    assert project["scripts"]["hscseq"] == "hscseq.cli:main"


def test_help_imports_nothing_heavy():
    """`hscseq --help` answers at once: no scientific package is imported to print it."""
    code = (
        "import sys\nfrom hscseq.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        f"print('HEAVY=' + ','.join(m for m in {HEAVY!r} if m in sys.modules))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert "init" in proc.stdout and "validate" in proc.stdout and "run" in proc.stdout
    assert "HEAVY=\n" in proc.stdout, proc.stdout


@pytest.mark.parametrize("scenario", ["engineered", "organoid"])
def test_init_writes_a_commented_config_and_sheet(tmp_path, scenario):
    result = CliRunner().invoke(main, ["init", str(tmp_path / "proj"), "--scenario", scenario])
    assert result.exit_code == 0, result.output
    config = (tmp_path / "proj" / "config.yaml").read_text()
    sheet = (tmp_path / "proj" / "samples.tsv").read_text()
    assert f"samples: {tmp_path / 'proj' / 'samples.tsv'}" in config
    examples = [ln for ln in sheet.splitlines() if ln.startswith("# ") and "\t" in ln]
    assert len(examples) >= 3 and any("in_vivo" in ln for ln in examples)
    assert (scenario == "organoid") == any("week2" in ln for ln in examples)
    # refuses to overwrite the user's edits
    again = CliRunner().invoke(main, ["init", str(tmp_path / "proj")])
    assert again.exit_code != 0 and "--force" in again.output


def test_validate_lists_every_problem_and_exits_non_zero(tmp_path):
    CliRunner().invoke(main, ["init", str(tmp_path)])
    sheet = tmp_path / "samples.tsv"
    bogus = tmp_path / "counts.xlsx"
    bogus.write_text("not a matrix")
    with sheet.open("a") as fh:
        fh.write(f"d1\t{tmp_path / 'missing.h5ad'}\tmouse\tin_vivo\tb1\t\t\t\n")
        fh.write(f"esc\t{bogus}\tmouse\tengineered\tb2\t\t\t\n")
    result = CliRunner().invoke(main, ["validate", "--configfile", str(tmp_path / "config.yaml")])
    assert result.exit_code == 1
    out = result.output
    assert "3 problem(s)" in out
    assert "'d1'" in out and "missing.h5ad" in out
    assert "'esc'" in out and "unknown count-matrix format" in out
    # d1 has no label_column: a mouse run has no reference to map onto (the shipped profiles are human)
    assert "'fidelity.reference'" in out


def test_config_values_after_one_flag_are_parsed_like_snakemake(tmp_path):
    result = CliRunner().invoke(
        main,
        ["validate", "--config", f"samples={tmp_path / 'none.tsv'}", "qc={n_mads: x}"],
        catch_exceptions=False,
    )
    assert result.exit_code == 1
    assert "none.tsv" in result.output
    assert "qc.n_mads" in result.output and "x" in result.output


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("terminal", [False, True])
def test_progress_shows_jobs_done_current_rule_and_elapsed(terminal):
    """Snakemake's log events become a progress bar on a terminal and plain lines in a log."""
    stream = _Terminal() if terminal else io.StringIO()
    progress = ProgressReporter(stream=stream)
    log = logging.getLogger("hscseq-test-progress")
    log.propagate = False
    log.setLevel(logging.INFO)
    progress.attach(log)
    log.info(None, extra={"event": "job_info", "jobid": 3, "rule_name": "qc", "wildcards": {"sample": "esc"}})
    log.info(None, extra={"event": "progress", "done": 4, "total": 16})
    log.info(None, extra={"event": "job_finished", "job_id": 3})
    progress.detach(log)
    progress.finish(ok=True)
    out = stream.getvalue()
    if terminal:
        assert "━" in out and "4/16 jobs" in out  # rich's bar
    else:
        lines = out.splitlines()
        assert re.fullmatch(r"\[0:00:\d\d\] 0/\? jobs done; started qc \(sample=esc\)", lines[0])
        # (Snakemake announces the total with its job stats, before the first job: see the DAG test)
        assert re.fullmatch(r"\[0:00:\d\d\] 4/16 jobs done; running: qc \(sample=esc\)", lines[1])
        assert "finished qc (sample=esc)" in lines[2]
        assert "\x1b" not in out  # no terminal escapes in logs
    assert out.rstrip().endswith("finished: 4/16 jobs done")


@pytest.mark.parametrize(("profile", "runtime"), [("local", 60), ("slurm", 720)])
def test_dry_run_applies_the_profile_resources(tmp_path, repo, profile, runtime):
    """`hscseq run --profile P` schedules with the same threads and resources as snakemake's profile."""
    from hscseq.runner import RunOptions, run_workflow

    progress = ProgressReporter(dry_run=True, stream=io.StringIO())
    opts = RunOptions(
        directory=tmp_path,
        config={"samples": str(repo / "config" / "samples.tsv")},
        profile=profile,
        cores=2,
        dry_run=True,
    )
    assert run_workflow(opts, progress=progress)
    n_samples = len(pd.read_csv(repo / "config" / "samples.tsv", sep="\t", comment="#"))
    assert progress.planned["ingest"] == n_samples and progress.planned["report"] == 1
    integrate = progress.resources["integrate"]
    assert integrate["_cores"] == 2  # the profile's 8 threads, capped at --cores
    assert integrate["runtime"] == runtime
    assert not (tmp_path / "results").exists()


def test_local_runs_cap_the_memory_of_jobs_side_by_side():
    """On one machine, jobs run side by side only while their estimated memory fits it (90% by default);
    a profile's own cap wins, and a cluster executor gets none (its jobs run on other machines)."""
    from hscseq.runner import _resource_settings, machine_memory_mb, read_profile

    local = _resource_settings(read_profile("local"), 2, local=True)[0]
    assert local.resources["mem_mb"] == int(machine_memory_mb() * 0.9) > 1000
    own = _resource_settings({"resources": {"mem_mb": 1234}}, 2, local=True)[0]
    assert own.resources["mem_mb"] == 1234
    assert "mem_mb" not in _resource_settings(read_profile("slurm"), 2, local=False)[0].resources


def _hscseq(*args: str, cwd: Path, timeout: int = 1800) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "hscseq.cli", *args], cwd=cwd, capture_output=True, text=True, timeout=timeout
    )


@pytest.mark.workflow
def test_new_user_goes_from_init_to_a_report(tmp_path_factory):
    """Simulated files in three formats outside the repository, absolute paths, the CLI only."""
    from hscseq import datasets

    base = tmp_path_factory.mktemp("newuser")
    sheet_df = datasets.write_demo(base / "data", scale=0.15, seed=3)
    keep = ["invivo_donor1", "invivo_donor2", "engineered_7TF", "organoid_week2"]  # h5ad, 10x h5, 10x mtx
    proj = base / "my project"
    init = _hscseq("init", str(proj), "--scenario", "engineered", cwd=base)
    assert init.returncode == 0, init.stderr
    cols = ["sample", "path", "species", "condition", "batch", "timepoint", "donor", "label_column"]
    rows = sheet_df.set_index("sample").loc[keep].reset_index().reindex(columns=cols).fillna("")
    assert all(Path(p).is_absolute() for p in rows["path"])
    with (proj / "samples.tsv").open("a") as fh:
        rows.to_csv(fh, sep="\t", index=False, header=False)

    # the workflow tests' overlay, made cheaper still (2 shared cores): Scrublet only, fewer epochs / rounds
    cheap = base / "cheap.yaml"
    cheap.write_text(
        "qc:\n  doublet_methods: [scrublet]\nintegrate:\n  max_epochs: 40\n"
        "score:\n  n_bootstrap: 100\n  n_null: 30\nfidelity:\n  n_bootstrap: 30\n"
    )
    test_overlay = str(DATA / "workflow_config.yaml")
    config = [
        "--configfile",
        str(proj / "config.yaml"),
        "--configfile",
        test_overlay,
        "--configfile",
        str(cheap),
    ]
    check = _hscseq("validate", *config, cwd=proj)
    assert check.returncode == 0, check.stdout + check.stderr
    table = check.stdout
    for name in keep:
        assert re.search(rf"{name}\s+(h5ad|10x_h5|10x_mtx)\s+mouse\s+\d+\s+2000\s", table), table

    plan = _hscseq("run", "--dry-run", *config, cwd=proj)
    assert plan.returncode == 0, plan.stderr
    assert "ingest x4" in plan.stderr and "report x1" in plan.stderr

    run = _hscseq("run", "--cores", "2", *config, cwd=proj, timeout=2400)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-6000:]
    assert re.search(r"\[\d+:\d\d:\d\d\] \d+/18 jobs done; started qc \(sample=engineered_7TF\)", run.stderr)
    assert re.search(r"\[\d+:\d\d:\d\d\] \d+/18 jobs done; finished integrate", run.stderr)
    done = re.search(r"finished: (\d+)/(\d+) jobs done", run.stderr)
    # 4 ingest + 4 qc + 10 others (provenance, lineages and the eight single jobs)
    assert done and done.group(1) == done.group(2) == "18", run.stderr[-2000:]
    report = proj / "results" / "report.html"
    html = report.read_text()
    scorecard = pd.read_csv(proj / "results/tables/scorecard.tsv", sep="\t").set_index("sample")
    for sample in ("engineered_7TF", "organoid_week2"):
        f = scorecard.loc[sample, "fidelity_index"]
        sentence = re.search(rf'data-sample="{sample}">([^<]+)<', html).group(1)
        assert f"Fidelity index {f:.2f}" in sentence
        assert f"{100 * scorecard.loc[sample, 'novel_share']:.0f}% (CI" in sentence
    assert not proj.is_relative_to(REPO)

    # rebuild only the report from the results, even when an upstream file looks newer than its outputs
    before = report.stat().st_mtime_ns
    (proj / "results/merge/merged.h5ad").touch()
    rebuilt = _hscseq("report", *config, cwd=proj)
    assert rebuilt.returncode == 0, rebuilt.stderr[-3000:]
    assert report.stat().st_mtime_ns > before
    assert "started report" in rebuilt.stderr
    assert "started integrate" not in rebuilt.stderr and "started fidelity" not in rebuilt.stderr


@pytest.mark.parametrize(
    ("scenario", "sheet"), [("engineered", "samples.tsv"), ("organoid", "samples_organoid.tsv")]
)
def test_demo_dry_run_plans_each_scenario(tmp_path, repo, scenario, sheet):
    """`hscseq demo --scenario S --dry-run` validates that scenario's bundled inputs and plans one ingest per
    sample of its sheet (and the lineages stage), running nothing."""
    result = CliRunner().invoke(main, ["demo", "--scenario", scenario, "--dry-run", "-d", str(tmp_path)])
    assert result.exit_code == 0, result.output
    n_samples = len(pd.read_csv(repo / "config" / sheet, sep="\t", comment="#"))
    assert f"ingest x{n_samples}," in result.output
    assert "lineages x1" in result.output
    assert not (tmp_path / "results").exists()
