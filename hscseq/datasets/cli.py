"""Command line of the simulator: ``python -m hscseq.datasets {demo,organoid} DIR``."""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Sequence
from pathlib import Path

from hscseq._utils import atomic_path
from hscseq.datasets.demo_files import ENGINEERED_DEMO_SAMPLES, write_demo, write_organoid_demo
from hscseq.datasets.writers import sha256sums

logger = logging.getLogger(__name__)


def main(argv: Sequence[str] | None = None) -> None:
    """Command line: ``python -m hscseq.datasets {demo,organoid} DIR [--sheet PATH] [--scale S] [--seed N]``.

    ``demo`` writes the engineered (mouse) scenario, ``organoid`` the human organoid scenario.
    """
    from hscseq import datasets  # the package docstring describes the command

    description = (datasets.__doc__ or "").split("\n")[0]
    parser = argparse.ArgumentParser(prog="python -m hscseq.datasets", description=description)
    parser.add_argument("what", choices=["demo", "organoid"])
    parser.add_argument("directory")
    parser.add_argument("--sheet", help="write the sample sheet here (TSV)")
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.what == "organoid":
        sheet = write_organoid_demo(args.directory, n_cells=max(60, round(500 * args.scale)), seed=args.seed)
    else:
        sheet = write_demo(args.directory, scale=args.scale, seed=args.seed, include=ENGINEERED_DEMO_SAMPLES)
    if args.sheet:
        # paths in a sample sheet are relative to the sheet's own directory
        sheet["path"] = [
            os.path.relpath(Path(x).resolve(), Path(args.sheet).resolve().parent) for x in sheet["path"]
        ]
        with atomic_path(args.sheet) as tmp:
            sheet.to_csv(tmp, sep="\t", index=False)
    for name, digest in sha256sums(args.directory).items():
        logger.info("%s  %s", digest, name)
