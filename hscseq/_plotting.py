"""One plotting convention for every figure (scanpy style): build a Figure, then ``show`` / ``save`` it; one
colour per cell type in every figure (:func:`palette`).

Library code never switches the matplotlib backend (a notebook keeps its own); headless runs get matplotlib's
automatic fallback to Agg, or the ``MPLBACKEND`` the user sets.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np

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


# Okabe & Ito 2008 and Paul Tol's "muted" scheme: distinguishable under the common colour-vision deficiencies
OKABE_ITO = ["#E69F00", "#56B4E9", "#009E73", "#F0E442", "#0072B2", "#D55E00", "#CC79A7", "#000000"]
TOL_MUTED = [
    "#332288",
    "#88CCEE",
    "#44AA99",
    "#117733",
    "#999933",
    "#DDCC77",
    "#CC6677",
    "#882255",
    "#AA4499",
]
NOVEL_COLOUR = "#BBBBBB"


#: Lighter (> 0) or darker (< 0) for each further round of the colours when there are more groups than colours
_ROUNDS = (0.0, 0.5, -0.4, 0.75)


def shade(colour: str, amount: float) -> str:
    """``colour`` (#RRGGBB) mixed with white (``amount`` > 0) or black (< 0); its hue stays."""
    rgb = np.array([int(colour[i : i + 2], 16) for i in (1, 3, 5)], dtype=float) / 255
    rgb = rgb + amount * (1 - rgb) if amount > 0 else rgb * (1 + amount)
    return "#" + "".join(f"{round(v * 255):02X}" for v in np.clip(rgb, 0, 1))


def palette(cell_types: Iterable[str], groups: Mapping[str, str] | None = None) -> dict[str, str]:
    """One fixed colour per cell type (sorted names, so every figure and the UMAP agree); novel is grey.

    Up to 16 types each get one of the colour-blind-safe colours. With more, colours would repeat: instead
    the types of one group (``groups``: type -> lineage, the composition table's ``lineage`` column) share
    their lineage's colour in shades from darker to lighter, so every type keeps a colour of its own and a
    lineage reads as one hue; a type outside ``groups`` is a group of its own, and each further round of
    the 16 colours is lighter or darker.
    """
    colours = OKABE_ITO[:7] + TOL_MUTED
    names = sorted({str(c) for c in cell_types if str(c) != "novel" and str(c) != "nan"})
    if len(names) <= len(colours):
        out = {c: colours[i] for i, c in enumerate(names)}
    else:
        members: dict[str, list[str]] = {}
        for c in names:
            members.setdefault(str((groups or {}).get(c, c)), []).append(c)
        out = {}
        for g, types in enumerate(members[k] for k in sorted(members)):
            rounds = g // len(colours)
            base = shade(colours[g % len(colours)], _ROUNDS[rounds % len(_ROUNDS)])
            steps = np.linspace(-0.35, 0.55, len(types)) if len(types) > 1 else [0.0]
            out.update({c: shade(base, float(a)) for c, a in zip(types, steps, strict=True)})
    out["novel"] = NOVEL_COLOUR
    return out


def lineage_groups(composition) -> dict[str, str] | None:
    """Type -> lineage from a composition table's ``lineage`` column (the fidelity stage writes it), for
    :func:`palette`; None without one (tables of older runs, notebook scorecards)."""
    if composition is None or "lineage" not in composition:
        return None
    return dict(zip(composition["cell_type"].astype(str), composition["lineage"].astype(str), strict=True))
