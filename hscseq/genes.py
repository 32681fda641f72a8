"""Gene identifiers: symbol <-> Ensembl tables, one-to-one mouse <-> human orthologs, overlap checks.

Tables shipped in ``resources/genes/`` (provenance in ``resources/genes/PROVENANCE.md``).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData

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

    Mitochondrial genes are added with their 10x names (``mt-Co1`` <-> ``MT-CO1``); human symbols that are
    newer than the 10x GRCh38 reference are renamed to its names (:func:`alias_map`) when unambiguous.
    """
    table = _read("mouse_human_orthologs_mgi_one2one.tsv")[["mouse_symbol", "human_symbol"]]
    mouse = symbol_table("mouse")["gene_symbol"]
    mito = [g for g in mouse if g.startswith("mt-")]
    extra = pd.DataFrame({"mouse_symbol": mito, "human_symbol": ["MT-" + g[3:].upper() for g in mito]})
    table = table[~table["mouse_symbol"].isin(mito)]
    # newer HGNC names (e.g. PRP4K) -> the 10x reference names (PRPF4B) human data uses, when unambiguous
    aliases = alias_map("human")
    taken = set(table["human_symbol"])
    renamed = [aliases.get(h, h) if aliases.get(h, h) not in taken else h for h in table["human_symbol"]]
    table = table.assign(human_symbol=renamed)
    return pd.concat([table, extra], ignore_index=True)


def ortholog_map(source: str, target: str) -> dict[str, str]:
    """Symbol map from ``source`` to ``target`` species through one-to-one orthologs (identity if equal)."""
    _check_species(source)
    _check_species(target)
    if source == target:
        return {}
    table = one2one_orthologs()
    return dict(zip(table[f"{source}_symbol"], table[f"{target}_symbol"], strict=True))


@functools.cache
def all_orthologs() -> pd.DataFrame:
    """Every MGI mouse/human ortholog pair (columns mouse_symbol, human_symbol), human names as in
    :func:`one2one_orthologs` (10x reference names where unambiguous)."""
    table = _read("mouse_human_orthologs_mgi.tsv")[["mouse_symbol", "human_symbol"]]
    aliases = alias_map("human")
    current = set(symbol_table("human")["gene_symbol"])
    table = table.assign(
        human_symbol=[h if h in current else aliases.get(h, h) for h in table["human_symbol"]]
    )
    return table.drop_duplicates().reset_index(drop=True)


@functools.cache
def ortholog_families() -> pd.DataFrame:
    """Curated many-to-many ortholog groups kept across species (resources/genes/ortholog_families.tsv)."""
    return _read("ortholog_families.tsv")


@functools.cache
def cross_species_map(source: str, target: str) -> dict[str, str]:
    """Symbol map used to merge ``source`` data into ``target`` species (several sources may share a target).

    The rule, in order:

    1. one-to-one orthologs (:func:`ortholog_map`);
    2. many-to-one: source genes whose only MGI ortholog is one target gene that has no one-to-one partner and
       whose other MGI orthologs all map only to it (e.g. mouse ``Hbq1a``, ``Hbq1b`` -> ``HBQ1``);
    3. curated many-to-many groups (:func:`ortholog_families`: the embryonic and adult globins): every source
       gene of the group -> the group's representative in ``target`` (mouse ``Hbb-y``, ``Hbb-bh1``,
       ``Hbb-bh0`` -> ``HBE1``; human ``HBE1``, ``HBG1``, ``HBG2`` -> ``Hbb-y``).

    Genes mapped to the same target are summed by :func:`to_species`. Other non-one-to-one genes are dropped.
    """
    _check_species(source)
    _check_species(target)
    if source == target:
        return {}
    mapping = dict(ortholog_map(source, target))
    taken = set(mapping.values())
    pairs = all_orthologs()
    src, tgt = f"{source}_symbol", f"{target}_symbol"
    targets_of = pairs.groupby(src)[tgt].agg(frozenset)
    sources_of = pairs.groupby(tgt)[src].agg(frozenset)
    for t, sources in sources_of.items():
        if len(sources) > 1 and t not in taken and all(targets_of[x] == {t} for x in sources):
            for x in sources:
                mapping.setdefault(x, t)
    for row in ortholog_families().itertuples():
        genes_in = str(getattr(row, f"{source}_genes")).split(",")
        rep = str(getattr(row, f"{target}_representative"))
        for g in genes_in:
            mapping.setdefault(g.strip(), rep)
    return mapping


def convert_symbols(symbols: Iterable[str], source: str, target: str) -> list[str | None]:
    """Translate symbols between species; ``None`` where no one-to-one ortholog exists."""
    symbols = list(symbols)
    if source == target:
        return list(symbols)
    mapping = ortholog_map(source, target)
    return [mapping.get(s) for s in symbols]


def check_overlap(
    found: Sequence[str],
    wanted: Sequence[str],
    *,
    what: str,
    minimum: int | float,
    sample: str | None = None,
    path: str | None = None,
) -> float:
    """Report how many of ``wanted`` genes are in ``found``; raise below ``minimum``.

    ``minimum`` is a count when >= 1 and a fraction of ``wanted`` when < 1. Returns the covered fraction.
    """
    wanted_set = set(wanted)
    n_hit = len(wanted_set & set(found))
    fraction = n_hit / max(len(wanted_set), 1)
    logger.info("%s: %d of %d genes present (%.1f%%)", what, n_hit, len(wanted_set), 100 * fraction)
    bar = minimum if minimum >= 1 else minimum * len(wanted_set)
    if n_hit < bar:
        parts = (f"sample {sample!r}" if sample else "", f"file {path!r}" if path else "")
        where = ", ".join(x for x in parts if x)
        msg = (
            f"{where + ': ' if where else ''}{what}: only {n_hit} of {len(wanted_set)} genes overlap "
            f"(minimum {minimum}). Scoring or mapping on so few genes would be meaningless. What to do: "
            "check the species in the sample sheet and the gene identifiers (symbols vs Ensembl IDs), "
            "or lower the minimum overlap in config if you are sure."
        )
        raise HscseqInputError(msg)
    return fraction


def _check_species(species: str) -> None:
    if species not in SPECIES:
        msg = f"species must be one of {SPECIES}, not {species!r}"
        raise HscseqInputError(msg)


# --------------------------------------------------------------------------------------------------------
# Ensembl IDs, aliases, species evidence, cross-species renaming

#: Ensembl gene ID prefix of each species.
ENSEMBL_PREFIX = {"mouse": "ENSMUSG", "human": "ENSG"}


def strip_version(gene_id: str) -> str:
    """``ENSG00000121410.12`` -> ``ENSG00000121410`` (other identifiers unchanged)."""
    if gene_id.startswith("ENS") and "." in gene_id:
        return gene_id.split(".", 1)[0]
    return gene_id


def is_ensembl(gene_id: str, species: str | None = None) -> bool:
    """Whether ``gene_id`` looks like an Ensembl gene ID (of ``species`` when given)."""
    prefixes = [ENSEMBL_PREFIX[species]] if species else list(ENSEMBL_PREFIX.values())
    return any(gene_id.startswith(p) and gene_id[len(p) : len(p) + 11].isdigit() for p in prefixes)


@functools.cache
def _symbol_to_id(species: str) -> dict[str, str]:
    table = symbol_table(species)
    table = table[table["ensembl_gene_id"] != ""].drop_duplicates("gene_symbol")
    return dict(zip(table["gene_symbol"], table["ensembl_gene_id"], strict=True))


@functools.cache
def _id_to_symbol(species: str) -> dict[str, str]:
    table = symbol_table(species)
    table = table[table["ensembl_gene_id"] != ""].drop_duplicates("ensembl_gene_id")
    return dict(zip(table["ensembl_gene_id"], table["gene_symbol"], strict=True))


def symbols_to_ensembl(symbols: Iterable[str], species: str) -> list[str]:
    """Ensembl gene ID of each symbol in the 10x reference of ``species`` ("" when unknown)."""
    mapping = _symbol_to_id(species)
    return [mapping.get(s, "") for s in symbols]


def ensembl_to_symbols(ids: Iterable[str], species: str) -> list[str | None]:
    """Symbol of each Ensembl gene ID (version suffixes ignored); ``None`` when unknown."""
    mapping = _id_to_symbol(species)
    return [mapping.get(strip_version(i)) for i in ids]


@functools.cache
def alias_map(species: str) -> dict[str, str]:
    """Unambiguous old symbol / alias -> current symbol (the 10x reference's name) of ``species``.

    Human: NCBI symbols and synonyms from org.Hs.eg.db, mapped to the 10x GRCh38 symbol of the same Ensembl
    gene when there is one. An alias pointing at more than one gene is dropped, and so is any key that is a
    current symbol itself. Mouse: no alias table is shipped (empty map).
    """
    _check_species(species)
    if species != "human":
        return {}
    table = _read("human_gene_ids_org.Hs.eg.db_3.16.tsv")
    current = set(symbol_table("human")["gene_symbol"])
    by_id = _id_to_symbol("human")
    targets: dict[str, set[str]] = {}
    for symbol, ensembl, aliases in zip(
        table["symbol"], table["ensembl_gene_id"], table["aliases"], strict=True
    ):
        target = by_id.get(ensembl, symbol) if ensembl else symbol
        for key in {symbol, *aliases.split(",")}:
            key = key.strip()
            if key and key != target and key not in current:
                targets.setdefault(key, set()).add(target)
    return {k: next(iter(v)) for k, v in targets.items() if len(v) == 1}


def resolve_symbols(symbols: Sequence[str], species: str) -> tuple[list[str], dict[str, str]]:
    """Replace old symbols and aliases by current symbols.

    A symbol is renamed only when it is not a current symbol, its alias is unambiguous and the target is not
    already among ``symbols`` (no duplicates are created). Returns the new list and the renames made.
    """
    current = set(symbol_table(species)["gene_symbol"])
    aliases = alias_map(species)
    taken = set(symbols)
    out, renames = [], {}
    for s in symbols:
        target = aliases.get(s) if s not in current else None
        if target is not None and target not in taken:
            renames[s] = target
            taken.add(target)
            out.append(target)
        else:
            out.append(s)
    if renames:
        logger.info(
            "%s: %d old symbols/aliases renamed to current symbols (e.g. %s)",
            species,
            len(renames),
            ", ".join(f"{a}->{b}" for a, b in list(renames.items())[:5]),
        )
    return out, renames


def known_gene_fraction(names: Sequence[str], species: str) -> float:
    """Fraction of ``names`` that are current symbols, known aliases or Ensembl IDs of ``species``."""
    if len(names) == 0:
        return 0.0
    known = set(symbol_table(species)["gene_symbol"]) | set(alias_map(species))
    ids = set(_id_to_symbol(species))
    hits = sum(1 for n in names if n in known or strip_version(n) in ids)
    return hits / len(names)


def species_evidence(names: Sequence[str]) -> dict[str, float]:
    """:func:`known_gene_fraction` of ``names`` for every supported species."""
    return {sp: known_gene_fraction(names, sp) for sp in SPECIES}


def make_unique(names: Sequence[str]) -> list[str]:
    """Make names unique deterministically: later duplicates get ``-1``, ``-2``, ... (never a taken name)."""
    taken = set(names)
    seen: set[str] = set()
    out = []
    for n in names:
        if n not in seen:
            seen.add(n)
            out.append(n)
            continue
        k = 1
        while f"{n}-{k}" in taken:
            k += 1
        new = f"{n}-{k}"
        taken.add(new)
        seen.add(new)
        out.append(new)
    return out


def to_species(
    adata: AnnData, target: str, *, source: str | None = None, min_overlap: int | float = 0
) -> AnnData:
    """Rename ``adata``'s genes to ``target`` species symbols (the rule of :func:`cross_species_map`).

    One-to-one orthologs are renamed; many-to-one orthologs and the curated groups (globins) are summed into
    their target gene; other genes are dropped. The overlap is logged and checked against ``min_overlap``
    (see :func:`check_overlap`).

    Parameters
    ----------
    adata
        Cells x genes, var_names are symbols of ``source``.
    target
        Species to rename to (``mouse`` or ``human``).
    source
        Species of ``adata``; default: the single value of ``obs["species"]``.
    min_overlap
        Minimum number (>= 1) or fraction (< 1) of genes that must have an ortholog.

    Returns
    -------
    A new AnnData (the input is not modified) with var_names in ``target`` symbols, ``var["gene_symbol"]``
    and ``var["gene_id"]`` of the target species and ``var["source_symbol"]`` holding the original names
    (comma-joined where several were summed). Unchanged (a copy) when ``source == target``.
    """
    _check_species(target)
    if source is None:
        values = adata.obs["species"].astype(str).unique() if "species" in adata.obs else []
        if len(values) != 1:
            msg = "to_species: give source= (obs['species'] is missing or holds several species)"
            raise HscseqInputError(msg)
        source = str(values[0])
    _check_species(source)
    if source == target:
        return adata.copy()
    mapping = cross_species_map(source, target)
    converted = [mapping.get(g) for g in adata.var_names]
    n_ok = sum(c is not None for c in converted)
    n_one = sum(c is not None for c in convert_symbols(adata.var_names, source, target))
    logger.info(
        "%s -> %s: %d of %d genes have a one-to-one ortholog (%.1f%%), %d more are kept by the many-to-one "
        "rule; the others are dropped",
        source,
        target,
        n_one,
        adata.n_vars,
        100 * n_one / max(adata.n_vars, 1),
        n_ok - n_one,
    )
    bar = min_overlap if min_overlap >= 1 else min_overlap * adata.n_vars
    if n_ok < bar:
        msg = (
            f"only {n_ok} of {adata.n_vars} {source} genes have a one-to-one {target} ortholog or a kept "
            f"many-to-one ortholog (minimum {min_overlap}). What to do: check the species declared for this "
            "data and its gene identifiers."
        )
        raise HscseqInputError(msg)
    keep = [i for i, c in enumerate(converted) if c is not None]
    new_names = list(dict.fromkeys(converted[i] for i in keep))
    col = {name: j for j, name in enumerate(new_names)}
    agg = sp.csr_matrix(
        (np.ones(len(keep)), (keep, [col[converted[i]] for i in keep])), shape=(adata.n_vars, len(new_names))
    )
    x = adata.X
    summed = (sp.csr_matrix(x) @ agg).astype(x.dtype) if sp.issparse(x) else np.asarray(x) @ agg.toarray()
    sources: dict[str, list[str]] = {}
    for i in keep:
        sources.setdefault(converted[i], []).append(str(adata.var_names[i]))
    out = AnnData(X=summed, obs=adata.obs.copy(), uns=dict(adata.uns), obsm=dict(adata.obsm))
    out.var["source_symbol"] = [",".join(sources[n]) for n in new_names]
    out.var_names = make_unique(new_names)
    out.var["gene_symbol"] = new_names
    out.var["gene_id"] = symbols_to_ensembl(new_names, target)
    return out
