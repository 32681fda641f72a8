"""Drive the hscseq Snakemake workflow through Snakemake's Python API (used by the ``hscseq`` command).

The workflow profiles under ``workflow/profiles/`` are plain YAML read here and translated with Snakemake's
own parsers into API settings, so ``hscseq run --profile slurm`` and
``snakemake --workflow-profile workflow/profiles/slurm`` schedule the same jobs with the same resources.
Progress (jobs done / total, the rule running, elapsed time) comes from Snakemake's log events.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

PROFILES = ("local", "slurm")


def checkout_dir() -> Path:
    """The hscseq source checkout holding ``Snakefile`` and ``workflow/`` (an editable install)."""
    root = Path(__file__).resolve().parent.parent
    if not (root / "Snakefile").is_file():
        msg = (
            f"the hscseq workflow (Snakefile) is not next to the package at {root}. What to do: "
            "install hscseq from its source checkout with `pip install -e .` (as `make install` does)."
        )
        raise FileNotFoundError(msg)
    return root


def parse_config_args(entries: Sequence[str]) -> dict[str, Any]:
    """``KEY=VALUE`` strings parsed exactly as ``snakemake --config`` parses them."""
    from snakemake.cli import parse_config

    return parse_config(list(entries))


def effective_config(configfiles: Sequence[str | os.PathLike], config: Mapping[str, Any]) -> dict[str, Any]:
    """The config the workflow will see: ``config/config.yaml``, then each file, then ``--config`` values."""
    import yaml
    from snakemake.utils import update_config

    merged: dict[str, Any] = yaml.safe_load((checkout_dir() / "config" / "config.yaml").read_text())
    for path in configfiles:
        update_config(merged, yaml.safe_load(Path(path).read_text()) or {})
    update_config(merged, dict(config))
    return merged


def read_profile(profile: str | os.PathLike) -> dict[str, Any]:
    """The YAML of a workflow profile: a name under ``workflow/profiles/`` or a directory."""
    import yaml

    path = Path(profile)
    if str(profile) in PROFILES:
        path = checkout_dir() / "workflow" / "profiles" / str(profile)
    if path.is_dir():
        path = path / "config.yaml"
    if not path.is_file():
        msg = f"no workflow profile at {path}. What to do: use --profile local, slurm or a profile directory."
        raise FileNotFoundError(msg)
    return yaml.safe_load(path.read_text()) or {}


def _pairs(mapping: Mapping[str, Any] | None) -> list[str]:
    return [f"{k}={v}" for k, v in (mapping or {}).items()]


@dataclass
class RunOptions:
    """What ``hscseq run`` was asked to do."""

    directory: Path
    configfiles: list[Path] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)
    profile: str = "local"
    cores: int | None = None
    dry_run: bool = False
    targets: list[str] = field(default_factory=list)
    forcerun: list[str] = field(default_factory=list)
    allowed_rules: list[str] = field(default_factory=list)  # empty: every rule may run


#: Share of the machine's memory that jobs running side by side may claim together (``hscseq run`` on the
#: local executor, when the profile sets no ``resources: mem_mb``); the rest is left to the system.
LOCAL_MEMORY_SHARE = 0.9


def machine_memory_mb() -> int | None:
    """Memory this process may use, in MB: the physical memory, or a smaller cgroup (container) limit."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            limit = Path(path).read_text().strip()
        except OSError:
            continue
        if limit.isdigit():
            total = min(total, int(limit))
    return int(total // 2**20)


def _global_resources(prof: Mapping[str, Any], *, local: bool) -> dict[str, Any]:
    """The profile's ``resources``; on the local executor without a memory cap, ``mem_mb`` =
    :data:`LOCAL_MEMORY_SHARE` of :func:`machine_memory_mb`, so that jobs run side by side only while
    their estimated memory (the profile's per-rule ``mem_mb``) fits the machine. Snakemake lowers a single
    job's estimate to the cap, so a job larger than the cap still runs, alone."""
    resources = dict(prof.get("resources") or {})
    if local and "mem_mb" not in resources and (memory := machine_memory_mb()):
        resources["mem_mb"] = int(memory * LOCAL_MEMORY_SHARE)
        logger.info(
            "jobs run side by side while their estimated memory sums to at most %d MB (%.0f%% of %d MB); set "
            "resources: mem_mb in the profile to change it",
            resources["mem_mb"], 100 * LOCAL_MEMORY_SHARE, memory,
        )  # fmt: skip
    return resources


def _resource_settings(prof: Mapping[str, Any], cores: int | None, *, local: bool = True):
    from snakemake.cli import parse_group_components, parse_groups, parse_set_resources, parse_set_threads
    from snakemake.resources import Resources
    from snakemake.settings.types import ResourceSettings

    if cores is None:
        cores = prof.get("cores", "all")
    if cores in (None, "all"):
        cores = os.cpu_count() or 1
    set_resources = [
        f"{rule}:{name}={value}"
        for rule, values in (prof.get("set-resources") or {}).items()
        for name, value in values.items()
    ]
    defaults = Resources.parser_factory(defaults="full", allow_expressions=True)
    resources = ResourceSettings(
        cores=int(cores),
        nodes=prof.get("jobs"),
        overwrite_threads=parse_set_threads(_pairs(prof.get("set-threads"))),
        overwrite_resources=parse_set_resources(set_resources),
        default_resources=defaults(_pairs(prof.get("default-resources"))),
        resources=_global_resources(prof, local=local),
    )
    groups = parse_groups(_pairs(prof.get("groups")))
    components = parse_group_components(_pairs(prof.get("group-components")))
    return resources, groups, components


def run_workflow(opts: RunOptions, *, progress: ProgressReporter | None = None) -> bool:
    """Run (or dry-run) the workflow in ``opts.directory``; True on success."""
    from snakemake.api import SnakemakeApi
    from snakemake.settings.enums import Quietness
    from snakemake.settings.types import (
        ConfigSettings,
        DAGSettings,
        ExecutionSettings,
        GroupSettings,
        OutputSettings,
        RemoteExecutionSettings,
        SchedulingSettings,
    )
    from snakemake_interface_executor_plugins.registry import ExecutorPluginRegistry

    prof = read_profile(opts.profile)
    executor = prof.get("executor", "local")  # a dry run is checked against it, then runs nothing
    resources, groups, components = _resource_settings(prof, opts.cores, local=executor == "local")
    opts.directory.mkdir(parents=True, exist_ok=True)
    progress = progress or ProgressReporter(dry_run=opts.dry_run)
    output = OutputSettings(
        dryrun=opts.dry_run,
        printshellcmds=bool(prof.get("printshellcmds", False)),
        show_failed_logs=bool(prof.get("show-failed-logs", True)),
        # Snakemake's job blocks are replaced by ProgressReporter's lines / bar; its progress events must stay
        # on (quieting PROGRESS stops the scheduler emitting them): ProgressReporter filters them from the
        # default stream handler instead
        quiet={Quietness.RULES},
    )
    from snakemake.logging import logger as smk_logger  # "snakemake.logging", where Snakemake logs

    with SnakemakeApi(output) as api:
        progress.attach(smk_logger)
        try:
            workflow = api.workflow(
                resource_settings=resources,
                config_settings=ConfigSettings(config=opts.config, configfiles=opts.configfiles),
                snakefile=checkout_dir() / "Snakefile",
                workdir=opts.directory,
            )
            dag = workflow.dag(
                DAGSettings(
                    targets=set(opts.targets),
                    forcerun=set(opts.forcerun),
                    force_incomplete=bool(prof.get("rerun-incomplete", False)),
                    allowed_rules=set(opts.allowed_rules),
                ),
            )
            plugin = ExecutorPluginRegistry().get_plugin(executor)
            dag.execute_workflow(
                executor=executor,
                pseudo_executor="dryrun" if opts.dry_run else None,
                execution_settings=ExecutionSettings(
                    latency_wait=int(prof.get("latency-wait", 5)),
                    keep_going=bool(prof.get("keep-going", False)),
                    retries=int(prof.get("retries", 0)),
                    ignore_incomplete=False,
                ),
                remote_execution_settings=RemoteExecutionSettings(),
                scheduling_settings=SchedulingSettings(),
                group_settings=GroupSettings(overwrite_groups=groups, group_components=components),
                executor_settings=None if plugin.settings_cls is None else plugin.settings_cls(),
            )
        except Exception as exc:
            api.print_exception(exc)
            progress.finish(ok=False)
            return False
        finally:
            progress.detach(smk_logger)
    progress.finish(ok=True)
    return True


class ProgressReporter(logging.Handler):
    """Jobs done / total, the rule(s) running and the elapsed time, from Snakemake's log events.

    On a terminal a rich progress bar; otherwise (logs, CI) one plain line per event.
    """

    def __init__(self, *, dry_run: bool = False, stream=None, use_bar: bool | None = None) -> None:
        super().__init__(level=logging.INFO)
        self.stream = stream or sys.stderr
        self.dry_run = dry_run
        self.use_bar = (
            (hasattr(self.stream, "isatty") and self.stream.isatty()) if use_bar is None else use_bar
        )
        self.start = time.monotonic()
        self.done = 0
        self.total: int | None = None
        self.running: dict[int, str] = {}
        self.planned: dict[str, int] = {}
        self.resources: dict[str, dict] = {}  # dry run: resources of (the last job of) each rule
        self._bar = None
        self._task = None

    # logging.Handler API -------------------------------------------------------------------------
    def attach(self, log: logging.Logger) -> None:
        for handler in log.handlers:
            handler.addFilter(self._not_progress)
        log.addHandler(self)
        if self.use_bar:
            from rich.console import Console
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

            self._bar = Progress(
                TextColumn("[bold]hscseq"),
                BarColumn(),
                TextColumn("{task.fields[count]} jobs"),
                TimeElapsedColumn(),
                TextColumn("{task.description}"),
                console=Console(file=self.stream),
                transient=False,
            )
            self._bar.start()
            self._task = self._bar.add_task("starting", total=None, count="?")

    def detach(self, log: logging.Logger) -> None:
        log.removeHandler(self)
        for handler in log.handlers:
            handler.removeFilter(self._not_progress)

    @staticmethod
    def _not_progress(record: logging.LogRecord) -> bool:
        """Filter for Snakemake's own stream handler: progress and job-finished lines are ours to show."""
        return str(getattr(record, "event", "") or "") not in ("progress", "job_finished")

    def emit(self, record: logging.LogRecord) -> None:
        event = str(getattr(record, "event", "") or "")
        if event == "job_info":
            jobid = int(getattr(record, "jobid", 0))
            rule = str(getattr(record, "rule_name", "?"))
            wildcards = getattr(record, "wildcards", None) or {}
            label = rule + (f" ({', '.join(f'{k}={v}' for k, v in wildcards.items())})" if wildcards else "")
            if self.dry_run:
                self.planned[rule] = self.planned.get(rule, 0) + 1
                self.resources[rule] = dict(getattr(record, "resources", None) or {})
                return
            self.running[jobid] = label
            self._show(f"started {label}")
        elif event == "job_finished":
            label = self.running.pop(int(getattr(record, "job_id", -1)), "job")
            self._show(f"finished {label}")
        elif event == "job_error":
            label = self.running.pop(
                int(getattr(record, "jobid", -1)), str(getattr(record, "rule_name", "job"))
            )
            self._show(f"FAILED {label}")
            for log in getattr(record, "log", None) or []:
                self._print_log_tail(str(log))
        elif event == "run_info" and isinstance(getattr(record, "stats", None), Mapping):
            self.total = int(record.stats.get("total", 0)) or self.total
        elif event == "progress":
            self.done = int(getattr(record, "done", self.done))
            self.total = int(getattr(record, "total", 0))
            self._show(None)

    # display -------------------------------------------------------------------------------------
    def elapsed(self) -> str:
        seconds = int(time.monotonic() - self.start)
        return f"{seconds // 3600:d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"

    def _show(self, what: str | None) -> None:
        current = ", ".join(self.running.values()) or "-"
        if self._bar is not None:
            count = f"{self.done}/{self.total if self.total is not None else '?'}"
            self._bar.update(
                self._task, completed=self.done, total=self.total, description=current, count=count
            )
            return
        if what is None:
            line = f"[{self.elapsed()}] {self.done}/{self.total or '?'} jobs done; running: {current}"
        else:
            line = f"[{self.elapsed()}] {self.done}/{self.total or '?'} jobs done; {what}"
        print(line, file=self.stream, flush=True)

    def _print_log_tail(self, path: str, lines: int = 25) -> None:
        log = Path(path)
        if not log.is_file():
            return
        tail = log.read_text(errors="replace").splitlines()[-lines:]
        print(f"--- last {len(tail)} lines of {log.resolve()}:", file=self.stream)
        print("\n".join(tail), file=self.stream, flush=True)

    def finish(self, *, ok: bool) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
        if self.dry_run:
            total = sum(self.planned.values())
            plan = ", ".join(f"{rule} x{n}" for rule, n in self.planned.items()) or "nothing to do"
            print(f"dry run: {total} jobs would run: {plan}", file=self.stream, flush=True)
            return
        state = "finished" if ok else "FAILED"
        print(
            f"[{self.elapsed()}] {state}: {self.done}/{self.total or self.done} jobs done",
            file=self.stream,
            flush=True,
        )
