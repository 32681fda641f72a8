"""The ``hscseq`` command: set up a run, check it, run it, rebuild its report.

    hscseq init DIR --scenario engineered|organoid   ready-to-edit config.yaml and samples.tsv in DIR
    hscseq validate [--configfile F] [--config K=V ...]   check config, sample sheet and every input
    hscseq run [--profile local|slurm] [--cores N] [--dry-run] [--configfile F] [--config K=V ...]
    hscseq demo                                       the bundled demo (results/ in the working directory)
    hscseq report                                     rebuild results/report.html from results/

Imports of the scientific stack happen inside the commands, so ``hscseq --help`` answers at once.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

CONFIG_HELP = "Config file merged over config/config.yaml (repeatable), as snakemake --configfile."
SET_HELP = "KEY=VALUE overriding the config, as snakemake --config (repeat, or list several after it)."


def _config_options(func):
    func = click.option("--config", "config", multiple=True, metavar="KEY=VALUE", help=SET_HELP)(func)
    func = click.option(
        "--configfile",
        "configfiles",
        multiple=True,
        type=click.Path(exists=True, dir_okay=False, resolve_path=True, path_type=Path),
        help=CONFIG_HELP,
    )(func)
    return click.argument("extra", nargs=-1, metavar="[KEY=VALUE]... [TARGET]...")(func)


def _split_extra(config: Sequence[str], extra: Sequence[str]) -> tuple[list[str], list[str]]:
    """snakemake-style ``--config a=1 b=2``: values after ``--config`` holding ``=`` are config values."""
    values = list(config) + [e for e in extra if "=" in e]
    targets = [e for e in extra if "=" not in e]
    return values, targets


def _load_config(configfiles: Sequence[Path], values: Sequence[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    from hscseq.runner import effective_config, parse_config_args
    from hscseq.validate import check_config_file

    try:
        overrides = parse_config_args(values)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc
    # before Snakemake sees a config file: a Python tag or a YTE template is refused, never evaluated
    problems = [p for path in configfiles for p in check_config_file(path)]
    if problems:
        raise click.ClickException("\n".join(problems))
    return overrides, effective_config(configfiles, overrides)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="hscseq", prog_name="hscseq")
def main() -> None:
    """hscseq: how close are lab-made blood cells to the real thing?

    Typical session: `hscseq init myrun --scenario engineered`, edit myrun/samples.tsv, then in myrun
    `hscseq validate --configfile config.yaml` and `hscseq run --configfile config.yaml`;
    open results/report.html.
    """


# init -------------------------------------------------------------------------------------------


@main.command()
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--scenario",
    type=click.Choice(["engineered", "organoid"]),
    default="engineered",
    show_default=True,
    help="engineered: programmed PSC-derived HSC precursors; organoid: bone-marrow organoid time course.",
)
@click.option("--force", is_flag=True, help="Overwrite an existing config.yaml / samples.tsv.")
def init(directory: Path, scenario: str, force: bool) -> None:
    """Write a ready-to-edit config.yaml and samples.tsv (with commented examples) into DIRECTORY."""
    from hscseq._cli_templates import config_text, samples_text

    directory = directory.resolve()
    directory.mkdir(parents=True, exist_ok=True)
    files = {directory / "config.yaml": config_text(scenario, directory / "samples.tsv")}
    files[directory / "samples.tsv"] = samples_text(scenario)
    existing = [str(p) for p in files if p.exists()]
    if existing and not force:
        raise click.ClickException(f"{', '.join(existing)} exist(s); use --force to overwrite.")
    for path, text in files.items():
        path.write_text(text)
        click.echo(f"wrote {path}")
    click.echo(
        f"\nNext: add one row per sample to {directory / 'samples.tsv'} (absolute paths), then\n"
        f"  cd {directory}\n  hscseq validate --configfile config.yaml\n"
        "  hscseq run --configfile config.yaml --cores 4\n"
        "and open results/report.html."
    )


# validate ---------------------------------------------------------------------------------------


def _validate(config: dict[str, Any]):
    from hscseq.runner import checkout_dir
    from hscseq.validate import validate_run

    return validate_run(config, base_dir=checkout_dir())


def _print_validation(result) -> None:
    df = result.samples
    if df is not None and len(df):
        cols = [c for c in ("sample", "format", "species", "cells", "genes", "condition") if c in df]
        shown = df[cols].astype({c: "Int64" for c in ("cells", "genes") if c in cols})  # a failed peek: <NA>
        click.echo(shown.to_string(index=False))
    for w in result.warnings:
        click.echo(click.style("warning: ", fg="yellow") + w, err=True)
    if not result.ok:
        click.echo(click.style(f"{len(result.problems)} problem(s):", fg="red", bold=True), err=True)
        for p in result.problems:
            click.echo(f"  - {p}", err=True)


@main.command()
@_config_options
def validate(configfiles: tuple[Path, ...], config: tuple[str, ...], extra: tuple[str, ...]) -> None:
    """Check config, sample sheet and every input in seconds; list every problem."""
    values, targets = _split_extra(config, extra)
    if targets:
        raise click.UsageError(f"validate takes no targets: {targets}")
    _, merged = _load_config(configfiles, values)
    result = _validate(merged)
    _print_validation(result)
    if not result.ok:
        sys.exit(1)
    click.echo(click.style(f"OK: {len(result.samples)} samples ready to run.", fg="green"))


# run / demo -------------------------------------------------------------------------------------


def _run(
    *,
    directory: Path,
    configfiles: Sequence[Path],
    values: Sequence[str],
    targets: Sequence[str],
    profile: str,
    cores: int | None,
    dry_run: bool,
    check: bool = True,
) -> None:
    from hscseq.runner import RunOptions, run_workflow

    overrides, merged = _load_config(configfiles, values)
    if check:
        result = _validate(merged)
        if not result.ok:
            _print_validation(result)
            raise click.ClickException("fix the problems above; no job was started.")
        for w in result.warnings:
            click.echo(click.style("warning: ", fg="yellow") + w, err=True)
    opts = RunOptions(
        directory=directory.resolve(),
        configfiles=list(configfiles),
        config=overrides,
        profile=profile,
        cores=cores,
        dry_run=dry_run,
        targets=list(targets),
    )
    if not run_workflow(opts):
        raise click.ClickException(f"the run failed; see the messages above and {directory / 'logs'}.")
    if not dry_run and not targets:
        click.echo(f"Report: {directory.resolve() / 'results' / 'report.html'}")


def _run_options(func):
    func = click.option("--dry-run", "-n", is_flag=True, help="Show the jobs that would run; run none.")(func)
    func = click.option("--cores", "-c", type=click.IntRange(min=1), help="Cores to use (default: all).")(
        func
    )
    func = click.option(
        "--profile",
        default="local",
        show_default=True,
        help="Workflow profile: local, slurm, or a profile directory (resources, executor).",
    )(func)
    return click.option(
        "--directory",
        "-d",
        type=click.Path(file_okay=False, path_type=Path),
        default=".",
        show_default=True,
        help="Working directory: results/, logs/ and benchmarks/ are written here.",
    )(func)


@main.command()
@_run_options
@_config_options
def run(directory, profile, cores, dry_run, configfiles, config, extra) -> None:
    """Validate, then run the whole workflow with progress (jobs done/total, current rule, elapsed)."""
    values, targets = _split_extra(config, extra)
    _run(
        directory=directory,
        configfiles=configfiles,
        values=values,
        targets=targets,
        profile=profile,
        cores=cores,
        dry_run=dry_run,
    )


DEMO_OVERLAYS = {"engineered": "demo.yaml", "organoid": "demo_organoid.yaml"}


@main.command()
@click.option(
    "--scenario",
    type=click.Choice(sorted(DEMO_OVERLAYS)),
    default="engineered",
    show_default=True,
    help="engineered: simulated mouse ESC-derived cells against two labelled marrow donors; organoid: "
    "simulated human organoids (weeks 1-6) mapped onto the shipped marrow profiles.",
)
@_run_options
@_config_options
def demo(scenario, directory, profile, cores, dry_run, configfiles, config, extra) -> None:
    """Run a bundled demo scenario (simulated data in several formats; minutes on a laptop)."""
    from hscseq.runner import checkout_dir

    values, targets = _split_extra(config, extra)
    demo_overlay = checkout_dir() / "config" / DEMO_OVERLAYS[scenario]
    _run(
        directory=directory,
        configfiles=[demo_overlay, *configfiles],
        values=values,
        targets=targets,
        profile=profile,
        cores=cores,
        dry_run=dry_run,
    )


@main.command()
@click.option(
    "--directory",
    "-d",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    default=".",
    show_default=True,
    help="The run's working directory (holding results/).",
)
@_config_options
def report(directory, configfiles, config, extra) -> None:
    """Rebuild results/report.html from the results of a finished run."""
    from hscseq.runner import RunOptions, run_workflow

    values, _ = _split_extra(config, extra)
    overrides, _ = _load_config(configfiles, values)
    opts = RunOptions(
        directory=directory.resolve(),
        configfiles=list(configfiles),
        config=overrides,
        cores=1,
        targets=["results/report.html"],
        forcerun=["report"],
        allowed_rules=["report"],  # the results stay as they are, even if code or config changed since
    )
    if not run_workflow(opts):
        raise click.ClickException("the report could not be rebuilt; see the messages above.")
    click.echo(f"Report: {directory.resolve() / 'results' / 'report.html'}")


if __name__ == "__main__":  # pragma: no cover
    main()
