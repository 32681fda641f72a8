"""Checks of the config itself and of every file it references (signatures, reference h5ad, hierarchy).

YAML is only ever read with ``yaml.safe_load``: a ``!!python/...`` tag is refused, never constructed.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import yaml

from hscseq._utils import HscseqInputError, input_error, special_file_kind

_SCHEMA_DIR = Path(__file__).resolve().parent.parent.parent / "workflow" / "schemas"
_PLAIN = (str, int, float, bool, type(None))


def config_problem(key: str, what: str, *, path=None, fix: str | None = None) -> str:
    """One line naming the config key (and file) and the fix."""
    return (
        f"config key {key!r}, " + str(input_error(what, path=path, fix=fix))
        if path
        else str(input_error(f"config key {key!r}: {what}", fix=fix))
    )


def load_schema(name: str) -> dict | None:
    path = _SCHEMA_DIR / name
    return yaml.safe_load(path.read_text()) if path.is_file() else None


def with_defaults(config: Mapping, schema: Mapping) -> dict:
    """``config`` with the schema's defaults filled in (recursively: the schema is the one source)."""
    out = dict(config)
    for key, sub in (schema.get("properties") or {}).items():
        if key not in out and "default" in sub:
            out[key] = sub["default"]
        if isinstance(out.get(key), Mapping) and sub.get("type") == "object":
            out[key] = with_defaults(out[key], sub)
    return out


def _typed(value: str, types: list[str]) -> Any:
    """``value`` as the first of ``types`` it parses as (unchanged if none does or strings are allowed)."""
    if "string" in types:
        return value
    for t in types:
        try:
            if t == "integer":
                return int(value)
            if t == "number":
                return float(value)
        except ValueError:
            continue
        if t == "boolean" and value.lower() in ("true", "false"):
            return value.lower() == "true"
        if t == "null" and value in ("null", "None", "~"):
            return None
    return value


def coerce_config_strings(config: Mapping, schema: Mapping) -> dict:
    """``config`` with strings typed as the schema says (``"500"`` -> 500 where an integer is expected).

    ``snakemake --config 'fidelity={n_bootstrap: 500}'`` reads nested values as strings (Snakemake parses them
    with YAML's base loader), so the README's own example would fail the schema; strings that parse as the
    expected type are converted, anything else is left for the schema check to report.
    """
    out = dict(config)
    for key, sub in (schema.get("properties") or {}).items():
        if key not in out:
            continue
        value = out[key]
        types = sub.get("type", [])
        types = [types] if isinstance(types, str) else list(types)
        if isinstance(value, Mapping) and "object" in types:
            out[key] = coerce_config_strings(value, sub)
        elif isinstance(value, list) and "array" in types and isinstance(sub.get("items"), Mapping):
            item_types = sub["items"].get("type", [])
            item_types = [item_types] if isinstance(item_types, str) else list(item_types)
            out[key] = [_typed(v, item_types) if isinstance(v, str) else v for v in value]
        elif isinstance(value, str):
            out[key] = _typed(value, types)
    return out


def _did_you_mean(value: Any, choices: Iterable[Any], *, cutoff: float = 0.6) -> str:
    close = difflib.get_close_matches(str(value), [str(c) for c in choices], n=1, cutoff=cutoff)
    return f" (did you mean {close[0]!r}?)" if close else ""


def schema_problems(instance: Mapping, schema: Mapping, *, describe_where) -> list[str]:
    """Every JSON-schema violation of ``instance``, one line each (``describe_where(path, message)``)."""
    import jsonschema

    validator = jsonschema.Draft202012Validator(schema)
    out = []
    for err in sorted(validator.iter_errors(instance), key=lambda e: list(map(str, e.path))):
        hint = ""
        if err.validator == "enum":
            hint = _did_you_mean(err.instance, err.validator_value)
        elif err.validator == "additionalProperties":
            allowed = list((err.schema.get("properties") or {}).keys())
            extra = [k for k in err.instance if k not in allowed]
            hint = "".join(_did_you_mean(k, allowed) for k in extra)
        out.append(describe_where(list(err.path), f"{err.message}{hint}"))
    return out


def unsafe_values(value: Any, key: str = "") -> list[str]:
    """Config entries that are not plain YAML data (a Python object smuggled in through a YAML tag)."""
    if isinstance(value, Mapping):
        return [p for k, v in value.items() for p in unsafe_values(v, f"{key}.{k}" if key else str(k))]
    if isinstance(value, list | tuple):
        return [p for i, v in enumerate(value) for p in unsafe_values(v, f"{key}[{i}]")]
    if isinstance(value, _PLAIN):
        return []
    return [
        config_problem(
            key,
            f"holds a {type(value).__name__} object, not plain data (a '!!python/...' YAML tag?).",
            fix="give only strings, numbers, booleans, lists and mappings; Python tags are never evaluated.",
        )
    ]


def check_config_file(path: str | os.PathLike) -> list[str]:
    """Refuse a config/overlay file that plain safe YAML cannot load, or that asks for templating."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark else ""
        tag = " It uses a Python tag, which is refused, never executed." if "python/" in str(err) else ""
        return [
            str(
                input_error(
                    f"the config file is not plain safe YAML{where}: {str(err).splitlines()[0]}.{tag}",
                    path=path,
                    fix="remove '!!python/...' tags and fix the YAML syntax; values are data, never code.",
                )
            )
        ]
    if isinstance(data, Mapping) and "__use_yte__" in data:
        return [
            str(
                input_error(
                    "the config file asks for YTE templating (__use_yte__), which evaluates Python code.",
                    path=path,
                    fix="remove __use_yte__ and give plain values.",
                )
            )
        ]
    return []


def resolve(path: str, base_dir: Path | None) -> Path:
    """A config path: absolute, else relative to the working directory, else to ``base_dir``."""
    p = Path(path)
    if p.is_absolute() or p.exists() or base_dir is None:
        return p.resolve()
    candidate = base_dir / p
    return candidate.resolve() if candidate.exists() else p.resolve()


def _file_problem(key: str, path: Path, what: str) -> str | None:
    if not path.exists():
        return config_problem(
            key, f"the {what} does not exist.", path=path, fix=f"correct {key} in the config."
        )
    kind = special_file_kind(path) or ("a directory" if path.is_dir() else None)
    if kind:
        return config_problem(
            key,
            f"the {what} is {kind}, not a regular file; it was not opened.",
            path=path,
            fix=f"point {key} at a file.",
        )
    return None


def check_signatures(
    config: Mapping, base_dir: Path | None, sample_genes: Mapping[str, tuple[str, list[str]]]
):
    """(problems, warnings) for score.user_signatures, score.signatures and score.hsc_signature.

    ``sample_genes``: sample -> (species, gene symbols as ingest names them) from the cheap peeks. A user
    signature none of whose genes is measured in any sample is refused; one below score.min_coverage
    everywhere gets a warning (its scores will be NaN, as README says).
    """
    from hscseq.genes import SPECIES
    from hscseq.score import load_signatures, read_signature_file, resolve_genes

    score = config.get("score") or {}
    problems: list[str] = []
    warnings: list[str] = []
    user = []
    for i, entry in enumerate(score.get("user_signatures") or []):
        key = f"score.user_signatures[{i}]"
        path = resolve(str(entry), base_dir)
        bad = _file_problem(key, path, "signature file")
        if bad:
            problems.append(bad)
            continue
        try:
            user.extend(read_signature_file(path, species=score.get("user_species")))
        except HscseqInputError as exc:
            problems.append(f"config key {key!r}, {exc}")
        except (OSError, UnicodeDecodeError, TypeError, AttributeError, ValueError) as exc:
            problems.append(
                config_problem(
                    key, f"the signature file is malformed ({exc}).", path=path, fix="give GMT or YAML."
                )
            )
    min_cov = float(score.get("min_coverage", 0.5))
    for sig in user:
        coverage = []
        for species, symbols in sample_genes.values():
            if species in SPECIES and symbols:
                found, _ = resolve_genes(list(sig.up), symbols, source=sig.species, target=species)
                coverage.append(len(found) / max(len(sig.up), 1))
        if not coverage:
            continue
        if max(coverage) == 0:
            problems.append(
                config_problem(
                    "score.user_signatures",
                    f"signature {sig.name!r} ({sig.species}, {len(sig.up)} genes, e.g. {list(sig.up[:3])}): "
                    "none of its genes is measured in any sample.",
                    path=sig.origin,
                    fix="check the gene symbols and the signature's species (score.user_species).",
                )
            )
        elif max(coverage) < min_cov:
            warnings.append(
                f"config key 'score.user_signatures', file {sig.origin!r}: signature {sig.name!r} has "
                f"at most {max(coverage):.0%} of its genes measured (score.min_coverage {min_cov:g}); "
                "its scores will be NaN."
            )
    if not any(p.startswith("config key 'score.user_signatures") for p in problems):
        paths = [resolve(str(p), base_dir) for p in score.get("user_signatures") or []]
        for key, names in (("score.signatures", score.get("signatures")), ("score.hsc_signature", None)):
            try:
                available = load_signatures(paths, user_species=score.get("user_species"))
            except HscseqInputError as exc:
                problems.append(f"config key {key!r}: {exc}")
                break
            wanted = (
                list(names or []) if key == "score.signatures" else [score.get("hsc_signature", "hsc_native")]
            )
            unknown = [n for n in wanted if n not in available]
            if unknown:
                hint = "".join(_did_you_mean(n, available) for n in unknown)
                problems.append(
                    config_problem(
                        key,
                        f"signature(s) {unknown} are not in the library or the user files{hint}.",
                        fix=f"choose among {sorted(available)} or add them through score.user_signatures.",
                    )
                )
    return problems, warnings


def check_hsc_coverage(
    config: Mapping,
    base_dir: Path | None,
    sample_genes: Mapping[str, tuple[str, list[str]]],
    sample_paths: Mapping[str, str],
) -> list[str]:
    """The HSC signature (``score.hsc_signature``) must be scorable, or the score stage stops the run.

    Samples are merged on the genes they all share, so the signature's coverage in the merged data is at most
    its coverage in any one sample (``sample_genes``: gene names as ingest reads them, Ensembl IDs looked up
    and aliases resolved; ``integrate.exclude_genes`` left out). Coverage and "scorable" are the score
    stage's own rule (:func:`hscseq.score.scoring._map_signature`). A sample below ``score.min_coverage`` is
    a problem naming the sample, its file and the genes it lacks.
    """
    from hscseq.genes import SPECIES
    from hscseq.score import load_signatures
    from hscseq.score.scoring import _map_signature

    score = config.get("score") or {}
    name = str(score.get("hsc_signature", "hsc_native"))
    min_cov = float(score.get("min_coverage", 0.5))
    excluded = [str(g) for g in (config.get("integrate") or {}).get("exclude_genes") or []]
    paths = [resolve(str(p), base_dir) for p in score.get("user_signatures") or []]
    species_of = {sp for sp, names in sample_genes.values() if sp in SPECIES and names}
    try:
        sigs = {
            sp: load_signatures(paths, species=sp, user_species=score.get("user_species"))
            for sp in species_of
        }
    except HscseqInputError:
        return []  # reported by check_signatures
    problems = []
    for sample, (species, names) in sample_genes.items():
        sig = sigs.get(species, {}).get(name)
        if sig is None:
            continue
        _, _, row = _map_signature(name, sig, list(names), species, excluded, min_coverage=min_cov)
        if row["scored"]:
            continue
        missing = [m for m in row["missing_genes"].split(",") if m and "ortholog" not in m][:8]
        problems.append(
            str(
                input_error(
                    f"the HSC signature {name!r} ({sig.species}, {row['n_genes']} genes) has only "
                    f"{row['n_measured']} ({row['coverage']:.0%}) of its genes measured here, below "
                    f"score.min_coverage {min_cov:g}; samples are merged on the genes they all share, so the "
                    f"score stage could not score it (missing e.g. {', '.join(missing)}).",
                    sample=sample,
                    path=sample_paths.get(sample),
                    fix="give the sample's full gene list (not a filtered subset), or lower "
                    "score.min_coverage (e.g. 0.3) to score on fewer genes, or choose another "
                    "score.hsc_signature.",
                )
            )
        )
    return problems


def check_reference(config: Mapping, base_dir: Path | None) -> tuple[list[str], list[str] | None]:
    """(problems, reference labels) for fidelity.reference: an h5ad with counts and the label column(s)."""
    from hscseq.validate._base import Peek, _Bad
    from hscseq.validate._hdf5 import _h5ad_labels, _peek_h5ad

    fid = config.get("fidelity") or {}
    if not fid.get("reference"):
        return [], None
    key = "fidelity.reference"
    path = resolve(str(fid["reference"]), base_dir)
    bad = _file_problem(key, path, "reference h5ad")
    if bad:
        return [bad], None
    peek = Peek()
    try:
        _peek_h5ad(path, peek, {}, config.get("ingest") or {})
        with h5py.File(path, "r") as f:
            problems, labels = [], None
            for opt in ("reference_label_key", "reference_stage_key", "reference_donor_key"):
                col = fid.get(opt) or ("cell_type" if opt == "reference_label_key" else None)
                if not col:
                    continue
                values = _h5ad_labels(f["obs"], col)
                if values is None:
                    cols = sorted(k for k in f["obs"] if not k.startswith("_"))
                    problems.append(
                        config_problem(
                            f"fidelity.{opt}",
                            f"{col!r} is not an obs column of the reference (columns: {cols}).",
                            path=path,
                            fix=f"set fidelity.{opt} to one of {cols}.",
                        )
                    )
                elif opt == "reference_label_key":
                    labels = values
    except _Bad as bad:
        return [config_problem(key, str(bad), path=path, fix=bad.fix)], None
    except (OSError, KeyError, ValueError) as exc:
        return [
            config_problem(
                key, f"the reference is not a readable h5ad ({exc}).", path=path, fix="give an .h5ad."
            )
        ], None
    return problems, labels


def check_hierarchy(config: Mapping, base_dir: Path | None, labels: Iterable[str]) -> list[str]:
    """Every config value under a key naming a (label) hierarchy: a child -> parent TSV, acyclic."""
    problems = []
    for section, values in config.items():
        if not isinstance(values, Mapping):
            continue
        for opt, value in values.items():
            if "hierarchy" not in str(opt) or not isinstance(value, str) or not value:
                continue
            key = f"{section}.{opt}"
            path = resolve(value, base_dir)
            bad = _file_problem(key, path, "label hierarchy")
            if bad:
                problems.append(bad)
                continue
            problems += _hierarchy_problems(key, path)
    return problems


def _hierarchy_problems(key: str, path: Path) -> list[str]:
    parent: dict[str, str] = {}
    fix = "write one 'child<TAB>parent' line per label (a header line child<TAB>parent is allowed)."
    lines = [
        ln for ln in path.read_text(errors="replace").splitlines() if ln.strip() and not ln.startswith("#")
    ]
    for n, line in enumerate(lines, start=1):
        fields = [f.strip() for f in line.split("\t")]
        if len(fields) != 2 or not all(fields):
            return [
                config_problem(
                    key, f"line {n} has {len(fields)} tab-separated fields, not 2.", path=path, fix=fix
                )
            ]
        if n == 1 and [f.lower() for f in fields] == ["child", "parent"]:
            continue
        if fields[0] in parent and parent[fields[0]] != fields[1]:
            return [config_problem(key, f"{fields[0]!r} has two parents.", path=path, fix=fix)]
        parent[fields[0]] = fields[1]
    for start in parent:
        seen, node = {start}, start
        while node in parent:
            node = parent[node]
            if node in seen:
                return [
                    config_problem(key, f"the hierarchy has a cycle through {node!r}.", path=path, fix=fix)
                ]
            seen.add(node)
    return [] if parent else [config_problem(key, "the hierarchy file is empty.", path=path, fix=fix)]


def distinct(values: Iterable[str]) -> list[str]:
    return sorted(set(np.asarray(list(values), dtype=str).tolist()))
