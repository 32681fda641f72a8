"""Mapping benchmark: hscseq against what users would pick instead, printed side by side (issue #14).

``python -m hscseq.fidelity.benchmark [--datasets paul15 simulator] [--seeds 0 1] [--no-scanvi]
[--scvi-epochs N] [--out table.tsv]``

Methods, all trained on the same reference cells and given the same query cells:

``hscseq (ensemble, default)``
    :func:`hscseq.fidelity.map_to_reference` with its defaults (``label_method="ensemble"``: class-balanced
    kNN in the integrated latent and in the uncorrected PCA, logistic regression on log-normalised HVGs,
    local classifiers among sibling types, log-linear pooling calibrated on held-out reference cells; label
    hierarchy: uncertain fine label, sure parent -> ``"<parent> (uncertain)"``; distance-based novelty).
``hscseq kNN labels (label_method=knn)``
    the same call with the kNN vote of the integrated latent as labels (the labels before issue #14).
``PCA+kNN(15)``
    scanpy recipe: log-normalise, 2,000 HVGs of the reference, scale, 50 PCs fitted on the reference, query
    projected, majority vote of 15 nearest reference cells; a cell is unassigned (novel) when its mean
    distance to them exceeds the 99th percentile of the reference cells' own (leave-one-out) distances.
``CellTypist 1.7.1, trained on the reference``
    the real ``celltypist`` (optional extra ``bench``): ``celltypist.train`` with its default options on the
    reference cells' log1p expression normalised to 10,000 counts (all genes; it standardises, clips at 10 and
    fits one-vs-rest L2 logistic regression, C = 1), then ``celltypist.annotate(mode="prob match",
    p_thres=0.5)`` without majority voting: ``Unassigned`` (no class with probability > 0.5) counts as
    unassigned/novel, a multi-label call (``"A|B"``) counts as a wrong fine label. No published model is
    downloaded.
``scANVI (default epochs)``
    scVI then scANVI with scvi-tools' default settings, epochs included (scVI: min(400, 20,000 / cells
    x 400); scANVI after a pretrained scVI: 10) trained on reference (labelled) plus query (unlabelled) cells;
    the cell is unassigned when its largest probability is < 0.5. With ``--scvi-epochs N`` scVI trains N
    epochs and the row is named ``scANVI (scVI N epochs)``. The same scVI latent is the integrated latent of
    both hscseq columns (the pipeline's integrate stage trains scVI on all samples); with ``--no-scanvi`` a
    PCA stand-in (:func:`hscseq.sweeps.build_fidelity_input`) is used instead.

Datasets: (a) real paul15 (``tests/data/paul15.h5ad``) split in two stratified halves; the reference half
loses the monocyte clusters (14Mo, 15Mo), which must come out novel; (b) the simulator (two in vivo donors as
reference, an in vivo query with skewed composition and the engineered sample with off-target states) with
close subtypes added: three types split in two subtypes differing by 5 genes at 2-fold (binomial thinning of
those genes' counts by 1/2 in subtype ``a``; exact for negative-binomial counts).

Metrics over query cells: ``fine_bacc`` balanced accuracy over the true types of known cells (unassigned,
novel and coarse labels count wrong); ``coarse`` share of known cells given a coarser label; ``unassigned``
share of known cells called novel/unassigned; ``novel_f1`` F1 of novel/unassigned calls against the truth;
``comp_mae`` mean absolute error of the query's type composition (novel as its own category; coarse cells
spread over the parent's types in proportion to their probabilities); ``ece`` expected calibration error of
the top label on known query cells (15 bins).
"""

from __future__ import annotations

import argparse
import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from hscseq.fidelity import _ensemble as ens
from hscseq.fidelity import hierarchy as hier

logger = logging.getLogger(__name__)

NOVEL = "novel"
PAUL15 = Path(__file__).resolve().parents[2] / "tests" / "data" / "paul15.h5ad"
CLOSE_PAIRS = ("GMP", "erythroid", "monocyte")


# ---------------------------------------------------------------------------------------------------------
# metrics


def metrics(
    pred: np.ndarray,
    truth: np.ndarray,
    novel_truth: np.ndarray,
    *,
    fine: np.ndarray,
    conf: np.ndarray,
    coarse: np.ndarray,
    comp: pd.Series,
) -> dict[str, float]:
    """Metrics of one method over the query (module doc); ``fine``/``conf``: top label, its probability."""
    from sklearn.metrics import balanced_accuracy_score

    known = ~novel_truth
    called_novel = pred == NOVEL
    tp = np.sum(called_novel & novel_truth)
    f1 = 2 * tp / max(2 * tp + np.sum(called_novel & ~novel_truth) + np.sum(~called_novel & novel_truth), 1)
    hit = (pred == truth)[known]
    true_comp = pd.Series(np.where(novel_truth, NOVEL, truth)).value_counts(normalize=True)
    cats = sorted(set(true_comp.index) | set(comp.index))
    mae = float(np.mean(np.abs(comp.reindex(cats).fillna(0) - true_comp.reindex(cats).fillna(0))))
    return {
        "fine_bacc": float(balanced_accuracy_score(truth[known], np.where(hit, truth[known], "__wrong__")))
        if known.any()
        else np.nan,
        "coarse": float(coarse[known].mean()) if known.any() else np.nan,
        "unassigned": float(called_novel[known].mean()) if known.any() else np.nan,
        "novel_f1": float(f1) if novel_truth.any() else np.nan,
        "comp_mae": mae,
        "ece": _ece(conf[known], (fine == truth)[known]),
    }


def _ece(conf: np.ndarray, hit: np.ndarray, n_bins: int = 15) -> float:
    b = np.clip((conf * n_bins).astype(int), 0, n_bins - 1)
    n = np.bincount(b, minlength=n_bins)
    gap = np.abs(np.bincount(b, hit.astype(float), n_bins) - np.bincount(b, conf, n_bins))
    return float(gap.sum() / max(n.sum(), 1))


def label_composition(pred: np.ndarray) -> pd.Series:
    return pd.Series(pred).value_counts(normalize=True)


# ---------------------------------------------------------------------------------------------------------
# baselines (numeric; X = log-normalised cells x genes)


def pca_knn(xr, yr: np.ndarray, xq, *, n_hvg_mask: np.ndarray, n_comps: int = 50, k: int = 15):
    """Scanpy-style PCA + kNN(15) majority vote; novel when farther than the reference's 99th percentile."""
    from sklearn.neighbors import NearestNeighbors

    xr_s, xq_s = ens._standardise(xr[:, n_hvg_mask], xq[:, n_hvg_mask])
    mean = xr_s.mean(axis=0)
    _, _, vt = np.linalg.svd(xr_s - mean, full_matrices=False)
    pcs = vt[: min(n_comps, vt.shape[0])].T
    er, eq = (xr_s - mean) @ pcs, (xq_s - mean) @ pcs
    nn = NearestNeighbors(n_neighbors=k + 1).fit(er)
    dr, _ = nn.kneighbors(er)
    cut = np.quantile(dr[:, 1:].mean(axis=1), 0.99)
    dq, iq = nn.kneighbors(eq, n_neighbors=k)
    classes, codes = np.unique(yr, return_inverse=True)
    votes = np.zeros((len(eq), len(classes)))
    np.add.at(votes, (np.repeat(np.arange(len(eq)), k), codes[iq].ravel()), 1.0 / k)
    pred = classes[votes.argmax(axis=1)].astype(object)
    fine = pred.copy()
    pred[dq.mean(axis=1) > cut] = NOVEL
    return pred, fine, votes.max(axis=1)


def celltypist_prob_match(xr, yr: np.ndarray, xq, genes: Sequence[str]):
    """Real CellTypist trained on the reference (default options); ``prob match`` at 0.5, no majority voting.

    ``xr``/``xq``: log1p expression normalised to 10,000 counts (cells x all genes). Returns the call
    (``Unassigned`` -> :data:`NOVEL`; multi-label calls ``"A|B"`` kept as they are), the best-match label and
    its probability.
    """
    import celltypist

    var = pd.DataFrame(index=pd.Index([str(g) for g in genes]))
    ref = ad.AnnData(X=sp.csr_matrix(xr, dtype=np.float32), var=var)
    model = celltypist.train(ref, labels=np.asarray(yr).astype(str))
    query = ad.AnnData(X=sp.csr_matrix(xq, dtype=np.float32), var=var.copy())
    res = celltypist.annotate(query, model=model, mode="prob match", p_thres=0.5, majority_voting=False)
    call = res.predicted_labels["predicted_labels"].astype(str).to_numpy().astype(object)
    prob = res.probability_matrix
    fine = prob.columns.to_numpy().astype(object)[prob.to_numpy().argmax(axis=1)]
    pred = np.where(call == "Unassigned", NOVEL, call).astype(object)
    logger.info(
        "CellTypist: %d query cells unassigned, %d with several labels",
        int((call == "Unassigned").sum()),
        sum("|" in c for c in call),
    )
    return pred, fine, prob.to_numpy().max(axis=1)


def scvi_scanvi(
    counts, labels: np.ndarray, batch: np.ndarray, *, seed: int, max_epochs: int | None
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """scVI on all cells (query labelled ``Unknown``), then scANVI; scvi-tools' defaults.

    ``max_epochs``: scVI's epochs (``None``: scvi-tools' default); scANVI always trains its default epochs.
    Returns the scVI latent, scANVI soft predictions and their class order.
    """
    import scvi
    import torch

    scvi.settings.seed = seed
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        a = ad.AnnData(X=sp.csr_matrix(counts, dtype=np.float32))
        a.obs["_batch"] = pd.Categorical(np.asarray(batch).astype(str))
        a.obs["_label"] = pd.Categorical(np.asarray(labels).astype(str))
        multi = a.obs["_batch"].nunique() > 1
        scvi.model.SCVI.setup_anndata(a, batch_key="_batch" if multi else None, labels_key="_label")
        kw = {"accelerator": "cpu", "enable_progress_bar": False}
        vae = scvi.model.SCVI(a)
        vae.train(max_epochs=max_epochs, **kw)  # None: scvi-tools' default, min(400, 20,000 / cells x 400)
        latent = vae.get_latent_representation()
        lvae = scvi.model.SCANVI.from_scvi_model(vae, unlabeled_category="Unknown")
        lvae.train(**kw)  # scANVI's own default epochs (10 after a pretrained scVI)
        logger.info(
            "scVI trained %d epochs, scANVI %d (%d cells)",
            len(vae.history["elbo_train"]),
            len(lvae.history["elbo_train"]),
            a.n_obs,
        )
        p = lvae.predict(soft=True)
    finally:
        torch.set_num_threads(threads)
    return latent, p.to_numpy(), [str(c) for c in p.columns]


# ---------------------------------------------------------------------------------------------------------
# datasets


def _log_normalise(adata: ad.AnnData) -> None:
    import scanpy as sc

    adata.layers["counts"] = adata.X.copy()
    sc.pp.normalize_total(adata, target_sum=1e4)
    sc.pp.log1p(adata)


def paul15_task(
    seed: int = 0, *, path: Path = PAUL15, held_out: Sequence[str] = ("14Mo", "15Mo")
) -> tuple[ad.AnnData, dict[str, str]]:
    """paul15 in two stratified halves; the reference half without ``held_out``. Returns (joint, hierarchy).

    The hierarchy is the published one (cluster -> ``cell_type``, e.g. 1Ery..6Ery -> Ery) for types with two
    or more clusters.
    """
    import scanpy as sc

    a = ad.read_h5ad(path)
    a.X = sp.csr_matrix(a.X, dtype=np.float32)
    rng = np.random.default_rng(seed)
    half = np.zeros(a.n_obs, dtype=int)
    for _, idx in a.obs.groupby("paul15_clusters", observed=True).indices.items():
        idx = rng.permutation(idx)
        half[idx[len(idx) // 2 :]] = 1
    cl = a.obs["paul15_clusters"].astype(str).to_numpy()
    is_ref = (half == 0) & ~np.isin(cl, list(held_out))
    keep = is_ref | (half == 1)
    joint = a[keep].copy()
    is_ref = is_ref[keep]
    _log_normalise(joint)
    # features over all cells, as the pipeline's integrate stage picks them (reference and query samples)
    hv = sc.pp.highly_variable_genes(
        joint, n_top_genes=2000, flavor="seurat_v3", layer="counts", inplace=False
    )["highly_variable"].to_numpy()
    joint.var["highly_variable"] = hv
    joint.obs["reference_label"] = pd.Series(
        np.where(is_ref, cl[keep], None), index=joint.obs_names, dtype=object
    )
    joint.obs["truth"] = cl[keep]
    joint.obs["novel_truth"] = ~is_ref & np.isin(cl[keep], list(held_out))
    joint.obs["sample"] = np.where(is_ref, "reference", "query")
    joint.obs["batch"] = "paul15"
    joint.obs["donor"] = ""
    types = joint.obs.groupby("paul15_clusters", observed=True)["cell_type"].first().astype(str)
    multi = types[types.duplicated(keep=False)]
    return joint, dict(multi.items())


def _close_subtypes(sims: dict[str, ad.AnnData], seed: int, *, n_genes: int = 5, fold: float = 2.0) -> None:
    """Split each of :data:`CLOSE_PAIRS` into ``<type>_a``/``<type>_b``.

    ``n_genes`` genes are thinned by ``1/fold`` in ``_a`` (binomial thinning: exact for NB counts).
    Reference donors 50/50, query samples 25/75.
    """
    from hscseq import datasets

    rng = np.random.default_rng([seed, 14])
    first = next(iter(sims.values()))
    programme = {g for p in datasets.PROGRAMMES.values() for g in p}
    ref = ad.concat([s for s in sims.values() if s.obs["condition"].iloc[0] == "in_vivo"])
    genes = {}
    for t in CLOSE_PAIRS:
        m = np.asarray(ref[ref.obs["true_cell_type"] == t].X.mean(axis=0)).ravel()
        ok = [
            i
            for i, g in enumerate(first.var_names)
            if g not in programme and 0.5 <= m[i] <= 5 and not g.startswith(("mt-", "Rp"))
        ]
        genes[t] = rng.choice(ok, size=n_genes, replace=False)
    for _name, s in sims.items():
        share_b = 0.5 if s.obs["condition"].iloc[0] == "in_vivo" else 0.75
        x = sp.csr_matrix(s.X).tolil()
        types = s.obs["true_cell_type"].astype(str).to_numpy().astype(object)
        for t in CLOSE_PAIRS:
            idx = np.flatnonzero(types == t)
            b = rng.random(len(idx)) < share_b
            types[idx[b]] = f"{t}_b"
            types[idx[~b]] = f"{t}_a"
            for i in idx[~b]:
                row = np.asarray(x[i, genes[t]].toarray()).ravel().astype(int)
                x[i, genes[t]] = rng.binomial(row, 1.0 / fold)
        s.X = sp.csr_matrix(x, dtype=np.float32)
        s.obs["true_cell_type"] = types


def simulator_task(
    seed: int, *, n_ref: int = 900, n_query: int = 700, n_engineered: int = 700
) -> tuple[ad.AnnData, dict[str, str]]:
    """Two in vivo donors (reference), a skewed in vivo query and the engineered sample; close subtypes added.

    Hierarchy: ``<type>_a``/``<type>_b`` -> ``<type>`` (what a user would write for subtypes).
    """
    from hscseq import datasets
    from hscseq.sweeps import build_fidelity_input

    skewed = {
        **datasets.REFERENCE_COMPOSITION,
        "GMP": 0.2,
        "erythroid": 0.25,
        "HSC": 0.03,
        "neutrophil": 0.06,
    }
    specs = [
        *datasets.reference_specs(n_ref),
        datasets.SampleSpec(
            sample="query_invivo", condition="engineered", n_cells=n_query, composition=skewed, batch="query"
        ),
        datasets.engineered_spec(n_engineered),
    ]
    sims = datasets.simulate(specs, seed=seed)
    _close_subtypes(sims, seed)
    joint = build_fidelity_input(sims, seed=seed)
    joint.obs["truth"] = joint.obs["true_cell_type"].astype(str)
    joint.obs["novel_truth"] = joint.obs["is_offtarget"].to_numpy(dtype=bool)
    hierarchy = {f"{t}_{s}": t for t in CLOSE_PAIRS for s in "ab"}
    return joint, hierarchy


# ---------------------------------------------------------------------------------------------------------
# running the methods


def _hscseq_composition(adata: ad.AnnData, q: np.ndarray) -> pd.Series:
    """Query composition at the sure level, by the scorecard's rule (:func:`hier.composition_weights`)."""
    classes = list(adata.uns["mapping"]["labels"])
    lab = adata.obs["mapped_label"].astype(str).to_numpy()[q]
    w = hier.composition_weights(
        adata.obsm["mapping_probabilities"][q],
        classes,
        adata.uns["mapping"]["hierarchy"],
        adata.obs["mapped_coarse"].to_numpy(dtype=bool)[q],
    )
    counts = pd.Series(w[lab != NOVEL].sum(axis=0), index=classes)
    counts[NOVEL] = float((lab == NOVEL).sum())  # novel: its own category
    counts = counts[counts > 0]
    return counts / counts.sum()


def run_task(
    joint: ad.AnnData,
    hierarchy: dict[str, str],
    *,
    seed: int,
    scanvi: bool,
    scvi_epochs: int | None,
) -> pd.DataFrame:
    """Every method on one reference/query task; one row per method."""
    from hscseq import fidelity as fid

    ref = joint.obs["reference_label"].notna().to_numpy()
    q = ~ref
    truth = joint.obs["truth"].astype(str).to_numpy()[q]
    novel_truth = joint.obs["novel_truth"].to_numpy(dtype=bool)[q]
    yr = joint.obs["reference_label"].astype(str).to_numpy()[ref]
    rows = []

    def add(name, pred, fine, conf, coarse=None, comp=None, seconds=np.nan):
        coarse = np.zeros(len(pred), bool) if coarse is None else coarse
        comp = label_composition(pred) if comp is None else comp
        m = metrics(pred, truth, novel_truth, fine=fine, conf=conf, coarse=coarse, comp=comp)
        rows.append({"method": name, **m, "seconds": seconds})

    x = sp.csr_matrix(joint.X)
    hv = joint.var["highly_variable"].to_numpy(dtype=bool)
    t0 = time.perf_counter()
    add("PCA+kNN(15)", *pca_knn(x[ref], yr, x[q], n_hvg_mask=hv), seconds=time.perf_counter() - t0)
    t0 = time.perf_counter()
    add(
        "CellTypist 1.7.1, trained on the reference",
        *celltypist_prob_match(x[ref], yr, x[q], joint.var_names),
        seconds=time.perf_counter() - t0,
    )
    if scanvi:
        t0 = time.perf_counter()
        labels = np.where(ref, joint.obs["reference_label"].astype(str), "Unknown")
        latent, p, order = scvi_scanvi(
            joint.layers["counts"],
            labels,
            joint.obs["batch"].astype(str).to_numpy(),
            seed=seed,
            max_epochs=scvi_epochs,
        )
        keep = [i for i, c in enumerate(order) if c != "Unknown"]
        p = p[:, keep] / np.clip(p[:, keep].sum(axis=1, keepdims=True), 1e-12, None)
        cls = np.array([order[i] for i in keep], dtype=object)
        fine = cls[p[q].argmax(axis=1)]
        pred = np.where(p[q].max(axis=1) < 0.5, NOVEL, fine)
        name = "scANVI (default epochs)" if scvi_epochs is None else f"scANVI (scVI {scvi_epochs} epochs)"
        add(name, pred, fine, p[q].max(axis=1), seconds=time.perf_counter() - t0)
        joint.obsm["X_integrated"] = latent
    t0 = time.perf_counter()
    fid.uncorrected_pca(joint, random_state=seed)
    if "X_integrated" not in joint.obsm:  # no scVI: the uncorrected PCA stands in (one batch, paul15)
        joint.obsm["X_integrated"] = joint.obsm["X_pca_uncorrected"]
    kw = {"distance_rep": "X_pca_uncorrected", "random_state": seed}
    knn = fid.map_to_reference(joint, label_method="knn", copy=True, **kw)
    add(
        "hscseq kNN labels (label_method=knn)",
        knn.obs["predicted_label"].astype(str).to_numpy()[q],
        knn.obs["closest_label"].astype(str).to_numpy()[q],
        knn.obs["label_confidence"].to_numpy()[q],
        seconds=time.perf_counter() - t0,
    )
    del knn
    t0 = time.perf_counter()
    fid.map_to_reference(joint, label_method="ensemble", hierarchy=hierarchy, **kw)
    add(
        "hscseq (ensemble, default)",
        joint.obs["mapped_label"].astype(str).to_numpy()[q],
        joint.obs["closest_label"].astype(str).to_numpy()[q],
        joint.obs["label_confidence"].to_numpy()[q],
        coarse=joint.obs["mapped_coarse"].to_numpy()[q],
        comp=_hscseq_composition(joint, q),
        seconds=time.perf_counter() - t0,
    )
    out = pd.DataFrame(rows)
    out["heldout_ece_hscseq"] = joint.uns["mapping"]["ece"]
    logger.info(
        "weights %s; member held-out bacc %s",
        joint.uns["mapping"]["weights"],
        joint.uns["mapping"]["member_heldout_bacc"],
    )
    return out


def run(
    datasets_: Sequence[str] = ("paul15", "simulator"),
    *,
    seeds: Sequence[int] = (0, 1),
    scanvi: bool = True,
    scvi_epochs: int | None = None,
) -> pd.DataFrame:
    """All tasks; one row per (dataset, seed, method)."""
    tables = []
    for name in datasets_:
        for seed in seeds if name == "simulator" else seeds[:1]:
            joint, hierarchy = paul15_task(seed) if name == "paul15" else simulator_task(seed)
            t = run_task(joint, hierarchy, seed=seed, scanvi=scanvi, scvi_epochs=scvi_epochs)
            t.insert(0, "seed", seed)
            t.insert(0, "dataset", name)
            tables.append(t)
            print(t.to_string(index=False, float_format=lambda v: f"{v:.3f}"), flush=True)
    return pd.concat(tables, ignore_index=True)


def main(argv: Sequence[str] | None = None) -> None:
    """Command line entry."""
    parser = argparse.ArgumentParser(
        prog="python -m hscseq.fidelity.benchmark", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--datasets", nargs="+", default=["paul15", "simulator"], choices=["paul15", "simulator"]
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--no-scanvi", action="store_true", help="skip scVI/scANVI (PCA stand-in latent)")
    parser.add_argument(
        "--scvi-epochs",
        type=int,
        default=None,
        help="scVI epochs instead of scvi-tools' default (the row says so)",
    )
    parser.add_argument("--out", default=None, help="also write the table here (TSV)")
    args = parser.parse_args(argv)
    os.environ.setdefault("MPLBACKEND", "Agg")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    for noisy in ("scvi", "lightning", "pytorch_lightning", "hscseq.fidelity", "anndata"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    table = run(
        args.datasets,
        seeds=args.seeds,
        scanvi=not args.no_scanvi,
        scvi_epochs=args.scvi_epochs,
    )
    print("\n== mapping benchmark ==")
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    if args.out:
        table.to_csv(args.out, sep="\t", index=False)


if __name__ == "__main__":
    main()
