"""The signature library: the curated HSC / lineage signatures and user GMT / YAML files.

:func:`load_signatures` reads ``resources/signatures/hscseq_signatures.yaml`` plus user files into
:class:`Signature` objects (one per name, the analysis species preferred); :func:`resolve_genes` maps a
signature's genes onto the measured genes (one-to-one orthologs across species).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from hscseq._utils import input_error, resource_path
from hscseq.genes import SPECIES, convert_symbols

logger = logging.getLogger(__name__)

LIBRARY_FILE = "hscseq_signatures.yaml"


@dataclass(frozen=True)
class Signature:
    """A gene signature in one species.

    ``up`` genes count for the score, ``down`` genes against it. ``role`` is one of hsc, lineage, ontogeny,
    cell_cycle or user; ``sources`` holds citations / DOIs.
    """

    name: str
    species: str
    up: tuple[str, ...]
    down: tuple[str, ...] = ()
    role: str = "user"
    description: str = ""
    sources: tuple[str, ...] = ()
    origin: str = ""
    evidence: Mapping[str, str] = field(default_factory=dict)


def _guess_species(genes: Sequence[str]) -> str:
    """Human HGNC symbols are upper case; mouse MGI symbols are capitalised."""
    letters = [g for g in genes if any(c.isalpha() for c in g)]
    upper = sum(g == g.upper() for g in letters)
    return "human" if letters and upper / len(letters) > 0.8 else "mouse"


def _entry_to_signature(entry: Mapping, *, path: Path, species: str | None) -> Signature:
    name = str(entry.get("name", "")).strip()
    if not name or any(c.isspace() for c in name):
        raise input_error(
            f"signature name {name!r} is empty or contains spaces.",
            path=path,
            fix="give every signature a name without spaces (it becomes obs['score_<name>']).",
        )
    up = tuple(str(g).strip() for g in entry.get("up") or entry.get("genes") or [] if str(g).strip())
    down = tuple(str(g).strip() for g in entry.get("down") or [] if str(g).strip())
    if not up:
        raise input_error(
            f"signature {name!r} has no 'up' genes.",
            path=path,
            fix="list the genes of the signature under 'up:' (and optionally 'down:').",
        )
    sp_ = entry.get("species") or species or _guess_species(up + down)
    if sp_ not in SPECIES:
        raise input_error(
            f"signature {name!r} has species {sp_!r}.", path=path, fix=f"use one of {list(SPECIES)}."
        )
    sources = []
    for src in entry.get("sources") or []:
        if isinstance(src, Mapping):
            sources.append("; ".join(f"{k}: {v}" for k, v in src.items()))
        else:
            sources.append(str(src))
    if entry.get("source"):
        sources.append(str(entry["source"]))
    return Signature(
        name=name,
        species=sp_,
        up=up,
        down=down,
        role=str(entry.get("role", "user")),
        description=str(entry.get("description", "")),
        sources=tuple(sources),
        origin=str(path),
        evidence=dict(entry.get("evidence") or {}),
    )


def _read_gmt(path: Path, species: str | None) -> list[Signature]:
    """Signatures of a GMT file: ``name<TAB>description<TAB>gene...`` per line."""
    out: list[Signature] = []
    for lineno, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        fields = line.rstrip("\n").split("\t")
        if len(fields) < 3:
            raise input_error(
                f"line {lineno} has fewer than 3 tab-separated fields.",
                path=path,
                fix="write GMT lines as name<TAB>description<TAB>gene1<TAB>gene2...",
            )
        out.append(
            _entry_to_signature(
                {"name": fields[0], "description": fields[1], "up": fields[2:], "source": fields[1]},
                path=path,
                species=species,
            )
        )
    return out


def _read_yaml(path: Path, species: str | None) -> list[Signature]:
    """Signatures of a YAML file: the library layout (``signatures:`` list) or ``name: [genes]``."""
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise input_error(f"not valid YAML ({err}).", path=path, fix="fix the YAML syntax.") from err
    if isinstance(data, Mapping) and isinstance(data.get("signatures"), list):
        entries = data["signatures"]
    elif isinstance(data, Mapping):
        entries = [{"name": k, "up": v} if isinstance(v, list) else {"name": k, **v} for k, v in data.items()]
    else:
        raise input_error(
            "the YAML holds neither a 'signatures:' list nor a name -> genes mapping.",
            path=path,
            fix="see resources/signatures/hscseq_signatures.yaml for the layout.",
        )
    return [_entry_to_signature(e, path=path, species=species) for e in entries]


def read_signature_file(path: str | os.PathLike, *, species: str | None = None) -> list[Signature]:
    """Read signatures from a GMT or YAML file.

    GMT: ``name<TAB>description<TAB>gene...`` per line. YAML: either the library layout (``signatures:`` list
    of entries with name, species, up, down, ...) or a plain mapping ``name: [genes]``. ``species`` applies
    to entries without one; if ``None`` it is guessed from the symbol case (HGNC upper case = human).
    """
    path = Path(path)
    if not path.is_file():
        raise input_error(
            "the signature file does not exist.",
            path=path,
            fix="correct score.user_signatures in the config (GMT or YAML paths).",
        )
    suffix = path.suffix.lower()
    if suffix == ".gmt":
        return _read_gmt(path, species)
    if suffix in (".yaml", ".yml"):
        return _read_yaml(path, species)
    raise input_error(
        f"unknown signature file type {path.suffix!r}.", path=path, fix="give .gmt or .yaml/.yml files."
    )


def load_signatures(
    paths: Iterable[str | os.PathLike] = (),
    *,
    species: str | None = None,
    include_library: bool = True,
    user_species: str | None = None,
    names: Sequence[str] | None = None,
) -> dict[str, Signature]:
    """Load the curated library plus user GMT/YAML files, one signature per name.

    Parameters
    ----------
    paths
        User signature files (GMT or YAML); a user signature replaces a library signature of the same name.
    species
        Analysis species: when a name exists in both species, the entry of this species is taken.
    include_library
        Include ``resources/signatures/hscseq_signatures.yaml``.
    user_species
        Species of user signatures that do not declare one (guessed from the symbol case if ``None``).
    names
        Keep only these names (``None``: all).

    Returns
    -------
    Signatures keyed by name.
    """
    entries: list[Signature] = []
    if include_library:
        entries.extend(read_signature_file(resource_path("signatures", LIBRARY_FILE)))
    library_names = {s.name for s in entries}
    user: list[Signature] = []
    for p in paths:
        user.extend(read_signature_file(p, species=user_species))
    for s in user:
        if s.name in library_names:
            logger.warning(
                "user signature %r (%s) replaces the library signature of that name", s.name, s.origin
            )
    user_names = {s.name for s in user}
    entries = [s for s in entries if s.name not in user_names] + user
    out: dict[str, Signature] = {}
    for s in entries:
        current = out.get(s.name)
        if current is None or (current.species != species and s.species == species):
            out[s.name] = s
    if names is not None:
        unknown = [n for n in names if n not in out]
        if unknown:
            raise input_error(
                f"signature(s) {unknown} are not in the library or the user files.",
                fix=f"choose among {sorted(out)} or add them through score.user_signatures.",
            )
        out = {n: out[n] for n in names}
    return out


def resolve_genes(
    genes: Sequence[str], var_names: Sequence[str], *, source: str, target: str, excluded: Iterable[str] = ()
) -> tuple[list[str], dict[str, str]]:
    """Map signature genes onto ``var_names`` (one-to-one orthologs across species, case-insensitive).

    Returns the matched var names and, for every unmatched gene, why (``no ortholog``, ``not measured``,
    ``excluded``).
    """
    converted = convert_symbols(genes, source, target)
    lookup: dict[str, str] = {}
    for v in var_names:
        lookup.setdefault(str(v).upper(), str(v))
    exact = set(map(str, var_names))
    excluded = set(excluded)
    found: list[str] = []
    why: dict[str, str] = {}
    for gene, conv in zip(genes, converted, strict=True):
        if conv is None:
            why[gene] = "no one-to-one ortholog"
            continue
        hit = conv if conv in exact else lookup.get(conv.upper())
        if hit is None:
            why[gene] = "not measured"
        elif hit in excluded:
            why[gene] = "excluded (hscseq_excluded)"
        elif hit not in found:
            found.append(hit)
    return found, why
