"""Stand-in for :func:`hscseq.validate.validate_run` until the reliability branch's validator is merged.

Same interface (see /work/coord/README.md): config against the JSON schema, the sample sheet through
:func:`hscseq.workflow.load_samples` (which stops at its first problem), then every sample read once to
count cells and genes and check its species. Each problem is one line naming sample, file and fix.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd


@dataclass
class ValidationResult:
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    samples: pd.DataFrame = field(default_factory=pd.DataFrame)

    @property
    def ok(self) -> bool:
        return not self.problems


def validate_run(config: dict[str, Any], *, base_dir: str | os.PathLike | None = None) -> ValidationResult:
    import jsonschema
    import yaml

    from hscseq._utils import HscseqInputError
    from hscseq.ingest import detect_format, read_sample
    from hscseq.workflow import load_samples, resolve_config_path

    base = Path(base_dir) if base_dir else Path(__file__).resolve().parent.parent
    result = ValidationResult()
    schema = yaml.safe_load((base / "workflow" / "schemas" / "config.schema.yaml").read_text())
    for err in jsonschema.Draft7Validator(schema).iter_errors(config):
        where = ".".join(str(p) for p in err.absolute_path) or "config"
        result.problems.append(f"config {where}: {err.message}. What to do: see config/config.yaml.")
    if "samples" not in config:
        result.problems.append("config: no 'samples' sheet. What to do: --config samples=/abs/samples.tsv")
        return result
    sheet_path = resolve_config_path(config["samples"], base)
    _check_rows(sheet_path, result)  # every missing / unreadable file, not only the first
    if result.problems:
        return result
    try:
        sheet = load_samples(sheet_path)
    except HscseqInputError as exc:
        result.problems.append(str(exc))
        return result
    ingest = config.get("ingest", {})
    rows = []
    for row in sheet.itertuples(index=False):
        entry = {
            k: getattr(row, k) for k in ("sample", "species", "condition", "technology") if hasattr(row, k)
        }
        try:
            fmt = row.format or detect_format(row.path, sample=row.sample)
            adata = read_sample(
                row.path,
                sample=row.sample,
                species=row.species,
                fmt=fmt,
                label_column=row.label_column or None,
                min_known_gene_fraction=ingest.get("min_known_gene_fraction", 0.5),
                counts_layer=ingest.get("counts_layer", "auto"),
                table_orientation=ingest.get("table_orientation", "auto"),
            )
        except (HscseqInputError, OSError, ValueError, KeyError) as exc:
            result.problems.append(str(exc) if row.sample in str(exc) else f"sample {row.sample!r}: {exc}")
            rows.append({**entry, "format": row.format or "?", "cells": None, "genes": None})
            continue
        rows.append({**entry, "format": fmt, "cells": adata.n_obs, "genes": adata.n_vars})
    cols = ["sample", "format", "species", "technology", "cells", "genes", "condition"]
    result.samples = pd.DataFrame(rows).reindex(columns=cols)
    if not (sheet["condition"] == "in_vivo").any() and not config.get("fidelity", {}).get("reference"):
        result.problems.append(
            "sample sheet: no in_vivo sample and no fidelity.reference. What to do: add the in vivo "
            "reference samples (condition in_vivo) or set fidelity.reference to an annotated h5ad."
        )
    return result


def _check_rows(sheet_path: Path, result: ValidationResult) -> None:
    from hscseq._utils import HscseqInputError
    from hscseq.ingest import detect_format

    if not sheet_path.is_file():
        result.problems.append(
            f"file {str(sheet_path)!r}: the sample sheet does not exist. What to do: pass an existing TSV "
            "with --config samples=/abs/samples.tsv (hscseq init writes one)."
        )
        return
    lines = [
        ln for ln in sheet_path.read_text().splitlines() if ln.strip() and not ln.lstrip().startswith("#")
    ]
    if not lines:
        return
    header = [c.strip() for c in lines[0].split("\t")]
    if "sample" not in header or "path" not in header:
        return
    for line in lines[1:]:
        row = dict(zip(header, (v.strip() for v in line.split("\t")), strict=False))
        path = Path(row.get("path", ""))
        if not path.is_absolute():
            path = sheet_path.parent / path
        if not path.exists():
            result.problems.append(
                f"sample {row['sample']!r}, file {str(path)!r}: the count matrix does not exist. What to do: "
                f"correct the 'path' column of {sheet_path}."
            )
            continue
        if row.get("format", "") in ("", "auto"):
            try:
                detect_format(path, sample=row["sample"])
            except HscseqInputError as exc:
                result.problems.append(str(exc))
