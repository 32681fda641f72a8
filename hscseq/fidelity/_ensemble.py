"""Mapping ensemble cores: kNN in two spaces, logistic regression on HVGs, sibling classifiers, pooling.

Pure numeric cores (arrays in, arrays out). Every member gives class probabilities; reference cells are
predicted out of fold (their fold held out, the member refitted), query cells by a member fitted on the whole
reference. Members are class-balanced (each reference type weighs the same), so a rare type is not outvoted
by an abundant neighbour.

Combination rule (log-linear pooling): ``log p(c | x) = sum_m w_m log p_m(c | x) + const``; the weights
``w_m >= 0`` are fitted by minimising the negative log-likelihood of the true labels of held-out reference
cells (out-of-fold predictions). Their sum acts as the inverse temperature, so the same fit weighs the
members and calibrates the pooled probability. The calibration is itself cross-fitted: the weights used to
score the held-out cells of fold ``f`` are fitted on the other folds only, so the reported expected
calibration error (:func:`expected_calibration_error`) is measured on cells the calibration never saw.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

import numpy as np
import scipy.sparse as sp

from hscseq._utils import capped_positions

logger = logging.getLogger(__name__)

EPS = 1e-4  # probability floor of a member before pooling (a single vote never means "impossible")

Member = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]


def balanced_knn_proba(
    train: np.ndarray, codes: np.ndarray, test: np.ndarray, n_classes: int, *, n_neighbors: int = 15
) -> np.ndarray:
    """Class-balanced kNN vote: each neighbour's vote is divided by its type's size in ``train``.

    Returns cells x classes probabilities (rows sum to 1).
    """
    from sklearn.neighbors import NearestNeighbors

    k = min(n_neighbors, len(train))
    _, idx = NearestNeighbors(n_neighbors=k).fit(train).kneighbors(test)
    return balanced_vote(codes[idx], codes, n_classes)


def balanced_vote(neighbor_codes: np.ndarray, train_codes: np.ndarray, n_classes: int) -> np.ndarray:
    """Class-balanced vote of cells x k neighbour codes, each vote divided by its type's size in
    ``train_codes`` (rows sum to 1)."""
    size = np.bincount(train_codes, minlength=n_classes).astype(float)
    weight = 1.0 / np.clip(size, 1.0, None)
    n, k = neighbor_codes.shape
    probs = np.zeros((n, n_classes))
    np.add.at(probs, (np.repeat(np.arange(n), k), neighbor_codes.ravel()), weight[neighbor_codes].ravel())
    return probs / np.clip(probs.sum(axis=1, keepdims=True), 1e-300, None)


def neighbour_vote(
    ref_neighbors: np.ndarray,
    query_neighbors: np.ndarray,
    codes: np.ndarray,
    folds: np.ndarray,
    n_classes: int,
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`out_of_fold` of the balanced kNN member from neighbours found already: ``ref_neighbors`` (each
    reference cell's k nearest reference cells outside its fold) and ``query_neighbors`` (each query cell's
    among every reference cell), as positions of ``codes``. The same probabilities as searching again."""
    if len(ref_neighbors) != len(codes):
        raise ValueError(f"neighbours of {len(ref_neighbors)} reference cells given for {len(codes)}")
    ref_probs = np.zeros((len(codes), n_classes))
    for f in np.unique(folds):
        held = folds == f
        ref_probs[held] = balanced_vote(codes[ref_neighbors[held]], codes[~held], n_classes)
    if len(query_neighbors) == 0:
        return ref_probs, np.zeros((0, n_classes))
    return ref_probs, balanced_vote(codes[query_neighbors], codes, n_classes)


def _column_sums(x) -> tuple[np.ndarray, np.ndarray]:
    """Per-column sum and sum of squares of cells x genes ``x`` (sparse or dense), accumulated in float64.

    A sparse ``x`` is never densified (its stored values are summed per column index).
    """
    if not sp.issparse(x):
        x = np.asarray(x)
        return x.sum(axis=0, dtype=np.float64), np.einsum("ij,ij->j", x, x, dtype=np.float64)
    x = sp.csr_matrix(x)
    if not x.has_canonical_format:
        x = x.copy()
        x.sum_duplicates()
    data = x.data.astype(np.float64)
    n = x.shape[1]
    return np.bincount(x.indices, weights=data, minlength=n), np.bincount(
        x.indices, weights=data**2, minlength=n
    )


def _standardise(train, test, clip: float = 10.0, *, block: int = 10_000) -> tuple[np.ndarray, np.ndarray]:
    """Scale genes to unit variance on ``train`` (centred on the train mean), clip at ``clip``.

    Values are computed in float32, ``block`` cells at a time. ``train`` comes back as float64, the dtype
    scikit-learn's lbfgs fits on, so the classifier does not copy it again: the peak is that one array (a
    float32 copy plus scikit-learn's float64 one before, 1.5x; 4.4 GB at 183,000 reference cells x 2,000
    HVGs). ``test`` stays float32 (prediction does not copy it).
    """
    total, total_sq = _column_sums(train)
    mean, sq = total / max(train.shape[0], 1), total_sq / max(train.shape[0], 1)
    std = np.sqrt(np.maximum(sq - mean**2, 0.0))
    std = np.where(std > 0, std, 1.0)
    mean32, std32 = mean.astype(np.float32), std.astype(np.float32)

    def scale(x, dtype) -> np.ndarray:
        out = np.empty(x.shape, dtype=dtype)
        for i in range(0, x.shape[0], block):
            part = x[i : i + block]
            dense = part.toarray() if sp.issparse(part) else np.array(part)  # a new array either way
            dense = dense.astype(np.float32, copy=False)
            dense -= mean32
            dense /= std32
            out[i : i + block] = np.clip(dense, -clip, clip, out=dense)
        return out

    return scale(train, np.float64), scale(test, np.float32)


def logistic_proba(
    train,
    codes: np.ndarray,
    test,
    n_classes: int,
    *,
    c: float = 1.0,
    max_cells: int | None = None,
    max_iter: int = 500,
    seed: int = 0,
) -> np.ndarray:
    """Class-balanced multinomial logistic regression (L2, ``C=c``) on standardised log-normalised genes.

    ``train`` / ``test`` are cells x genes (sparse or dense; densified one fold at a time, genes = HVGs).
    With ``max_cells`` the model trains on a seeded subsample of at most that many cells per class (smaller
    classes whole): a linear classifier over ~2,000 genes does not need every cell of a large reference
    (Garnett trains on at most 500 cells per type, CellTypist on mini-batches for large references), and the
    dense training matrix is cells x genes x 8 bytes (2.9 GB at 179,000 cells). Classes absent from
    ``train`` get probability 0.
    """
    from sklearn.linear_model import LogisticRegression

    if max_cells is not None and np.bincount(codes).max() > max_cells:
        rng = np.random.default_rng([seed, 31])
        groups = (np.flatnonzero(codes == k) for k in np.unique(codes))
        pos = capped_positions(groups, max_cells, rng)
        train, codes = train[pos], codes[pos]
    xtr, xte = _standardise(train, test)
    present = np.unique(codes)
    model = LogisticRegression(C=c, max_iter=max_iter, class_weight="balanced", random_state=seed)
    model.fit(xtr, codes)
    probs = np.zeros((xte.shape[0], n_classes))
    probs[:, present] = model.predict_proba(xte)
    return probs


def out_of_fold(
    member: Member, ref, codes: np.ndarray, folds: np.ndarray, query, n_classes: int
) -> tuple[np.ndarray, np.ndarray]:
    """Out-of-fold probabilities of reference cells and whole-reference probabilities of query cells."""
    ref_probs = np.zeros((len(codes), n_classes))
    for f in np.unique(folds):
        held = folds == f
        ref_probs[held] = member(ref[~held], codes[~held], ref[held])
    q = member(ref, codes, query) if query.shape[0] else np.zeros((0, n_classes))
    return ref_probs, q


def pool(member_probs: list[np.ndarray], weights: np.ndarray) -> np.ndarray:
    """Log-linear pooling ``softmax(sum_m w_m log(p_m + EPS))``."""
    logit = sum(w * np.log(p + EPS) for w, p in zip(weights, member_probs, strict=True))
    logit = logit - logit.max(axis=1, keepdims=True)
    out = np.exp(logit)
    return out / out.sum(axis=1, keepdims=True)


def fit_pool_weights(member_probs: list[np.ndarray], codes: np.ndarray) -> np.ndarray:
    """Non-negative pooling weights minimising the mean negative log-likelihood of ``codes``."""
    from scipy.optimize import minimize

    logs = np.stack([np.log(p + EPS) for p in member_probs])  # members x cells x classes
    rows = np.arange(len(codes))

    def nll(w: np.ndarray) -> tuple[float, np.ndarray]:
        z = np.tensordot(w, logs, axes=1)
        z = z - z.max(axis=1, keepdims=True)
        lse = np.log(np.exp(z).sum(axis=1))
        p = np.exp(z - lse[:, None])
        loss = float(np.mean(lse - z[rows, codes]))
        # d loss / d w_m = mean_i (E_p[log p_m] - log p_m(true))
        grad = np.einsum("ic,mic->m", p, logs) / len(codes) - logs[:, rows, codes].mean(axis=1)
        return loss, grad

    w0 = np.full(len(member_probs), 1.0 / len(member_probs))
    res = minimize(nll, w0, jac=True, method="L-BFGS-B", bounds=[(0.0, 50.0)] * len(member_probs))
    return np.asarray(res.x, dtype=float)


def cross_fitted_pool(
    member_probs: list[np.ndarray], codes: np.ndarray, folds: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Pooled held-out probabilities with weights fitted on the other folds; and weights from all folds."""
    out = np.zeros_like(member_probs[0])
    for f in np.unique(folds):
        held = folds == f
        w = fit_pool_weights([p[~held] for p in member_probs], codes[~held])
        out[held] = pool([p[held] for p in member_probs], w)
    return out, fit_pool_weights(member_probs, codes)


def expected_calibration_error(probs: np.ndarray, codes: np.ndarray, *, n_bins: int = 15) -> float:
    """Top-label ECE: sum over equal-width confidence bins of ``|accuracy - confidence| * share``."""
    table = reliability_table(probs, codes, n_bins=n_bins)
    return float(np.sum(np.abs(table["accuracy"] - table["confidence"]) * table["share"]))


def reliability_table(probs: np.ndarray, codes: np.ndarray, *, n_bins: int = 15) -> dict[str, np.ndarray]:
    """Per confidence bin: mean confidence, accuracy and share of cells (empty bins dropped)."""
    conf = probs.max(axis=1)
    hit = (probs.argmax(axis=1) == codes).astype(float)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    b = np.clip(np.digitize(conf, edges[1:-1]), 0, n_bins - 1)
    n = np.bincount(b, minlength=n_bins).astype(float)
    keep = n > 0
    cs = np.bincount(b, weights=conf, minlength=n_bins)
    hs = np.bincount(b, weights=hit, minlength=n_bins)
    return {
        "bin_low": edges[:-1][keep],
        "bin_high": edges[1:][keep],
        "confidence": (cs / np.clip(n, 1, None))[keep],
        "accuracy": (hs / np.clip(n, 1, None))[keep],
        "share": (n / max(len(conf), 1))[keep],
        "n_cells": n[keep],
    }


def ensemble_core(
    spaces: Mapping[str, tuple[object, object]],
    codes: np.ndarray,
    folds: np.ndarray,
    n_classes: int,
    *,
    n_neighbors: int,
    c: float,
    logreg_max_cells: int | None,
    n_sibling_genes: int,
    parent_of: np.ndarray | None = None,
    neighbors: Mapping[str, tuple[np.ndarray, np.ndarray]] | None = None,
    seed: int = 0,
) -> dict[str, object]:
    """Run the members, pool them with cross-fitted calibrated weights.

    ``spaces`` maps a member name to ``(reference matrix, query matrix)``; names starting with ``knn`` use
    :func:`balanced_knn_proba`, ``logreg`` uses :func:`logistic_proba` (at most ``logreg_max_cells`` training
    cells per type), ``sibling`` uses :func:`sibling_proba` (all genes; needs ``parent_of``). ``neighbors``
    maps a kNN member's name to the neighbours found already in its space with these folds and
    ``n_neighbors`` (:func:`neighbour_vote`): that member does not search again.

    Returns ``ref_probs`` (held-out, cross-fitted calibration), ``query_probs``, ``weights`` (name -> weight),
    ``member_ref_probs`` / ``member_query_probs`` (name -> array).
    """
    mem_ref, mem_q = {}, {}
    for name, (ref, query) in spaces.items():
        if name.startswith("knn") and neighbors and name in neighbors:
            mem_ref[name], mem_q[name] = neighbour_vote(*neighbors[name], codes, folds, n_classes)
            continue
        if name.startswith("knn"):

            def member(a, y, b):
                return balanced_knn_proba(a, y, b, n_classes, n_neighbors=n_neighbors)
        elif name.startswith("logreg"):

            def member(a, y, b):
                return logistic_proba(a, y, b, n_classes, c=c, max_cells=logreg_max_cells, seed=seed)
        elif name.startswith("sibling") and parent_of is not None:

            def member(a, y, b):
                return sibling_proba(a, y, b, n_classes, parent_of, n_genes=n_sibling_genes, seed=seed)
        else:
            raise ValueError(f"unknown ensemble member {name!r} (knn*, logreg*, sibling* with parent_of)")
        mem_ref[name], mem_q[name] = out_of_fold(member, ref, codes, folds, query, n_classes)
    names = list(spaces)
    ref_probs, w = cross_fitted_pool([mem_ref[n] for n in names], codes, folds)
    q_probs = pool([mem_q[n] for n in names], w)
    weights = dict(zip(names, w.tolist(), strict=True))
    logger.info("ensemble weights %s", weights)
    return {
        "ref_probs": ref_probs,
        "query_probs": q_probs,
        "weights": weights,
        "member_ref_probs": mem_ref,
        "member_query_probs": mem_q,
    }


def sibling_marker_genes(x, codes: np.ndarray, present, *, n_genes: int) -> np.ndarray:
    """The ``n_genes`` genes with the largest standardised mean difference between a child and its siblings.

    For each child ``k`` in ``present`` and gene ``g``: ``|mean_k - mean_rest| / (sqrt((var_k + var_rest) / 2)
    + 0.1)`` (population variances), maximised over the children. ``x`` (cells x genes of the siblings' cells,
    sparse or dense) is never densified: the statistics come from per-child sums and sums of squares, so
    memory is that of ``x`` plus a few gene-length vectors, whatever the number of genes.

    Returns the gene indices, best first.
    """
    n = x.shape[0]
    total, total_sq = _column_sums(x)
    score = np.zeros(x.shape[1])
    for k in present:
        rows = codes == k
        na, nb = int(rows.sum()), n - int(rows.sum())
        sa, qa = _column_sums(x[rows])
        ma, mb = sa / na, (total - sa) / max(nb, 1)
        va = np.maximum(qa / na - ma**2, 0.0)
        vb = np.maximum((total_sq - qa) / max(nb, 1) - mb**2, 0.0)
        score = np.maximum(score, np.abs(ma - mb) / (np.sqrt(0.5 * (va + vb)) + 0.1))
    return np.argsort(score)[::-1][:n_genes]


def sibling_proba(
    train,
    codes: np.ndarray,
    test,
    n_classes: int,
    parent_of: np.ndarray,
    *,
    n_genes: int = 25,
    c: float = 0.1,
    seed: int = 0,
) -> np.ndarray:
    """Local classifiers among siblings (types sharing a parent), on their own marker genes.

    For every parent with two or more child types in ``train``: the ``n_genes`` genes (of all genes in
    ``train``) with the largest standardised mean difference between each child and its siblings are picked
    on the training cells only; a class-balanced logistic regression on those genes, fitted on the siblings'
    cells, gives ``p(child | parent)`` for every test cell. Close subtypes differ in a few genes that the
    highly variable genes and the principal components of the whole reference miss.

    ``parent_of`` holds one parent code per class (a class without siblings: its own code). Returns a
    cells x classes array: ``p(child | parent) / n_parents`` for children, ``1 / n_parents`` for types
    without siblings, so in log-linear pooling the member informs only the choice among siblings.
    """
    from sklearn.linear_model import LogisticRegression

    parents = np.unique(parent_of)
    n_test = test.shape[0]
    out = np.ones((n_test, n_classes))
    for p in parents:
        children = np.flatnonzero(parent_of == p)
        present = [k for k in children if np.any(codes == k)]
        if len(children) < 2 or len(present) < 2:
            continue
        sel = np.isin(codes, present)
        xs, ys = train[sel], codes[sel]
        genes = sibling_marker_genes(xs, ys, present, n_genes=n_genes)
        xt = test[:, genes]
        xtr, xte = _standardise(xs[:, genes], xt.toarray() if sp.issparse(xt) else np.asarray(xt))
        model = LogisticRegression(C=c, max_iter=500, class_weight="balanced", random_state=seed)
        model.fit(xtr, ys)
        out[:, children] = 0.0
        out[:, model.classes_] = model.predict_proba(xte)
    return out / len(parents)
