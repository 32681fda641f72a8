"""Gene identifiers: symbol <-> Ensembl tables, one-to-one mouse <-> human orthologs, overlap checks.

Tables shipped in ``resources/genes/`` (provenance in ``resources/genes/PROVENANCE.md``).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterable, Sequence

import pandas as pd

from hscseq._utils import HscseqInputError, resource_path

logger = logging.getLogger(__name__)

SPECIES = ("mouse", "human")


def _read(name: str) -> pd.DataFrame:
    return pd.read_csv(resource_path("genes", name), sep="\t", comment="#", dtype=str, keep_default_na=False)


@functools.cache
def symbol_table(species: str) -> pd.DataFrame:
    """Symbol <-> Ensembl table of the 10x reference of ``species`` (columns gene_symbol, ensembl_gene_id)."""
    _check_species(species)
    return _read(f"{species}_symbol_ensembl_10x.tsv")


@functools.cache
def one2one_orthologs() -> pd.DataFrame:
    """MGI strict one-to-one mouse/human orthologs (columns mouse_symbol, human_symbol).

    Mitochondrial genes are added with their 10x names (``mt-Co1`` <-> ``MT-CO1``).
    """
    table = _read("mouse_human_orthologs_mgi_one2one.tsv")[["mouse_symbol", "human_symbol"]]
    mouse = symbol_table("mouse")["gene_symbol"]
    mito = [g for g in mouse if g.startswith("mt-")]
    extra = pd.DataFrame({"mouse_symbol": mito, "human_symbol": ["MT-" + g[3:].upper() for g in mito]})
    table = table[~table["mouse_symbol"].isin(mito)]
    return pd.concat([table, extra], ignore_index=True)


def ortholog_map(source: str, target: str) -> dict[str, str]:
    """Symbol map from ``source`` to ``target`` species through one-to-one orthologs (identity if equal)."""
    _check_species(source)
    _check_species(target)
    if source == target:
        return {}
    table = one2one_orthologs()
    return dict(zip(table[f"{source}_symbol"], table[f"{target}_symbol"], strict=True))


def convert_symbols(symbols: Iterable[str], source: str, target: str) -> list[str | None]:
    """Translate symbols between species; ``None`` where no one-to-one ortholog exists."""
    symbols = list(symbols)
    if source == target:
        return list(symbols)
    mapping = ortholog_map(source, target)
    return [mapping.get(s) for s in symbols]


def check_overlap(found: Sequence[str], wanted: Sequence[str], *, what: str, minimum: int | float,
                  sample: str | None = None, path: str | None = None) -> float:
    """Report how many of ``wanted`` genes are in ``found``; raise below ``minimum``.

    ``minimum`` is a count when >= 1 and a fraction of ``wanted`` when < 1. Returns the covered fraction.
    """
    wanted_set = set(wanted)
    n_hit = len(wanted_set & set(found))
    fraction = n_hit / max(len(wanted_set), 1)
    logger.info("%s: %d of %d genes present (%.1f%%)", what, n_hit, len(wanted_set), 100 * fraction)
    bar = minimum if minimum >= 1 else minimum * len(wanted_set)
    if n_hit < bar:
        where = ", ".join(x for x in (f"sample {sample!r}" if sample else "", f"file {path!r}" if path else "")
                          if x)
        msg = (f"{where + ': ' if where else ''}{what}: only {n_hit} of {len(wanted_set)} genes overlap "
               f"(minimum {minimum}). Scoring or mapping on so few genes would be meaningless. What to do: "
               "check the species in the sample sheet and the gene identifiers (symbols vs Ensembl IDs), "
               "or lower the minimum overlap in config if you are sure.")
        raise HscseqInputError(msg)
    return fraction


def _check_species(species: str) -> None:
    if species not in SPECIES:
        msg = f"species must be one of {SPECIES}, not {species!r}"
        raise HscseqInputError(msg)
