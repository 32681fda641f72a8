"""Compare two ``results/tables`` directories: numeric columns to a tolerance, every other column exactly.

Usage::

    python tests/compare_tables.py BEFORE/results/tables AFTER/results/tables [--atol 1e-6] [--ignore N ...]

Every ``*.tsv`` / ``*.tsv.gz`` present in either directory is compared (a file missing on one side is a
difference): same columns in the same order, same number of rows, numeric columns equal within ``--atol``
(NaN equals NaN), all other columns equal as text. ``fidelity_controls.tsv`` is ignored by default (the
controls are the one intended behaviour change of issue #12). Exit status 0 when all agree, 1 otherwise.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

DEFAULT_IGNORE = ("fidelity_controls.tsv",)


def _read(path: Path) -> pd.DataFrame:
    try:
        return pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False, compression="infer")
    except pd.errors.EmptyDataError:  # an empty table (no columns), e.g. de.tsv without in vivo donors
        return pd.DataFrame()


def _numeric(col: pd.Series) -> np.ndarray | None:
    values = pd.to_numeric(col.replace({"": "nan"}), errors="coerce")
    ok = values.notna() | col.isin(["", "nan", "NaN"])
    return values.to_numpy(dtype=float) if bool(ok.all()) else None


def compare_table(a: Path, b: Path, *, atol: float = 1e-6) -> list[str]:
    """Differences between two TSV tables (empty list when they agree)."""
    ta, tb = _read(a), _read(b)
    if list(ta.columns) != list(tb.columns):
        return [f"{a.name}: columns differ: {list(ta.columns)} vs {list(tb.columns)}"]
    if len(ta) != len(tb):
        return [f"{a.name}: {len(ta)} vs {len(tb)} rows"]
    out = []
    for c in ta.columns:
        x, y = _numeric(ta[c]), _numeric(tb[c])
        if x is not None and y is not None:
            diff = np.abs(x - y)
            bad = ~((diff <= atol) | (np.isnan(x) & np.isnan(y)))
            if bad.any():
                i = int(np.flatnonzero(bad)[0])
                out.append(
                    f"{a.name}: column {c!r}: {int(bad.sum())} values differ by more than {atol:g} "
                    f"(max {np.nanmax(diff):.3g}; first row {i}: {x[i]!r} vs {y[i]!r})"
                )
        elif not ta[c].equals(tb[c]):
            bad = ta[c] != tb[c]
            i = int(np.flatnonzero(bad.to_numpy())[0])
            out.append(
                f"{a.name}: column {c!r}: {int(bad.sum())} values differ (first row {i}: "
                f"{ta[c].iloc[i]!r} vs {tb[c].iloc[i]!r})"
            )
    return out


def compare_dirs(
    a: Path, b: Path, *, atol: float = 1e-6, ignore: Sequence[str] = DEFAULT_IGNORE
) -> list[str]:
    """Differences between every table of two directories (empty list when they agree)."""
    names = sorted(
        {p.name for d in (a, b) for p in d.iterdir() if p.name.endswith((".tsv", ".tsv.gz"))} - set(ignore)
    )
    out = []
    for name in names:
        if not (a / name).is_file() or not (b / name).is_file():
            out.append(f"{name}: only in {a if (a / name).is_file() else b}")
            continue
        out += compare_table(a / name, b / name, atol=atol)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    parser.add_argument("--atol", type=float, default=1e-6)
    parser.add_argument("--ignore", nargs="*", default=list(DEFAULT_IGNORE))
    args = parser.parse_args(argv)
    diffs = compare_dirs(args.before, args.after, atol=args.atol, ignore=args.ignore)
    n = len([p for p in args.before.iterdir() if p.name.endswith((".tsv", ".tsv.gz"))])
    for line in diffs:
        print(line)
    print(
        f"{'DIFFERENT' if diffs else 'SAME'}: {n} tables in {args.before} (ignored: {', '.join(args.ignore)})"
    )
    return 1 if diffs else 0


if __name__ == "__main__":
    sys.exit(main())
