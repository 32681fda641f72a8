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


def run_from_snakemake(smk: Any, func: Callable[..., Any]) -> Any:
    """Call ``func(**named inputs, **named outputs, **named params)`` with logging to the rule's log.

    Every input, output and param of the rule must be named; the names are ``func``'s keyword arguments.
    """
    setup_logging(smk.log[0] if len(smk.log) else None)
    kwargs: dict[str, Any] = {}
    for namedlist in (smk.input, smk.output, smk.params):
        for name, value in namedlist.items():
            if name in kwargs:
                msg = f"rule {smk.rule}: the name {name!r} is used twice among input/output/params"
                raise ValueError(msg)
            kwargs[name] = value
    kwargs.pop("_cores", None)
    if "threads" in func.__code__.co_varnames[: func.__code__.co_argcount + func.__code__.co_kwonlyargcount]:
        kwargs["threads"] = smk.threads
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
OPTIONAL_COLUMNS = ("format", "timepoint", "donor", "label_column", "technology")


def resolve_config_path(path: str | os.PathLike, repo_dir: str | os.PathLike) -> Path:
    """A relative config path is looked up in the working directory first, then in the hscseq checkout."""
    path = Path(path)
    if path.is_absolute() or path.exists():
        return path.resolve()
    candidate = Path(repo_dir) / path
    return candidate.resolve() if candidate.exists() else path.resolve()


def load_samples(sheet: str | os.PathLike):
    """Read and check the sample sheet; return a DataFrame indexed by sample with absolute paths.

    Checks, each with an error that names the sample and what to do: required columns present, unknown
    columns, sample names unique, every path present, at most one species among in vivo samples. JSON-schema
    validation of each row happens in ``common.smk`` (``workflow/schemas/samples.schema.yaml``).
    """
    import pandas as pd

    from hscseq._utils import input_error
    from hscseq.ingest import detect_format

    sheet = Path(sheet)
    if not sheet.is_file():
        raise input_error(
            "the sample sheet does not exist.",
            path=sheet,
            fix="pass an existing TSV with --config samples=PATH (see README, 'Sample sheet').",
        )
    # lines starting with '#' are comments (hscseq init writes commented examples); '#' elsewhere is data
    lines = [ln for ln in sheet.read_text().splitlines(keepends=True) if not ln.lstrip().startswith("#")]
    df = pd.read_csv(io.StringIO("".join(lines)), sep="\t", dtype=str, keep_default_na=False)
    df.columns = [c.strip() for c in df.columns]
    missing = [c for c in SHEET_COLUMNS if c not in df.columns]
    if missing:
        raise input_error(
            f"the sample sheet lacks the column(s) {missing}.",
            path=sheet,
            fix=f"give the columns {list(SHEET_COLUMNS)} (optional: {list(OPTIONAL_COLUMNS)}).",
        )
    unknown = [c for c in df.columns if c not in SHEET_COLUMNS + OPTIONAL_COLUMNS]
    if unknown:
        raise input_error(
            f"unknown column(s) {unknown} in the sample sheet.",
            path=sheet,
            fix=f"use only {list(SHEET_COLUMNS + OPTIONAL_COLUMNS)}.",
        )
    for col in OPTIONAL_COLUMNS:
        if col not in df.columns:
            df[col] = ""
    df = df.apply(lambda s: s.str.strip())
    if df.empty:
        raise input_error("the sample sheet has no rows.", path=sheet, fix="add one row per sample.")
    dup = df["sample"][df["sample"].duplicated()].unique().tolist()
    if dup:
        raise input_error(
            f"sample name(s) {dup} appear more than once in the sample sheet.",
            path=sheet,
            fix="give every sample a unique name.",
        )
    for row in df.itertuples():
        p = Path(row.path)
        if not p.is_absolute():
            p = sheet.parent / p
        if not p.exists():
            raise input_error(
                "the count matrix does not exist.",
                sample=row.sample,
                path=p,
                fix="correct the 'path' column (relative paths are relative to the sample "
                f"sheet {str(sheet)!r}).",
            )
        df.loc[row.Index, "path"] = str(p.resolve())
        if row.format in ("", "auto"):
            detect_format(p, sample=row.sample)  # cheap: refuses unreadable/unknown files before any job
        if row.label_column and row.condition != "in_vivo":
            raise input_error(
                "label_column is only used for in vivo (reference) samples.",
                sample=row.sample,
                path=sheet,
                fix="leave label_column empty for engineered/organoid samples.",
            )
    ref_species = df.loc[df["condition"] == "in_vivo", "species"].unique()
    if len(ref_species) > 1:
        raise input_error(
            f"in vivo samples mix species {sorted(ref_species)}.",
            path=sheet,
            fix="use one species for the in vivo reference samples; query samples of the other "
            "species are mapped through one-to-one orthologs.",
        )
    return df.set_index("sample", drop=False)
