"""Format detection: where a Cell Ranger / STARsolo matrix folder is, and which format a path holds."""

from __future__ import annotations

import os
from pathlib import Path

import h5py

from hscseq._utils import input_error, special_file_kind
from hscseq.ingest._raw import _FORMAT_HELP, _HDF5_MAGIC, _first


def _mtx_dir(path: Path) -> Path | None:
    """The directory holding ``matrix.mtx[.gz]`` at or below a Cell Ranger / STARsolo output path."""
    candidates = [
        path,
        path / "filtered_feature_bc_matrix",
        path / "outs" / "filtered_feature_bc_matrix",
        path / "Solo.out" / "Gene" / "filtered",
        path / "Gene" / "filtered",
    ]
    for parent in (path / "filtered_gene_bc_matrices", path / "outs" / "filtered_gene_bc_matrices"):
        if parent.is_dir():
            candidates.extend(sorted(p for p in parent.iterdir() if p.is_dir()))
    for c in candidates:
        if c.is_dir() and _first(c, "matrix.mtx"):
            return c
    return None


def _is_starsolo(directory: Path) -> bool:
    parts = directory.resolve().parts
    return "Solo.out" in parts or (
        directory.parent.name in ("Gene", "GeneFull") and directory.name in ("filtered", "raw")
    )


def _refuse_special(path: Path, sample: str | None) -> None:
    """Refuse a FIFO, socket or device without opening it (opening a FIFO for reading would block)."""
    kind = special_file_kind(path)
    if kind is not None:
        raise input_error(
            f"the count matrix is {kind}, not a regular file or directory; it was not opened.",
            sample=sample,
            path=path,
            fix="point the 'path' column at the count-matrix file itself (copy streamed data to a "
            "file first).",
        )


def _require_input(path: Path, sample: str | None) -> None:
    """Refuse a count-matrix path that does not exist or is a special file (FIFO, device, ...)."""
    if not path.exists():
        raise input_error(
            "the count matrix does not exist.",
            sample=sample,
            path=path,
            fix="correct the 'path' column of the sample sheet.",
        )
    _refuse_special(path, sample)


def detect_format(path: str | os.PathLike, *, sample: str | None = None) -> str:
    """Detect the format of a count matrix cheaply (file signature, HDF5 top-level keys, names).

    Parameters
    ----------
    path
        File or directory of one sample.
    sample
        Sample name, used in error messages only.

    Returns
    -------
    One of :data:`FORMATS`.
    """
    path = Path(path)
    _require_input(path, sample)
    if path.is_dir():
        mtx = _mtx_dir(path)
        if mtx is None:
            raise input_error(
                "the directory holds no matrix.mtx(.gz) (not a 10x MTX or STARsolo folder).",
                sample=sample,
                path=path,
                fix=_FORMAT_HELP,
            )
        return "starsolo" if _is_starsolo(mtx) else "10x_mtx"
    try:
        with open(path, "rb") as fh:
            head = fh.read(8)
    except OSError as exc:
        raise input_error(
            f"the file cannot be read ({exc}).",
            sample=sample,
            path=path,
            fix="check the file's permissions and that it is fully copied.",
        ) from exc
    name = path.name.lower()
    if head == _HDF5_MAGIC:
        try:
            with h5py.File(path, "r") as f:
                keys = set(f.keys())
                if "matrix" in keys and isinstance(f["matrix"], h5py.Dataset):
                    return "loom"
                if "matrix" in keys or any(isinstance(f[k], h5py.Group) and "barcodes" in f[k] for k in keys):
                    return "10x_h5"
                if "X" in keys or "obs" in keys:
                    return "h5ad"
        except OSError as exc:
            raise input_error(
                f"the HDF5 file is corrupt or truncated ({exc}).",
                sample=sample,
                path=path,
                fix="copy the file again from its source and check its checksum.",
            ) from exc
        raise input_error(
            f"HDF5 file with unrecognised layout (top-level keys {sorted(keys)}).",
            sample=sample,
            path=path,
            fix=_FORMAT_HELP,
        )
    if name.endswith((".h5", ".h5ad", ".loom", ".hdf5")):
        raise input_error(
            "the file is not a valid HDF5 file (corrupt, truncated or mislabelled).",
            sample=sample,
            path=path,
            fix="copy the file again from its source.",
        )
    stem = name[:-3] if name.endswith(".gz") else name
    if stem.endswith(".csv"):
        return "csv"
    if stem.endswith((".tsv", ".txt", ".tab")):
        return "tsv"
    raise input_error("unknown count-matrix format.", sample=sample, path=path, fix=_FORMAT_HELP)
