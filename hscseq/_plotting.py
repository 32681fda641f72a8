"""One plotting convention for every figure (scanpy style): build a Figure, then ``show`` / ``save`` it.

Library code never switches the matplotlib backend (a notebook keeps its own); headless runs get matplotlib's
automatic fallback to Agg, or the ``MPLBACKEND`` the user sets.
"""

from __future__ import annotations

import os
from pathlib import Path

from hscseq._utils import atomic_path


def finish(fig, *, show: bool | None = None, save: str | os.PathLike | None = None, dpi: int = 110):
    """Save ``fig`` to ``save`` (atomically; format from the suffix, PNG by default) and/or show it.

    Returns the Figure, or ``None`` when ``show=True`` (as scanpy's plotting functions do).
    """
    import matplotlib.pyplot as plt

    if save:
        fmt = Path(save).suffix.lstrip(".") or "png"
        with atomic_path(save) as tmp:
            fig.savefig(tmp, format=fmt, dpi=dpi, bbox_inches="tight")
    if show:
        plt.show()
        return None
    return fig


def save_and_close(fig, path: str | os.PathLike, *, dpi: int = 110) -> None:
    """Pipeline use: write ``fig`` to ``path`` atomically and release it."""
    import matplotlib.pyplot as plt

    finish(fig, save=path, dpi=dpi)
    plt.close(fig)
