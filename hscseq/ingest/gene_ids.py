"""Gene identifiers: Ensembl IDs looked up, species checked against the names, symbols resolved, unique."""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from hscseq import genes
from hscseq._utils import input_error
from hscseq.ingest._raw import _Raw

logger = logging.getLogger(__name__)


def looked_up_symbols(names: list[str], species: str) -> list[str]:
    """``names`` with every Ensembl ID replaced by its symbol (an unknown ID stays as it is)."""
    as_ids = [genes.is_ensembl(s) for s in names]
    if not any(as_ids):
        return list(names)
    it = iter(genes.ensembl_to_symbols([s for s, e in zip(names, as_ids, strict=True) if e], species))
    return [(next(it) or s) if e else s for s, e in zip(names, as_ids, strict=True)]


def measured_symbols(names: list[str], species: str) -> list[str]:
    """The current symbols ingest gives a sample's gene names (Ensembl IDs looked up, aliases resolved)."""
    return genes.resolve_symbols(looked_up_symbols(names, species), species)[0]


def _harmonise_genes(
    raw: _Raw, *, sample: str, path: Path, species: str, min_known: float
) -> tuple[pd.DataFrame, dict]:
    ids = [genes.strip_version(i.strip()) if i else "" for i in raw.ids]
    symbols = [s.strip() or i for s, i in zip(raw.symbols, ids, strict=True)]
    # Ensembl IDs in place of symbols: look the symbols up (and keep them as IDs)
    ids = [
        i or (genes.strip_version(s) if genes.is_ensembl(s) else "")
        for i, s in zip(ids, symbols, strict=True)
    ]
    symbols = looked_up_symbols(symbols, species)
    evidence = {
        sp_: max(
            genes.known_gene_fraction(symbols, sp_),
            genes.known_gene_fraction([i for i in ids if i] or [""], sp_),
        )
        for sp_ in genes.SPECIES
    }
    declared = evidence[species]
    other_name, other = max(((k, v) for k, v in evidence.items() if k != species), key=lambda kv: kv[1])
    logger.info(
        "sample %s: %.1f%% of %d genes known as %s genes (%s: %.1f%%)",
        sample,
        100 * declared,
        len(symbols),
        species,
        other_name,
        100 * other,
    )
    if declared < min_known:
        if other >= min_known and other > declared:
            raise input_error(
                f"the sample sheet declares species {species!r} but the gene names are "
                f"{other_name}: {100 * other:.0f}% are known {other_name} genes and only "
                f"{100 * declared:.0f}% are {species} (e.g. {symbols[:3]}).",
                sample=sample,
                path=path,
                fix=f"set species to {other_name!r} in the sample sheet if that is what this sample is.",
            )
        raise input_error(
            f"only {100 * declared:.0f}% of the {len(symbols)} gene names are known {species} "
            f"symbols or Ensembl IDs (minimum {100 * min_known:.0f}%; e.g. {symbols[:3]}).",
            sample=sample,
            path=path,
            fix="give gene symbols or Ensembl gene IDs of the declared species (check the "
            "species column, and whether the table is transposed), or lower "
            "ingest.min_known_gene_fraction if you are sure.",
        )
    resolved, renames = genes.resolve_symbols(symbols, species)
    table_ids = genes.symbols_to_ensembl(resolved, species)
    ids = [i if i else t for i, t in zip(ids, table_ids, strict=True)]
    unique = genes.make_unique(resolved)
    n_dup = sum(a != b for a, b in zip(unique, resolved, strict=True))
    if n_dup:
        logger.info(
            "sample %s: %d duplicated gene symbols made unique with -1, -2, ... suffixes", sample, n_dup
        )
    var = pd.DataFrame({"gene_symbol": resolved, "gene_id": ids}, index=pd.Index(unique, name=None))
    info = {
        "known_gene_fraction": {k: float(v) for k, v in evidence.items()},
        "n_renamed_symbols": len(renames),
        "renamed_symbols": dict(list(renames.items())[:200]),
        "n_duplicated_symbols": int(n_dup),
        "n_with_gene_id": int(sum(bool(i) for i in ids)),
    }
    return var, info
