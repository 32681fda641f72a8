"""Provenance of a run: what made the results (software, config, inputs), without timestamps.

``results/provenance.json`` (rule ``provenance``) holds the hscseq and package versions, the platform, a hash
of the validated config (and the config itself), and the sha256 of every input: each sample's count matrix
(as recorded by ingest, which hashes the files it read) and every file the config names (signatures,
reference h5ad, label hierarchy). The same dict goes into the final h5ad's ``uns["hscseq"]["provenance"]``;
:func:`methods_lines` renders it for the report's Methods section.

Nothing here depends on the time or the machine's clock: two runs on the same inputs, config and software
give the same file.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
from collections.abc import Mapping, Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from hscseq._utils import atomic_path, input_error

logger = logging.getLogger(__name__)

#: Distributions whose versions are recorded (results depend on them).
PACKAGES = (
    "hscseq",
    "anndata",
    "scanpy",
    "scvi-tools",
    "torch",
    "lightning",
    "jax",
    "numpy",
    "scipy",
    "pandas",
    "scikit-learn",
    "h5py",
    "leidenalg",
    "igraph",
    "pynndescent",
    "umap-learn",
    "numba",
    "pydeseq2",
    "snakemake",
)
SCHEMA_VERSION = 1


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def sha256_path(path: str | os.PathLike) -> dict[str, str]:
    """sha256 of a file, or of every regular file below a directory (relative name -> digest)."""
    path = Path(path)
    if path.is_dir():
        return {str(p.relative_to(path)): sha256_file(p) for p in sorted(path.rglob("*")) if p.is_file()}
    return {path.name: sha256_file(path)}


def config_hash(config: Mapping[str, Any]) -> str:
    """sha256 of the config as canonical JSON (sorted keys): equal configs, equal hashes."""
    text = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def package_versions(names: Sequence[str] = PACKAGES) -> dict[str, str]:
    out = {}
    for name in names:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            continue
    return out


def _sample_inputs(ingested: Sequence[str | os.PathLike]) -> dict[str, dict]:
    """Per sample: source path, format, reader and sha256 of the files read, from each ingest h5ad's uns."""
    import h5py
    from anndata.io import read_elem

    out = {}
    for path in ingested:
        with h5py.File(path, "r") as f:
            if "uns/hscseq/ingest" not in f:
                raise input_error(
                    "the ingested h5ad has no uns['hscseq']['ingest'] record.", path=path, fix="rerun ingest."
                )
            info = read_elem(f["uns/hscseq/ingest"])
        sample = Path(path).name.removesuffix(".h5ad")
        out[sample] = {
            "source": str(info.get("source", "")),
            "format": str(info.get("format", "")),
            "reader": str(info.get("reader", "")),
            "sha256": str(info.get("sha256", "")),
            "files": {str(k): str(v) for k, v in dict(info.get("files", {})).items()},
        }
    return out


def _config_files(config: Mapping[str, Any], base_dir: Path | None) -> dict[str, dict[str, str]]:
    """sha256 of every file the config names (user signatures, reference h5ad, hierarchy TSVs)."""
    from hscseq.validate._config import resolve

    named: list[tuple[str, str]] = []
    score = config.get("score") or {}
    named += [
        (f"score.user_signatures[{i}]", str(p)) for i, p in enumerate(score.get("user_signatures") or [])
    ]
    for section, values in config.items():
        if not isinstance(values, Mapping):
            continue
        for key, value in values.items():
            if isinstance(value, str) and value and (key == "reference" or "hierarchy" in key):
                named.append((f"{section}.{key}", value))
    out = {}
    for key, value in named:
        path = resolve(value, base_dir)
        out[key] = {"path": str(path), **({"sha256": sha256_file(path)} if path.is_file() else {})}
    return out


def collect(
    config: Mapping[str, Any],
    *,
    ingested: Sequence[str | os.PathLike] = (),
    base_dir: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """The provenance record of a run (JSON-serialisable; no timestamps).

    Parameters
    ----------
    config
        The merged, validated config of the run.
    ingested
        Per-sample ingest h5ads (their ``uns["hscseq"]["ingest"]`` holds the input checksums).
    base_dir
        The hscseq checkout (relative config paths are looked up there after the working directory).
    """
    from hscseq import __version__

    return {
        "schema_version": SCHEMA_VERSION,
        "hscseq_version": __version__,
        "python": platform.python_version(),
        "platform": {"system": platform.system(), "machine": platform.machine()},
        "packages": package_versions(),
        "config_sha256": config_hash(config),
        "config": json.loads(json.dumps(config, default=str)),
        "inputs": _sample_inputs(ingested),
        "config_files": _config_files(config, Path(base_dir) if base_dir else None),
    }


def as_uns(record: Mapping[str, Any]) -> str:
    """The record as stored in ``uns["hscseq"]["provenance"]``: canonical JSON (h5ad cannot store nulls)."""
    return json.dumps(record, sort_keys=True)


def write(record: Mapping[str, Any], path: str | os.PathLike) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")


def load(path: str | os.PathLike) -> dict[str, Any]:
    return json.loads(Path(path).read_text())


def methods_lines(record: Mapping[str, Any]) -> list[str]:
    """Plain-text lines for a report's Methods section (hscseq renders them; nothing here is HTML)."""
    pkgs = record.get("packages", {})
    main = ", ".join(
        f"{k} {pkgs[k]}" for k in ("scanpy", "anndata", "scvi-tools", "torch", "snakemake") if k in pkgs
    )
    lines = [
        f"hscseq {record.get('hscseq_version', '?')} (Python {record.get('python', '?')}; {main}).",
        f"Config sha256 {record.get('config_sha256', '?')}.",
    ]
    for sample, info in sorted((record.get("inputs") or {}).items()):
        lines.append(
            f"Input {sample}: {info.get('source', '')} ({info.get('format', '')}), "
            f"sha256 {info.get('sha256', '')}."
        )
    for key, info in sorted((record.get("config_files") or {}).items()):
        lines.append(f"{key}: {info.get('path', '')}, sha256 {info.get('sha256', 'missing')}.")
    return lines


def run_provenance(
    *, ingested: Sequence[str], provenance: str, config: Mapping[str, Any], base_dir: str | None = None
) -> None:
    """Snakemake entry point: write ``results/provenance.json``."""
    record = collect(config, ingested=ingested, base_dir=base_dir)
    write(record, provenance)
    logger.info(
        "provenance: config %s, %d inputs -> %s",
        record["config_sha256"][:12],
        len(record["inputs"]),
        provenance,
    )
