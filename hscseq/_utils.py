"""Small helpers shared by every stage: errors, atomic writes, resource paths."""

from __future__ import annotations

import contextlib
import gzip
import io
import logging
import os
import shutil
import stat
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

logger = logging.getLogger(__name__)

_PACKAGE_DIR = Path(__file__).resolve().parent


class HscseqInputError(ValueError):
    """Bad input: the message names the sample, the file, what is wrong and what to do."""


def input_error(
    what: str, *, sample: str | None = None, path: str | os.PathLike | None = None, fix: str | None = None
) -> HscseqInputError:
    """Build an :class:`HscseqInputError` with a uniform message layout."""
    parts = []
    if sample is not None:
        parts.append(f"sample {sample!r}")
    if path is not None:
        parts.append(f"file {str(path)!r}")
    where = ", ".join(parts)
    msg = f"{where}: {what}" if where else what
    if fix:
        msg += f" What to do: {fix}"
    return HscseqInputError(msg)


def special_file_kind(path: str | os.PathLike) -> str | None:
    """What ``path`` is if it exists but is neither a regular file nor a directory (FIFO, socket, device).

    Uses ``stat`` only: a FIFO is never opened (opening one for reading blocks until a writer appears).
    Symbolic links are followed. ``None`` for regular files, directories and missing paths.
    """
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
        return None
    kinds = {
        stat.S_ISFIFO: "a FIFO (named pipe)",
        stat.S_ISSOCK: "a socket",
        stat.S_ISCHR: "a character device",
        stat.S_ISBLK: "a block device",
    }
    return next((name for test, name in kinds.items() if test(mode)), "not a regular file")


def resource_path(*parts: str) -> Path:
    """Path of a file shipped in ``resources/`` (repository checkout or installed wheel)."""
    for root in (_PACKAGE_DIR / "resources", _PACKAGE_DIR.parent / "resources"):
        candidate = root.joinpath(*parts)
        if candidate.exists():
            return candidate
    msg = f"resource {'/'.join(parts)!r} not found next to the hscseq package"
    raise FileNotFoundError(msg)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; move it into place only if the block succeeds.

    Works for files and directories. On failure nothing is left at ``path`` or beside it.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    tmp.unlink()
    try:
        yield tmp
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        os.replace(tmp, target)
    finally:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        elif tmp.exists():
            tmp.unlink()


#: Provenance JSON of the running Snakemake job (set by hscseq.workflow.run_from_snakemake when the rule has
#: a ``provenance`` input); every h5ad written by :func:`write_h5ad` then carries it in uns["hscseq"].
_PROVENANCE: str | None = None


def set_provenance(record_json: str | None) -> None:
    global _PROVENANCE
    _PROVENANCE = record_json


def write_h5ad(adata, path: str | os.PathLike) -> None:
    """Write ``adata`` to ``path`` atomically (gzip-free for speed), with the run's provenance if set."""
    if _PROVENANCE is not None:
        hscseq_uns = adata.uns.get("hscseq")
        if not isinstance(hscseq_uns, dict):
            hscseq_uns = adata.uns["hscseq"] = {}
        hscseq_uns["provenance"] = _PROVENANCE
    with atomic_path(path) as tmp:
        adata.write_h5ad(tmp.with_suffix(".h5ad"))
        tmp.with_suffix(".h5ad").rename(tmp)


def write_table(df, path: str | os.PathLike, **kwargs) -> None:
    """Write a pandas DataFrame as TSV (gzip when the name ends in .gz), atomically.

    The gzip header holds no time stamp and no file name, so equal tables are byte-identical files.
    """
    path = Path(path)
    with atomic_path(path) as tmp:
        if path.suffix != ".gz":
            df.to_csv(tmp, sep="\t", **kwargs)
            return
        with (
            open(tmp, "wb") as raw,
            gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as gz,
            io.TextIOWrapper(gz, encoding="utf-8", newline="") as text,
        ):
            df.to_csv(text, sep="\t", **kwargs)


#: Stored values inspected by :func:`check_raw_counts` and the tolerance of "integer".
RAW_COUNT_VALUES = 1_000_000
RAW_COUNT_TOLERANCE = 1e-3


def check_raw_counts(
    x, *, what: str, fix: str, sample: str | None = None, path: str | os.PathLike | None = None
) -> None:
    """The one raw-count check: raise :class:`HscseqInputError` when ``x`` holds negative or non-integers.

    Looks at the first :data:`RAW_COUNT_VALUES` stored values (sparse ``data``; never densifies a sparse
    matrix) and allows :data:`RAW_COUNT_TOLERANCE` of rounding error.
    """
    import numpy as np
    import scipy.sparse as sp

    data = x.data if sp.issparse(x) else np.asarray(x).ravel()
    values = np.asarray(data[:RAW_COUNT_VALUES])
    if values.size and (
        np.any(values < 0) or np.any(np.abs(values - np.round(values)) > RAW_COUNT_TOLERANCE)
    ):
        raise input_error(
            f"{what} does not hold raw counts (negative or non-integer values).",
            sample=sample,
            path=path,
            fix=fix,
        )


def capped_positions(groups: Iterable[np.ndarray], cap: int, rng: np.random.Generator) -> np.ndarray:
    """Sorted positions keeping at most ``cap`` of each group's positions (``groups``: arrays of positions,
    drawn in the order given, without replacement, with ``rng``); smaller groups stay whole."""
    import numpy as np

    keep = [pos if len(pos) <= cap else rng.choice(pos, size=cap, replace=False) for pos in groups]
    return np.sort(np.concatenate(keep)) if keep else np.arange(0)
