"""Pre-run validation: every input checked cheaply before any job starts, every problem reported at once.

:func:`validate_run` is called by ``workflow/rules/common.smk`` at sample-sheet parse time (nothing runs while
a check fails) and by the ``hscseq validate`` command. What it checks is listed in README ("What is checked
before the run starts"); each problem is one line naming the sample (or config key), the file and the fix.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from hscseq._labels import DONOR_CANDIDATES
from hscseq._utils import HscseqInputError
from hscseq.validate._base import MIN_CELLS, N_TABLE_ROWS, N_VALUES, Peek, describe
from hscseq.validate._config import (
    check_config_file,
    check_hierarchy,
    check_hsc_coverage,
    check_reference,
    check_signatures,
    coerce_config_strings,
    config_problem,
    load_schema,
    resolve,
    schema_problems,
    unsafe_values,
    with_defaults,
)
from hscseq.validate._sample import check_sample

__all__ = [
    "MIN_CELLS",
    "N_TABLE_ROWS",
    "N_VALUES",
    "SAMPLE_COLUMNS",
    "ValidationResult",
    "check_config_file",
    "coerce_config_strings",
    "describe",
    "raise_if_invalid",
    "validate_run",
]

logger = logging.getLogger(__name__)

SAMPLE_COLUMNS = ["sample", "format", "species", "technology", "cells", "genes", "condition"]


@dataclass
class ValidationResult:
    """Outcome of :func:`validate_run`: problems (refuse the run), warnings, and what each sample holds."""

    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    samples: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=SAMPLE_COLUMNS))
    sheet: pd.DataFrame | None = None  # the checked sample sheet (index = sample, absolute paths)

    @property
    def ok(self) -> bool:
        return not self.problems

    def report(self) -> str:
        """Every problem and warning, one per line, with a count."""
        lines = [f"{len(self.problems)} problem(s) found before the run started:"] if self.problems else []
        lines += [f"  - {p}" for p in self.problems]
        lines += [f"  warning: {w}" for w in self.warnings]
        return "\n".join(lines)


def _row_problem(sample: str, sheet: Path):
    def describe_where(path: list, message: str) -> str:
        column = f"column {path[0]!r}: " if path else ""
        return str(
            HscseqInputError(
                f"sample {sample!r}, file {str(sheet)!r}: {column}{message}. What to do: correct the sample "
                "sheet (allowed values in workflow/schemas/samples.schema.yaml and README, 'Sample sheet')."
            )
        )

    return describe_where


def _check_rows(sheet_df: pd.DataFrame, sheet: Path) -> list[str]:
    schema = load_schema("samples.schema.yaml")
    if schema is None:
        return []
    problems = []
    known = set(schema.get("properties", {}))  # an unknown column is reported once, by check_sample_sheet
    for _, row in sheet_df.iterrows():
        values = {k: v for k, v in row.to_dict().items() if v not in ("", None) and (not known or k in known)}
        problems += schema_problems(values, schema, describe_where=_row_problem(str(row["sample"]), sheet))
    return problems


def _check_conditions(sheet_df: pd.DataFrame, config: Mapping, labels: Mapping[str, list[str]], ref_labels):
    """Condition/label mistakes that would only surface in the score or fidelity stage."""
    problems, warnings = [], []
    invivo = sheet_df[sheet_df["condition"] == "in_vivo"]
    if (sheet_df["condition"] == "in_vivo").all():
        warnings.append("every sample is in_vivo: there is no engineered or organoid sample to assess.")
    labelled = {s: v for s, v in labels.items() if s in invivo.index}
    fid = config.get("fidelity") or {}
    species = set(invivo["species"]) or set(sheet_df["species"])
    if not labelled and not fid.get("reference") and species - {"human"}:
        problems.append(
            config_problem(
                "fidelity.reference",
                f"no in vivo sample has a label_column and no reference h5ad is set, and the species is "
                f"{sorted(species)}: the built-in profile reference is human only.",
                fix="give the in vivo samples a label_column (sample sheet) or set fidelity.reference.",
            )
        )
    pooled = sorted({lab for v in labelled.values() for lab in v})
    if labelled and not fid.get("reference") and len(pooled) < 2:
        names = sorted(labelled)
        problems.append(
            str(
                HscseqInputError(
                    f"sample(s) {names}: the label_column holds a single class ({pooled}) across all in vivo "
                    "samples; cells cannot be mapped onto one label. What to do: choose a label_column with "
                    "the cell types (at least two), or set fidelity.reference to a labelled reference h5ad."
                )
            )
        )
    rows = invivo.loc[invivo.index.isin(list(labelled))].assign(sample=lambda d: d.index)
    if (
        labelled
        and not fid.get("reference")
        and all(rows[c].astype(str).replace("", np.nan).nunique() < 2 for c in DONOR_CANDIDATES if c in rows)
    ):
        warnings.append(
            f"one labelled in vivo donor ({sorted(labelled)}): the positive control will hold out a random "
            "20% of its cells instead of another donor, so the control band holds no donor-to-donor "
            "differences; add labelled in vivo samples of a second donor for a calibrated index."
        )
    if ref_labels is not None and len(ref_labels) < 2:
        problems.append(
            config_problem(
                "fidelity.reference_label_key",
                f"the reference's label column holds a single class ({ref_labels}).",
                path=fid.get("reference"),
                fix="set fidelity.reference_label_key to the cell-type column (at least two types).",
            )
        )
    return problems, warnings


def _check_per_sample(config: Mapping, names: Iterable[str]) -> list[str]:
    per = (config.get("qc") or {}).get("per_sample") or {}
    unknown = sorted(set(per) - set(names))
    if not unknown:
        return []
    return [
        config_problem(
            f"qc.per_sample.{u}",
            "names no sample of the sheet.",
            fix=f"use sample names of the sheet: {sorted(names)}.",
        )
        for u in unknown
    ]


def validate_run(config: dict, *, base_dir: str | os.PathLike | None = None) -> ValidationResult:
    """Check the config, the sample sheet, every count matrix and every config-referenced file, cheaply.

    Parameters
    ----------
    config
        The merged Snakemake config (config.yaml + overlays + ``--config``); schema defaults are filled in.
    base_dir
        The hscseq checkout: relative config paths not found in the working directory are looked up here.

    Returns
    -------
    A :class:`ValidationResult`; ``ok`` is False when any problem was found. Nothing is modified.
    """
    base = Path(base_dir).resolve() if base_dir is not None else Path(__file__).resolve().parent.parent.parent
    result = ValidationResult()
    result.problems += unsafe_values(config)
    schema = load_schema("config.schema.yaml")
    if schema is not None:
        config = coerce_config_strings(config, schema)
        result.problems += schema_problems(
            config,
            schema,
            describe_where=lambda path, msg: config_problem(
                ".".join(map(str, path)) or "(top level)",
                msg + ".",
                fix="see workflow/schemas/config.schema.yaml.",
            ),
        )
        config = _usable(config, schema, bad=bool(result.problems))
    if not isinstance(config.get("samples"), str):
        result.problems = [_one_line(p) for p in result.problems]
        return result
    from hscseq.workflow import check_sample_sheet

    sheet = resolve(str(config["samples"]), base)
    sheet_df, sheet_problems = check_sample_sheet(sheet, detect=False)
    result.problems += sheet_problems
    if sheet_df is None:
        result.problems = [_one_line(p) for p in result.problems]
        return result
    result.sheet = sheet_df
    result.problems += _check_rows(sheet_df, sheet)
    result.problems += _check_per_sample(config, sheet_df["sample"])
    peeks = _check_samples(sheet_df, config, result)
    labels = {s: p.labels for s, p in peeks.items() if p.labels is not None}
    sample_genes = _measured_genes(sheet_df, peeks)
    problems, warnings = check_signatures(config, base, sample_genes)
    if not problems:
        paths = {s: str(sheet_df.loc[s, "path"]) for s in sample_genes}
        problems = check_hsc_coverage(config, base, sample_genes, paths)
    result.problems += problems
    result.warnings += warnings
    ref_problems, ref_labels = check_reference(config, base)
    result.problems += ref_problems
    result.problems += check_hierarchy(config, base, ref_labels or [])
    problems, warnings = _check_conditions(sheet_df, config, labels, ref_labels)
    result.problems += problems
    result.warnings += warnings
    result.problems = [_one_line(p) for p in result.problems]
    result.warnings = [_one_line(w) for w in result.warnings]
    for w in result.warnings:
        logger.warning("%s", w)
    return result


def _one_line(text: str, limit: int = 600) -> str:
    """One line per problem: whitespace (e.g. a multi-line parser message) collapsed, very long text cut."""
    line = " ".join(str(text).split())
    if len(line) <= limit:
        return line
    head, sep, fix = line.partition(" What to do: ")
    return head[: limit - len(fix) - 20] + " [...]" + sep + fix


def _usable(config: Mapping, schema: Mapping, *, bad: bool) -> dict:
    """The config with defaults; with schema problems (already reported), each invalid section is replaced by
    its defaults so that the sheet and the inputs are still checked and every problem is reported at once."""
    import jsonschema

    if bad:
        validator = jsonschema.Draft202012Validator(schema)
        broken = {str(e.path[0]) for e in validator.iter_errors(config) if e.path}
        config = {
            k: v
            for k, v in config.items()
            if k not in broken and (k == "samples" or isinstance(v, Mapping)) and k in schema["properties"]
        }
    return with_defaults(config, schema)


def _measured_genes(sheet_df: pd.DataFrame, peeks: Mapping[str, Peek]) -> dict[str, tuple[str, list[str]]]:
    """Sample -> (species, its genes as ingest names them: Ensembl IDs looked up, aliases resolved)."""
    from hscseq.genes import SPECIES
    from hscseq.ingest.gene_ids import measured_symbols

    out = {}
    for sample, peek in peeks.items():
        if peek.symbols:
            species = str(sheet_df.loc[sample, "species"])
            names = list(peek.symbols)
            out[sample] = (species, measured_symbols(names, species) if species in SPECIES else names)
    return out


def _check_samples(sheet_df: pd.DataFrame, config: Mapping, result: ValidationResult) -> dict[str, Peek]:
    peeks: dict[str, Peek] = {}
    rows = []
    settings = config.get("ingest") or {}
    for sample, row in sheet_df.drop_duplicates("sample").iterrows():
        peek = check_sample(row.to_dict(), settings)
        peeks[str(sample)] = peek
        result.problems += peek.problems
        result.warnings += peek.warnings
        rows.append(
            {
                "sample": sample,
                "format": peek.fmt or str(row.get("format") or ""),
                "species": row.get("species", ""),
                "technology": row.get("technology") or "droplet",
                "cells": peek.cells,
                "genes": peek.genes,
                "condition": row.get("condition", ""),
            }
        )
    result.samples = pd.DataFrame(rows, columns=SAMPLE_COLUMNS)
    return peeks


def raise_if_invalid(
    config: dict, *, base_dir=None, config_files: Iterable[str | os.PathLike] = ()
) -> ValidationResult:
    """:func:`validate_run` plus a safe-YAML check of ``config_files``; one error lists every problem."""
    problems = [p for f in config_files for p in check_config_file(f)]
    result = validate_run(config, base_dir=base_dir)
    result.problems[:0] = [_one_line(p) for p in problems]
    if not result.ok:
        raise HscseqInputError(result.report())
    return result
