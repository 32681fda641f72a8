"""One sample's cheap check: format (detected by ingest's own :func:`~hscseq.ingest.detect_format`, or forced
and compared with what the file looks like), then the format's peek, duplicated barcodes, size and species."""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from hscseq import genes
from hscseq._utils import HscseqInputError, input_error, special_file_kind
from hscseq.ingest import FORMATS
from hscseq.ingest.detect import _mtx_dir, detect_format
from hscseq.validate._base import MIN_CELLS, Peek, _Bad, describe
from hscseq.validate._hdf5 import _peek_10x_h5, _peek_h5ad, _peek_loom
from hscseq.validate._text import peek_mtx, peek_table, refuse_special_children

_READ_ERRORS = (
    OSError,
    EOFError,
    zlib.error,
    gzip.BadGzipFile,
    UnicodeDecodeError,
    KeyError,
    ValueError,
    IndexError,
)


def _family(fmt: str) -> str:
    return "mtx" if fmt in ("10x_mtx", "starsolo") else "table" if fmt in ("csv", "tsv") else fmt


def _peek(fmt: str, path: Path, peek: Peek, row: Mapping, settings: Mapping) -> list[str]:
    if fmt == "10x_h5":
        return _peek_10x_h5(path, peek, row, settings)
    if fmt == "h5ad":
        return _peek_h5ad(path, peek, row, settings)
    if fmt == "loom":
        return _peek_loom(path, peek, row, settings)
    if fmt in ("10x_mtx", "starsolo"):
        return peek_mtx(path, peek, row, settings)
    return peek_table(path, peek, row, settings, "," if fmt == "csv" else "\t")


def _species_problem(peek: Peek, species: str, min_known: float) -> tuple[str, str] | None:
    """ingest's species rule on the gene names: (what, fix) when the declared species does not fit."""
    evidence = {
        s: max(genes.known_gene_fraction(peek.symbols, s), genes.known_gene_fraction(peek.ids or [""], s))
        for s in genes.SPECIES
    }
    declared = evidence[species]
    if declared >= min_known:
        return None
    other, value = max(((k, v) for k, v in evidence.items() if k != species), key=lambda kv: kv[1])
    if value >= min_known and value > declared:
        return (
            f"the sample sheet declares species {species!r} but the gene names are {other}: "
            f"{100 * value:.0f}% are known {other} genes and only {100 * declared:.0f}% are {species} "
            f"(e.g. {peek.symbols[:3]}).",
            f"set species to {other!r} in the sample sheet if that is what this sample is.",
        )
    return (
        f"only {100 * declared:.0f}% of the {len(peek.symbols)} gene names are known {species} symbols or "
        f"Ensembl IDs (minimum {100 * min_known:.0f}%; e.g. {peek.symbols[:3]}).",
        "give gene symbols or Ensembl gene IDs of the declared species (check the species column, and "
        "whether the table is transposed), or lower ingest.min_known_gene_fraction if you are sure.",
    )


def _choose_format(path: Path, forced: str, sample: str, peek: Peek) -> str | None:
    """The format to peek with, or None after recording why nothing more can be checked."""
    try:
        detected = detect_format(path, sample=sample)
    except HscseqInputError as exc:
        if not forced or special_file_kind(path):
            peek.problems.append(str(exc))
            return None
        detected = None
    if forced and detected and _family(detected) != _family(forced):
        peek.problems.append(
            str(
                input_error(
                    f"the sample sheet forces format {forced!r} but the file looks like {detected} "
                    f"({describe(path)}).",
                    sample=sample,
                    path=path,
                    fix=f"set the 'format' column to {detected!r} (or leave it empty to detect it).",
                )
            )
        )
        return None
    return forced or detected


def check_sample(row: Mapping, settings: Mapping) -> Peek:
    """Check one sample-sheet row's count matrix cheaply; problems name the sample, the file and the fix."""
    sample, path = str(row["sample"]), Path(str(row["path"]))
    forced = str(row.get("format") or "").strip()
    forced = "" if forced == "auto" else forced
    peek = Peek()
    if not path.exists() or (forced and forced not in FORMATS):
        return peek  # reported by the sheet checks / the row schema
    try:
        if path.is_dir():
            refuse_special_children(path)
            if forced and _family(forced) != "mtx" and _mtx_dir(path) is None:
                raise _Bad(
                    f"the path is a directory ({describe(path)}) but format {forced!r} is a single file.",
                    "give the file itself, or fix the 'format' column (empty detects it).",
                )
    except _Bad as bad:
        peek.problems.append(str(input_error(str(bad), sample=sample, path=bad.path or path, fix=bad.fix)))
        return peek
    fmt = _choose_format(path, forced, sample, peek)
    if fmt is None:
        return peek
    peek.fmt = fmt
    try:
        barcodes = _peek(fmt, path, peek, row, settings)
    except _Bad as bad:
        hint = f" (the file looks like {describe(path)})" if forced else ""
        peek.problems.append(
            str(input_error(f"{bad}{hint}", sample=sample, path=bad.path or path, fix=bad.fix))
        )
        return peek
    except _READ_ERRORS as exc:
        peek.problems.append(
            str(
                input_error(
                    f"the {fmt} input is unreadable ({type(exc).__name__}: {exc}); the file looks like "
                    f"{describe(path)}.",
                    sample=sample,
                    path=path,
                    fix="check that the file is complete (copy it again and compare checksums) and that it "
                    "really is " + fmt + " (or fix the sample sheet's 'format' column).",
                )
            )
        )
        return peek
    _check_content(peek, barcodes, row, settings)
    return peek


def _check_content(peek: Peek, barcodes: list[str], row: Mapping, settings: Mapping) -> None:
    sample, path = str(row["sample"]), Path(str(row["path"]))

    def problem(what: str, fix: str) -> None:
        peek.problems.append(str(input_error(what, sample=sample, path=path, fix=fix)))

    if not peek.cells or not peek.genes:
        problem(
            f"the count matrix is empty ({peek.cells or 0} cells x {peek.genes or 0} genes, "
            "or no non-zero value).",
            "point the sample sheet at the filtered matrix of a run that produced cells.",
        )
        return
    index = pd.Index(barcodes)
    if index.has_duplicates:
        examples = index[index.duplicated()].unique()[:3].tolist()
        problem(
            f"{int(index.duplicated().sum())} duplicated cell barcodes (e.g. {examples}).",
            "each cell must appear once: if several libraries were concatenated, give each its own row in "
            "the sample sheet (or make barcodes unique, e.g. with a suffix).",
        )
    if peek.cells < MIN_CELLS:
        problem(
            f"only {peek.cells} cells: QC needs at least {MIN_CELLS} to set adaptive thresholds and "
            "call doublets.",
            "give the filtered matrix of the whole sample, or drop the sample from the sheet.",
        )
    species = str(row.get("species") or "")
    if species in genes.SPECIES and peek.symbols:
        found = _species_problem(peek, species, float(settings.get("min_known_gene_fraction", 0.5)))
        if found:
            problem(*found)
