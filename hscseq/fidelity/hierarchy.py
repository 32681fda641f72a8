"""Label hierarchy: a child -> parent map, read from a two-column TSV or built from the reference.

A hierarchy is a ``dict`` child -> parent; a label that is nobody's child is a root. It is used twice:

- :func:`roll_up` maps labels up the tree (e.g. the 43 HematoMap types to lineages, fine mapped types to
  their parents for a lineage-level composition);
- :func:`resolve_labels` gives a cell whose fine label is uncertain, but whose parent is sure, the label
  ``"<parent> (uncertain)"`` (parent probability = sum of its children's probabilities);
  :func:`composition_weights` then counts such a cell for its parent in a composition.

File format (:func:`load_hierarchy`): tab-separated, two columns ``child`` and ``parent`` (a header line with
exactly these names is optional; ``#`` starts a comment). Built from a reference (:func:`build_hierarchy`):
average-linkage clustering of the type centroids (mean log-normalised expression over HVGs, centred on the
mean of all types so shared baseline expression does not make every pair look alike; correlation distance);
two or more types whose centroids join below ``max_distance`` (default 0.3) share a parent named by their
joined names (``"GMP_a/GMP_b"``); other types are roots.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

UNCERTAIN = " (uncertain)"


def load_hierarchy(path: str | Path) -> dict[str, str]:
    """Read a two-column TSV child -> parent; raises ``ValueError`` naming the file and the fix."""
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"label hierarchy {p} does not exist; give a two-column TSV child<TAB>parent")
    table = pd.read_csv(p, sep="\t", header=None, comment="#", dtype=str, skip_blank_lines=True)
    if table.shape[1] != 2:
        raise ValueError(f"label hierarchy {p} has {table.shape[1]} columns; it needs two: child<TAB>parent")
    table = table.apply(lambda s: s.str.strip())
    if tuple(table.iloc[0].str.lower()) == ("child", "parent"):
        table = table.iloc[1:]
    if table.isna().any().any() or (table == "").any().any():
        raise ValueError(f"label hierarchy {p} has empty cells; every line needs child<TAB>parent")
    dup = table[0][table[0].duplicated()].unique()
    if len(dup):
        raise ValueError(f"label hierarchy {p}: child {dup[0]!r} has two parents; give one parent per child")
    hierarchy = dict(zip(table[0], table[1], strict=True))
    check_hierarchy(hierarchy, source=str(p))
    return hierarchy


def check_hierarchy(hierarchy: Mapping[str, str], *, source: str = "hierarchy") -> None:
    """Raise ``ValueError`` on a cycle or a self-parent."""
    for child in hierarchy:
        seen = {child}
        node = child
        while node in hierarchy:
            node = hierarchy[node]
            if node in seen:
                raise ValueError(
                    f"label {source}: cycle through {child!r}; a child cannot be its own ancestor"
                )
            seen.add(node)


def ancestors(label: str, hierarchy: Mapping[str, str]) -> list[str]:
    """``[label, parent, grandparent, ..., root]``."""
    out = [label]
    while out[-1] in hierarchy:
        out.append(hierarchy[out[-1]])
    return out


def roll_up(
    labels: Sequence[str] | np.ndarray | pd.Series, hierarchy: Mapping[str, str], level: int | str = 1
):
    """Map labels ``level`` steps up the hierarchy (``"root"``: to the top); roots stay as they are.

    A label ``"<parent> (uncertain)"`` stands for ``parent`` (it is already one step up). Labels missing from
    the hierarchy (``"novel"``) are returned unchanged. Returns the same kind as given (Series keeps its
    index; otherwise a numpy object array).
    """
    if not (level == "root" or (isinstance(level, int) and level >= 0)):
        raise ValueError(f"level must be a non-negative int or 'root', not {level!r}")
    cache: dict[str, str] = {}

    def up(lab: str) -> str:
        if lab not in cache:
            node, steps = (lab[: -len(UNCERTAIN)], 1) if lab.endswith(UNCERTAIN) else (lab, 0)
            chain = ancestors(node, hierarchy)
            want = len(chain) - 1 if level == "root" else max(int(level) - steps, 0)
            cache[lab] = chain[min(want, len(chain) - 1)]
        return cache[lab]

    values = [up(str(x)) for x in np.asarray(labels, dtype=object)]
    if isinstance(labels, pd.Series):
        return pd.Series(values, index=labels.index, name=labels.name)
    return np.array(values, dtype=object)


def build_hierarchy(centroids: np.ndarray, labels: Sequence[str], *, max_distance: float) -> dict[str, str]:
    """Parents from average-linkage clustering of type ``centroids`` (types x features).

    Centroids are centred on their mean over types; distance is ``1 - Pearson r``; types joined below
    ``max_distance`` form one parent. Returns child -> parent for the grouped types only. (Measured: the
    simulator's close subtypes join at 0.10-0.13, distinct types at >= 0.75; paul15's 2Ery-5Ery at <= 0.2.)
    """
    from scipy.cluster.hierarchy import fcluster, linkage

    labels = list(labels)
    if len(labels) < 2:
        return {}
    cen = np.asarray(centroids, dtype=float)
    z = linkage(cen - cen.mean(axis=0), method="average", metric="correlation")
    groups = fcluster(z, t=max_distance, criterion="distance")
    out: dict[str, str] = {}
    for g in np.unique(groups):
        members = [labels[i] for i in np.flatnonzero(groups == g)]
        if len(members) >= 2:
            parent = "/".join(members)
            out.update(dict.fromkeys(members, parent))
    return out


def parent_probabilities(
    probs: np.ndarray, classes: Sequence[str], hierarchy: Mapping[str, str]
) -> tuple[np.ndarray, np.ndarray]:
    """Probability of each class's parent (sum over its siblings, itself included) and the parent names."""
    parents = np.array([hierarchy.get(c, c) for c in classes], dtype=object)
    out = np.zeros_like(probs)
    for p in pd.unique(parents):
        sel = parents == p
        out[:, sel] = probs[:, sel].sum(axis=1, keepdims=True)
    return out, parents


def resolve_labels(
    probs: np.ndarray,
    classes: Sequence[str],
    hierarchy: Mapping[str, str],
    *,
    min_probability: float,
    min_parent_probability: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Fine label where sure; ``"<parent> (uncertain)"`` where the fine label is not but the parent is.

    A cell keeps its most probable fine type ``c`` when ``p(c) >= min_probability`` or ``c`` has no parent;
    otherwise it gets ``"<parent of c> (uncertain)"`` when the parent's probability is at least
    ``min_parent_probability``, and keeps ``c`` (reported with its low confidence) when neither is sure.
    Returns (labels, is_coarse).
    """
    best = probs.argmax(axis=1)
    cls = np.asarray(classes, dtype=object)
    p_best = probs[np.arange(len(best)), best]
    p_parent, parents = parent_probabilities(probs, classes, hierarchy)
    has_parent = np.array([c in hierarchy for c in classes])[best]
    pp = p_parent[np.arange(len(best)), best]
    coarse = has_parent & (p_best < min_probability) & (pp >= min_parent_probability)
    labels = cls[best].copy()
    labels[coarse] = np.array([f"{p}{UNCERTAIN}" for p in parents[best][coarse]], dtype=object)
    return labels, coarse


def composition_weights(
    probs: np.ndarray, classes: Sequence[str], hierarchy: Mapping[str, str], coarse: np.ndarray
) -> np.ndarray:
    """How much each cell counts for each fine type in a composition at the level it is sure of.

    A cell with a sure fine label counts 1 for its most probable type. A cell labelled
    ``"<parent> (uncertain)"`` (``coarse``, from :func:`resolve_labels`) counts 1 for its parent, spread over
    the parent's types in proportion to their calibrated probabilities: the expected number of cells of each
    type (probabilistic classify-and-count, Bella et al. 2010, doi:10.1109/ICDM.2010.75), so the parent's
    total is exact and no fine type gets a whole cell it is not sure of. Returns cells x types; rows sum to 1.
    """
    probs = np.asarray(probs, dtype=float)
    n, k = probs.shape
    best = probs.argmax(axis=1)
    weights = np.zeros((n, k))
    weights[np.arange(n), best] = 1.0
    coarse = np.asarray(coarse, dtype=bool)
    if coarse.any():
        parents = np.array([hierarchy.get(c, c) for c in classes], dtype=object)
        siblings = parents[best[coarse]][:, None] == parents[None, :]
        spread = np.where(siblings, probs[coarse], 0.0)
        total = spread.sum(axis=1, keepdims=True)
        weights[coarse] = np.where(total > 0, spread / np.where(total > 0, total, 1.0), weights[coarse])
    return weights
