"""``python -m hscseq.datasets {demo,organoid} DIR``: see :func:`hscseq.datasets.cli.main`."""

from hscseq.datasets.cli import main

if __name__ == "__main__":
    main()
