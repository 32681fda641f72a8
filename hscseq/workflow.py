"""Glue between Snakemake and the package: sample sheet loading/validation and the script runner.

Workflow scripts call :func:`run_from_snakemake` once; ``common.smk`` calls :func:`load_samples`.
"""

from __future__ import annotations

import io
import logging
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)


def setup_logging(log_path: str | os.PathLike | None = None, level: int = logging.INFO) -> None:
    """Send hscseq (and root) log records to ``log_path`` and stderr."""
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_path:
        Path(log_path).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_path, mode="w"))
    logging.basicConfig(
        level=level, handlers=handlers, force=True, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.captureWarnings(True)


def limit_threads(threads: int) -> None:
    """Keep a job to its rule's ``threads`` (from the workflow profile's ``set-threads``).

    Snakemake already sets ``OMP_NUM_THREADS``/``OPENBLAS_NUM_THREADS``/``MKL_NUM_THREADS`` for the job,
    which BLAS and torch read at start-up; numba (pynndescent, UMAP, Scrublet's neighbours) otherwise starts
    one thread per core of the machine, so parallel jobs oversubscribe it. scvi-tools training sets torch's
    threads itself (``hscseq._scvi.train``).
    """
    try:
        import numba
    except ImportError:  # pragma: no cover - numba comes with scanpy
        return
    numba.set_num_threads(max(1, min(int(threads), numba.config.NUMBA_NUM_THREADS)))


def run_from_snakemake(smk: Any, func: Callable[..., Any]) -> Any:
    """Call ``func(**named inputs, **named outputs, **named params)`` with logging to the rule's log.

    Every input, output and param of the rule must be named; the names are ``func``'s keyword arguments,
    except an input named ``provenance`` (``results/provenance.json``): its record is stored in
    ``uns["hscseq"]["provenance"]`` of every h5ad the job writes.
    """
    setup_logging(smk.log[0] if len(smk.log) else None)
    kwargs: dict[str, Any] = {}
    named_inputs = dict(smk.input.items())
    if "provenance" in named_inputs:
        from hscseq import provenance
        from hscseq._utils import set_provenance

        set_provenance(provenance.as_uns(provenance.load(named_inputs["provenance"])))
    for namedlist in (smk.input, smk.output, smk.params):
        for name, value in namedlist.items():
            if namedlist is smk.input and name == "provenance":
                continue  # recorded in every h5ad the job writes (hscseq._utils.write_h5ad)
            if name in kwargs:
                msg = f"rule {smk.rule}: the name {name!r} is used twice among input/output/params"
                raise ValueError(msg)
            kwargs[name] = value
    kwargs.pop("_cores", None)
    if "threads" in func.__code__.co_varnames[: func.__code__.co_argcount + func.__code__.co_kwonlyargcount]:
        kwargs["threads"] = smk.threads
    limit_threads(smk.threads)
    start = time.perf_counter()
    logger.info("rule %s: calling %s.%s", smk.rule, func.__module__, func.__name__)
    try:
        return func(**kwargs)
    except Exception:
        logger.exception("rule %s failed", smk.rule)
        raise
    finally:
        logger.info("rule %s: %.1f s", smk.rule, time.perf_counter() - start)


SHEET_COLUMNS = ("sample", "path", "species", "condition", "batch")
OPTIONAL_COLUMNS = ("format", "timepoint", "donor", "label_column", "technology", "replicate")


def resolve_config_path(path: str | os.PathLike, repo_dir: str | os.PathLike) -> Path:
    """A relative config path is looked up in the working directory first, then in the hscseq checkout."""
    path = Path(path)
    if path.is_absolute() or path.exists():
        return path.resolve()
    candidate = Path(repo_dir) / path
    return candidate.resolve() if candidate.exists() else path.resolve()


def load_samples(sheet: str | os.PathLike):
    """Read and check the sample sheet; return a DataFrame indexed by sample with absolute paths.

    Raises one :class:`~hscseq.HscseqInputError` listing every problem found by :func:`check_sample_sheet`.
    """
    from hscseq._utils import HscseqInputError

    df, problems = check_sample_sheet(sheet)
    if problems:
        raise HscseqInputError("\n".join(problems))
    return df


def _unknown_columns(unknown: list[str]) -> str:
    """The problem of unknown sheet columns, with the known column each resembles (``labels``)."""
    from hscseq.validate._config import _did_you_mean

    hints = "".join(_did_you_mean(c, SHEET_COLUMNS + OPTIONAL_COLUMNS, cutoff=0.5) for c in unknown)
    return f"unknown column(s) {unknown} in the sample sheet{hints}."


def check_sample_sheet(sheet: str | os.PathLike, *, detect: bool = True):
    """Check the sample sheet; return ``(DataFrame indexed by sample, problems)``, collecting every problem.

    Checks, each with a one-line message naming the sample, the file and what to do: the sheet is a
    tab-separated file, required columns present, unknown columns, sample names unique, every path present,
    label_column only on in vivo samples, at most one species among in vivo samples, and (``detect``) the
    format of every auto-detected count matrix (cheap: signature and names; non-regular files refused
    without being opened). The DataFrame is ``None`` when the sheet cannot be read at all. Rows are
    validated against their JSON schema by :func:`hscseq.validate.validate_run`."""
    import pandas as pd

    from hscseq._utils import HscseqInputError, input_error
    from hscseq.ingest import detect_format

    sheet = Path(sheet)
    if not sheet.is_file():
        what = "is not a regular file" if sheet.exists() else "does not exist"
        return None, [
            str(
                input_error(
                    f"the sample sheet (config key 'samples') {what}.",
                    path=sheet,
                    fix="set 'samples' (config file or --config samples=PATH) to an existing TSV; a "
                    "relative path is taken from the directory you run in (README, 'Sample sheet').",
                )
            )
        ]
    try:
        # lines starting with '#' are comments (hscseq init writes commented examples); '#' elsewhere is data
        text = sheet.read_text()
        lines = [ln for ln in text.splitlines(keepends=True) if not ln.lstrip().startswith("#")]
        df = pd.read_csv(
            io.StringIO("".join(lines)), sep="\t", dtype=str, keep_default_na=False, comment=None
        )
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        return None, [
            str(
                input_error(
                    f"the sample sheet cannot be parsed as TSV ({type(exc).__name__}: {exc}).",
                    path=sheet,
                    fix="write one tab-separated header line and one tab-separated row per sample.",
                )
            )
        ]
    df.columns = [str(c).strip() for c in df.columns]
    missing = [c for c in SHEET_COLUMNS if c not in df.columns]
    if missing:
        comma = len(df.columns) == 1 and "," in df.columns[0]
        return None, [
            str(
                input_error(
                    f"the sample sheet lacks the column(s) {missing}"
                    + (" (it looks comma-separated)." if comma else "."),
                    path=sheet,
                    fix=("separate the columns with tabs, not commas; " if comma else "")
                    + f"give the columns {list(SHEET_COLUMNS)} (optional: {list(OPTIONAL_COLUMNS)}).",
                )
            )
        ]
    problems: list[str] = []

    def problem(what, *, sample=None, path=sheet, fix=None):
        problems.append(str(input_error(what, sample=sample, path=path, fix=fix)))

    unknown = [c for c in df.columns if c not in SHEET_COLUMNS + OPTIONAL_COLUMNS]
    if unknown:
        problem(_unknown_columns(unknown), fix=f"use only {list(SHEET_COLUMNS + OPTIONAL_COLUMNS)}.")
    for col in OPTIONAL_COLUMNS:
        if col not in df.columns:
            df[col] = ""
    df = df.apply(lambda s: s.str.strip())
    if df.empty:
        problem("the sample sheet has no rows.", fix="add one row per sample.")
        return None, problems
    dup = df["sample"][df["sample"].duplicated()].unique().tolist()
    if dup:
        problem(
            f"sample name(s) {dup} appear more than once in the sample sheet.",
            fix="give every sample a unique name.",
        )
    for row in df.itertuples():
        if not row.path:
            problem(
                "the 'path' column is empty.", sample=row.sample, fix="give the count matrix of this sample."
            )
            continue
        p = Path(row.path)
        if not p.is_absolute():
            p = sheet.parent / p
        df.loc[row.Index, "path"] = str(p.resolve())
        if not p.exists():
            problem(
                "the count matrix does not exist.",
                sample=row.sample,
                path=p,
                fix="correct the 'path' column (relative paths are relative to the sample "
                f"sheet {str(sheet)!r}).",
            )
        elif detect and row.format in ("", "auto"):
            try:
                detect_format(p, sample=row.sample)  # cheap: refuses unreadable/unknown files before any job
            except HscseqInputError as exc:
                problems.append(str(exc))
        if row.label_column and row.condition != "in_vivo":
            problem(
                "label_column is only used for in vivo (reference) samples.",
                sample=row.sample,
                fix="leave label_column empty for engineered/organoid samples.",
            )
    ref_species = df.loc[df["condition"] == "in_vivo", "species"].unique()
    if len(ref_species) > 1:
        problem(
            f"in vivo samples mix species {sorted(ref_species)}.",
            fix="use one species for the in vivo reference samples; query samples of the other "
            "species are mapped through one-to-one orthologs.",
        )
    return df.set_index("sample", drop=False), problems
