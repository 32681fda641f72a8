"""QC stage: metrics, adaptive thresholds, doublets, cell cycle, filtering, and the stage functions.

Ground truth comes from the simulator (``hscseq.datasets``): ``is_low_quality``, ``is_doublet``,
``true_phase``.
"""

from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from hscseq import datasets
from hscseq._utils import HscseqInputError
from hscseq.qc import (
    adaptive_thresholds,
    cell_cycle_genes,
    combine_doublet_calls,
    detect_doublets,
    expected_doublet_rate,
    filter_cells,
    mad_bounds,
    qc_metrics,
    rank_call_count,
    rank_doublet_score,
    resolve_settings,
    run_qc,
    run_qc_summary,
    score_cell_cycle,
    top_calls,
)

# SOLO/scvi-tools and lightning emit these on a CPU-only machine with tiny data; they are not ours to fix.
LIGHTNING = [
    "ignore:.*srun.*:UserWarning",
    "ignore:.*log_every_n_steps.*:UserWarning",
    "ignore:.*num_workers.*:UserWarning",
    "ignore:.*litlogger.*:UserWarning",
]


@pytest.fixture(scope="module")
def demo_half():
    """The demo at 50% scale (300-750 cells per sample, 4% doublets and 4% low-quality cells planted)."""
    return datasets.demo(scale=0.5, seed=0)


def _sheet_row(adata: ad.AnnData, name: str) -> dict:
    obs = adata.obs
    return {
        "sample": name,
        "species": obs["species"].iloc[0],
        "condition": obs["condition"].iloc[0],
        "batch": obs["batch"].iloc[0],
    }


def _write_ingested(adata: ad.AnnData, path) -> None:
    """What ingest writes: CSR float32 raw counts, obs with sample metadata (truth kept for evaluation)."""
    out = adata.copy()
    out.X = sp.csr_matrix(out.X, dtype=np.float32)
    out.obs_names = [f"{out.obs['sample'].iloc[0]}:{b}" for b in out.obs_names]
    out.uns = {}
    out.write_h5ad(path)


# ----------------------------------------------------------------------------------------------------------
# metrics and thresholds


@pytest.mark.parametrize(
    ("name", "species", "mt_prefix"), [("invivo_donor1", "mouse", "mt-"), ("organoid_week2", "human", "MT-")]
)
def test_metrics_are_species_aware_and_flag_damaged_cells(demo_small, name, species, mt_prefix):
    adata = demo_small[name].copy()
    qc_metrics(adata, species=species)
    assert adata.var["mt"].sum() == 13
    assert all(g.startswith(mt_prefix) for g in adata.var_names[adata.var["mt"]])
    assert adata.var["ribo"].sum() >= 30
    # the metrics are what they claim: recompute two of them on a small dense slice
    cells = adata.obs_names[:20]
    dense = adata[cells].X.toarray()
    np.testing.assert_allclose(adata.obs.loc[cells, "total_counts"], dense.sum(1))
    mt = 100 * dense[:, adata.var["mt"].to_numpy()].sum(1) / dense.sum(1)
    np.testing.assert_allclose(adata.obs.loc[cells, "pct_counts_mt"], mt, rtol=1e-5)
    comp = adata.obs["complexity"]
    assert comp.between(0.3, 1.0).all()
    # planted damaged cells carry much more mitochondrial RNA
    lq = adata.obs["is_low_quality"].to_numpy()
    assert adata.obs["pct_counts_mt"][lq].median() > 3 * adata.obs["pct_counts_mt"][~lq].median()
    assert sp.issparse(adata.X)


def test_haemoglobin_share_is_highest_in_erythroid_cells(demo_small):
    adata = demo_small["invivo_donor1"].copy()
    qc_metrics(adata, species="mouse")
    assert {"Hbb-bs", "Hba-a1"} <= set(adata.var_names[adata.var["hb"]])
    hb = adata.obs.groupby("true_cell_type", observed=True)["pct_counts_hb"].median()
    assert hb.idxmax() == "erythroid"
    assert hb["erythroid"] > 10 * hb["T_NK"]


def test_mad_bounds():
    values = np.array([1.0, 2.0, 3.0, 4.0, 100.0])
    lo, hi = mad_bounds(values, 2)
    assert (lo, hi) == pytest.approx((3.0 - 2 * 1.4826, 3.0 + 2 * 1.4826))
    assert np.isnan(mad_bounds(np.array([np.nan]), 3)[0])


def test_adaptive_thresholds_overrides_and_mito_cap(toy):
    qc_metrics(toy, species="mouse")
    out = adaptive_thresholds(toy, copy=True)
    assert "qc_thresholds" not in toy.uns  # copy=True leaves the input alone
    thr = out.uns["qc_thresholds"]["thresholds"]
    assert thr["min_counts"] < toy.obs["total_counts"].median() < thr["max_counts"]
    assert set(out.uns["qc_thresholds"]["source"].values()) == {"adaptive"}
    # every planted damaged cell fails the mitochondrial threshold, (almost) no healthy one does
    lq = out.obs["is_low_quality"].to_numpy()
    assert out.obs["qc_high_pct_mt"][lq].all()
    # median + 3 MADs of log1p % mito: at most a few intact cells; on the linear scale the right-skewed
    # % mito of intact cells puts ~1% of them above median + 3 MADs
    assert out.obs["qc_high_pct_mt"][~lq].mean() < 0.005
    linear = adaptive_thresholds(toy, mito_scale="linear", copy=True)
    assert linear.uns["qc_thresholds"]["thresholds"]["max_pct_mt"] < thr["max_pct_mt"]
    assert linear.obs["qc_high_pct_mt"][lq].all()
    # the absolute cap binds when it is lower than median + 3 MADs
    assert (
        adaptive_thresholds(toy, mito_max_pct=2.0, copy=True).uns["qc_thresholds"]["thresholds"]["max_pct_mt"]
        == 2.0
    )
    # explicit values win and are recorded as such
    res = adaptive_thresholds(toy, min_counts=1234, max_pct_mt=50, copy=True)
    assert res.uns["qc_thresholds"]["thresholds"]["min_counts"] == 1234
    assert res.uns["qc_thresholds"]["source"]["min_counts"] == "config"
    assert res.uns["qc_thresholds"]["params"]["min_counts"] == 1234
    assert (res.obs["qc_low_counts"] == (res.obs["total_counts"] < 1234)).all()
    assert adaptive_thresholds(toy) is None and "qc_thresholds" in toy.uns


def test_settings_per_sample_overrides():
    settings = {"n_mads": 4, "mito_max_pct": 20, "per_sample": {"s1": {"mito_max_pct": 30}}}
    assert resolve_settings(settings, "s1")["mito_max_pct"] == 30
    assert resolve_settings(settings, "s2")["mito_max_pct"] == 20
    assert resolve_settings(settings, "s2")["n_mads"] == 4
    assert resolve_settings(settings, "s2")["mito_n_mads"] == 3  # default filled in
    assert resolve_settings(settings, "s2")["max_cells_per_lane"] == 10_000  # one 10x lane
    with pytest.raises(HscseqInputError, match=r"s1.*mito_max"):
        resolve_settings({"per_sample": {"s1": {"mito_max": 30}}}, "s1")


# ----------------------------------------------------------------------------------------------------------
# doublets


def test_doublet_combination_rules():
    a = np.array([True, True, False, False])
    b = np.array([True, False, True, False])
    assert combine_doublet_calls({"scrublet": a, "solo": b}, rule="union").tolist() == [1, 1, 1, 0]
    assert combine_doublet_calls({"scrublet": a, "solo": b}, rule="intersection").tolist() == [1, 0, 0, 0]
    assert combine_doublet_calls({"scrublet": a, "solo": b}, rule="solo").tolist() == b.tolist()
    with pytest.raises(HscseqInputError, match="rule"):
        combine_doublet_calls({"scrublet": a}, rule="vote")
    # the mean-rank score: a cell high in both methods outranks one high in only one
    scr = np.array([0.30, 0.25, 0.05, 0.02, 0.01, np.nan])
    solo = np.array([0.99, 0.10, 0.95, 0.20, 0.30, 0.40])
    combined = rank_doublet_score({"scrublet": scr, "solo": solo})
    assert combined.argmax() == 0 and combined[0] == pytest.approx(1.0)
    assert combined[5] < combined[1]  # NaN ranks lowest in that method
    assert top_calls(combined, 2).tolist() == [True, False, True, False, False, False]
    assert top_calls(combined, 0).sum() == 0 and top_calls(combined, 99).all()
    # the rank rule calls midway between Scrublet's count (5% x 0.4 x 1000 = 20) and its estimate (50)
    scrublet = {"estimated_rate": 0.05, "detectable_fraction": 0.4}
    assert rank_call_count(1000, scrublet, expected_rate=0.01) == 35
    assert rank_call_count(1000, None, expected_rate=0.01) == 10
    # 10x loading table: ~0.8% per 1,000 cells recovered
    assert expected_doublet_rate(5000) == pytest.approx(0.04)
    assert expected_doublet_rate(500) == pytest.approx(0.004)
    # multiplets form within a lane: a 25,000-cell sample spans lanes, so at most a full lane's rate
    assert expected_doublet_rate(25_000) == pytest.approx(0.08)
    ht = expected_doublet_rate(25_000, rate_per_1000_cells=0.004, max_cells_per_lane=20_000)
    assert ht == pytest.approx(0.08)
    assert expected_doublet_rate(25_000, max_cells_per_lane=50_000) == pytest.approx(0.2)


def test_scrublet_runs_on_5k_cells():
    """Guard against the scipy 1.17 break of scrublet (csr_array.getnnz; see pyproject's scipy pin).

    pynndescent only hands back a ``csr_array`` on larger inputs, so this needs >= 5,000 cells.
    """
    spec = datasets.SampleSpec(
        sample="big",
        condition="in_vivo",
        n_cells=5000,
        composition=datasets.REFERENCE_COMPOSITION,
        batch="b1",
        median_umis=1500,
    )
    adata = datasets.simulate([spec], n_genes=800, seed=1)["big"]
    detect_doublets(adata, methods=["scrublet"], rule="scrublet", random_state=0)
    truth = adata.obs["is_doublet"].to_numpy()
    score = adata.obs["scrublet_score"].to_numpy()
    called = adata.obs["predicted_doublet"].to_numpy()
    assert adata.uns["doublets"]["expected_rate"] == pytest.approx(0.04)
    # doublets score higher than singlets, and the calls are mostly true doublets
    assert np.median(score[truth]) > np.quantile(score[~truth], 0.9)
    assert called.sum() > 0.2 * truth.sum()
    assert (called & truth).sum() / called.sum() > 0.8


def test_scrublet_matches_scanpy_without_its_dense_zscore(capfd):
    """hscseq's Scrublet (sparse z-scoring, ARPACK PCA centred implicitly) scores exactly as scanpy's.

    scanpy.pp.scrublet densifies (1 + sim ratio) x cells x HVGs several times (17.6 GB at 25,000 cells);
    the same steps without it must not change a single score. It logs X once, so without scanpy's
    spurious "already log-transformed" warning in every QC log.
    """
    import scanpy as sc

    from hscseq.qc.scrublet import _run_scrublet

    spec = datasets.SampleSpec(
        sample="s", condition="in_vivo", n_cells=1500, composition=datasets.REFERENCE_COMPOSITION, batch="b1"
    )
    adata = datasets.simulate([spec], n_genes=800, seed=2)["s"]
    ours, _, info = _run_scrublet(adata, rate=0.03, seed=3, n_prin_comps=10, sim_doublet_ratio=4)
    assert "already log-transformed" not in capfd.readouterr().err
    theirs = ad.AnnData(sp.csr_matrix(adata.X, dtype=np.float32), obs=pd.DataFrame(index=adata.obs_names))
    with np.errstate(divide="ignore", invalid="ignore"):
        sc.pp.scrublet(
            theirs, expected_doublet_rate=0.03, threshold=1.0, n_prin_comps=10, log_transform=True,
            sim_doublet_ratio=4, use_approx_neighbors=False, random_state=3,
        )  # fmt: skip
    np.testing.assert_allclose(ours, theirs.obs["doublet_score"].to_numpy(), rtol=1e-6, atol=1e-9)
    sim = theirs.uns["scrublet"]["doublet_scores_sim"]
    assert info["detectable_fraction"] == pytest.approx(np.mean(sim > info["threshold"]))
    truth = adata.obs["is_doublet"].to_numpy()
    assert np.median(ours[truth]) > np.quantile(ours[~truth], 0.9)


def test_scrublet_scores_observed_cells_alike_when_only_some_simulated_doublets_are_scored():
    """``qc.scrublet_max_sim_scored``: observed cells' scores do not depend on how many simulated doublets
    are scored (each cell's neighbours are searched among all of them); the threshold comes from the
    seeded subsample's scores."""
    from hscseq.qc.scrublet import _run_scrublet

    spec = datasets.SampleSpec(
        sample="s", condition="in_vivo", n_cells=1500, composition=datasets.REFERENCE_COMPOSITION, batch="b1"
    )
    adata = datasets.simulate([spec], n_genes=800, seed=2)["s"]
    kw = {"rate": 0.03, "seed": 3, "n_prin_comps": 10, "sim_doublet_ratio": 4}
    full, _, info_full = _run_scrublet(adata, max_sim_scored=None, **kw)
    some, _, info_some = _run_scrublet(adata, max_sim_scored=1500, **kw)
    np.testing.assert_array_equal(full, some)
    assert info_some["sim_scored"] == 1500 < info_full["sim_scored"] == 4 * len(full)
    assert info_some["detectable_fraction"] == pytest.approx(info_full["detectable_fraction"], abs=0.05)


# ----------------------------------------------------------------------------------------------------------
# cell cycle


@pytest.mark.parametrize(("name", "species"), [("invivo_donor1", "mouse"), ("organoid_week2", "human")])
def test_cell_cycle_phase_matches_truth(demo_small, name, species):
    adata = demo_small[name].copy()
    score_cell_cycle(adata, species=species, random_state=0)
    s_genes, g2m_genes = cell_cycle_genes(species)
    assert len(adata.uns["cell_cycle"]["s_genes"]) >= 30
    assert len(adata.uns["cell_cycle"]["g2m_genes"]) >= 40
    assert not set(s_genes) & set(g2m_genes)
    if species == "human":
        assert "CENPU" in s_genes  # the renamed MLF1IP is found under its current symbol
    truth = adata.obs["true_phase"].astype(str).to_numpy()
    phase = adata.obs["phase"].astype(str).to_numpy()
    accuracy = (truth == phase).mean()
    assert accuracy > 0.85, accuracy
    assert adata.obs.loc[truth == "S", "S_score"].median() > adata.obs.loc[truth == "G1", "S_score"].median()
    assert (
        adata.obs.loc[truth == "G2M", "G2M_score"].median()
        > adata.obs.loc[truth == "G1", "G2M_score"].median()
    )


def test_cell_cycle_too_few_genes_is_recorded(toy):
    sub = toy[:, [g for g in toy.var_names if g not in set(cell_cycle_genes("mouse")[0])]].copy()
    score_cell_cycle(sub, species="mouse")
    assert (sub.obs["phase"] == "unknown").all()
    assert "S" in sub.uns["cell_cycle"]["warning"]


# ----------------------------------------------------------------------------------------------------------
# filtering and the stage functions


def test_filter_refuses_to_lose_a_sample_silently(toy):
    qc_metrics(toy, species="mouse")
    adaptive_thresholds(toy, min_counts=1e9)
    toy.obs["predicted_doublet"] = False
    with pytest.raises(HscseqInputError, match=r"'donor_x'.*low_counts"):
        filter_cells(toy, sample="donor_x", max_removed_fraction=0.5, copy=True)
    adaptive_thresholds(toy, min_counts=float(toy.obs["total_counts"].quantile(0.6)))
    out = filter_cells(toy, sample="donor_x", continue_on_excess_removal=True, copy=True)
    flags = toy.obs[[c for c in toy.obs if c.startswith("qc_")]].to_numpy().any(axis=1)
    assert out.n_obs == (~flags).sum() < 0.5 * toy.n_obs
    assert out.uns["qc_filter"]["removed"]["low_counts"] == toy.obs["qc_low_counts"].sum()
    assert (
        "donor_x" in out.uns["qc_filter"]["warnings"][0]
        or "low_counts" in out.uns["qc_filter"]["warnings"][0]
    )


SAMPLES = ("invivo_donor1", "engineered_7TF", "organoid_week2")


@pytest.fixture(scope="module")
def qc_run(demo_half, tmp_path_factory):
    """run_qc with default settings on two mouse samples and one human sample; per-cell truth vs. account."""
    import warnings

    tmp = tmp_path_factory.mktemp("qc")
    frames, paths = [], {}
    with warnings.catch_warnings():
        for spec in LIGHTNING:
            _, message, _category = spec.split(":")
            warnings.filterwarnings("ignore", message=message, category=UserWarning)
        for name in SAMPLES:
            adata = demo_half[name]
            _write_ingested(adata, tmp / f"{name}.in.h5ad")
            p = {k: str(tmp / f"{name}.{k}") for k in ("h5ad", "tsv", "png", "cells.tsv.gz")}
            run_qc(
                h5ad=str(tmp / f"{name}.in.h5ad"),
                filtered=p["h5ad"],
                summary=p["tsv"],
                figure=p["png"],
                cells=p["cells.tsv.gz"],
                sample=_sheet_row(adata, name),
                settings={"per_sample": {}},
            )
            cells = pd.read_csv(p["cells.tsv.gz"], sep="\t", index_col="cell")
            cells["is_low_quality"] = adata.obs["is_low_quality"].to_numpy()
            cells["is_doublet"] = adata.obs["is_doublet"].to_numpy()
            cells["sample"] = name
            frames.append(cells)
            paths[name] = p
    return pd.concat(frames), paths


def _precision_recall(removed: np.ndarray, bad: np.ndarray) -> tuple[float, float]:
    tp = (removed & bad).sum()
    return tp / max(removed.sum(), 1), tp / max(bad.sum(), 1)


def test_run_qc_outputs(qc_run, demo_half):
    cells, paths = qc_run
    for name, p in paths.items():
        out = ad.read_h5ad(p["h5ad"])
        account = cells[cells["sample"] == name]
        # the filtered file holds exactly the kept cells with every contracted column
        assert out.n_obs == account["kept"].sum() and sp.issparse(out.X)
        for col in (
            "total_counts",
            "n_genes_by_counts",
            "pct_counts_mt",
            "pct_counts_ribo",
            "pct_counts_hb",
            "complexity",
            "doublet_score",
            "predicted_doublet",
            "S_score",
            "G2M_score",
            "phase",
        ):
            assert col in out.obs, col
        assert not out.obs["predicted_doublet"].any()
        record = out.uns["hscseq"]["qc"]
        assert set(record["thresholds"]) == {
            "min_counts",
            "max_counts",
            "min_genes",
            "max_genes",
            "max_pct_mt",
        }
        assert (out.obs["pct_counts_mt"] <= record["thresholds"]["max_pct_mt"]).all()
        summary = pd.read_csv(p["tsv"], sep="\t")
        assert (
            summary.loc[0, "cells_in"] == demo_half[name].n_obs and summary.loc[0, "cells_out"] == out.n_obs
        )
        assert summary.loc[0, "removed_total"] == (~account["kept"]).sum()
        assert summary.loc[0, "removed_doublet"] == account["predicted_doublet"].sum()
        assert summary.loc[0, "doublets_scrublet"] == account["scrublet_doublet"].sum()
        assert Path(p["png"]).stat().st_size > 10_000
        # phase agrees with the simulated phase on the kept cells
        truth = demo_half[name].obs.loc[[c.split(":", 1)[1] for c in out.obs_names], "true_phase"]
        assert (truth.astype(str).to_numpy() == out.obs["phase"].astype(str).to_numpy()).mean() > 0.9

    run_qc_summary(summaries=[p["tsv"] for p in paths.values()], table=str(Path(p["tsv"]).parent / "all.tsv"))
    table = pd.read_csv(Path(p["tsv"]).parent / "all.tsv", sep="\t")
    assert table["sample"].tolist() == list(SAMPLES)
    assert {
        "doublets_scrublet",
        "doublets_solo",
        "doublet_rate_combined",
        "removed_high_pct_mt",
        "threshold_max_pct_mt",
    } <= set(table.columns)


def test_run_qc_removes_low_quality_cells_and_calls_doublets_precisely(qc_run):
    cells, _ = qc_run
    removed = ~cells["kept"].to_numpy()
    lq = cells["is_low_quality"].to_numpy()
    dbl = cells["is_doublet"].to_numpy()
    # every planted damaged cell goes, for the mitochondrial criterion
    assert removed[lq].all()
    assert cells["fail_high_pct_mt"].to_numpy()[lq].mean() > 0.95
    # doublet calls are mostly true doublets, and each method on its own finds more than chance
    called = cells["predicted_doublet"].to_numpy(dtype=bool)
    assert (called & dbl).sum() / called.sum() >= 0.8
    for method in ("scrublet", "solo"):
        calls = cells[f"{method}_doublet"].fillna(False).to_numpy(dtype=bool)
        assert (calls & dbl).sum() / max(calls.sum(), 1) > 3 * dbl.mean(), method
    precision, recall = _precision_recall(removed, lq | dbl)
    assert precision >= 0.8, (precision, recall)


def test_issue4_target_precision_09_recall_08(qc_run):
    """Issue 4: planted low-quality cells and doublets removed with precision >= 0.9, recall >= 0.8.

    Evaluated on every planted doublet (not only the detectable ones), over three samples of the demo at
    half scale: two mouse, one human. Offline, on all five samples: seeds 0/1/2 at half scale gave
    precision 0.92/0.90/0.87 and recall 0.82/0.85/0.84; seed 0 at full scale 0.97/0.80 -- the bar is met
    at the edge, not with margin (doublet AUC of the combined score ~0.98; the count called is estimated).
    """
    cells, _ = qc_run
    removed = ~cells["kept"].to_numpy()
    bad = (cells["is_low_quality"] | cells["is_doublet"]).to_numpy()
    precision, recall = _precision_recall(removed, bad)
    assert precision >= 0.9 and recall >= 0.8, (precision, recall)
    # the doublet calls alone are mostly right and find most planted doublets
    dbl = cells["is_doublet"].to_numpy()
    called = cells["predicted_doublet"].to_numpy(dtype=bool)
    d_precision, d_recall = _precision_recall(called, dbl)
    assert d_precision >= 0.8 and d_recall >= 0.5, (d_precision, d_recall)


def test_run_qc_excess_removal_names_sample_and_criterion(demo_small, tmp_path):
    adata = demo_small["organoid_week4"]
    _write_ingested(adata, tmp_path / "in.h5ad")
    settings = {
        "doublet_methods": ["scrublet"],
        "doublet_rule": "scrublet",
        "per_sample": {"organoid_week4": {"max_pct_mt": 0.5}},
    }
    kw = {
        "h5ad": str(tmp_path / "in.h5ad"),
        "filtered": str(tmp_path / "out.h5ad"),
        "summary": str(tmp_path / "s.tsv"),
        "figure": str(tmp_path / "f.png"),
        "sample": _sheet_row(adata, "organoid_week4"),
    }
    with pytest.raises(HscseqInputError, match=r"organoid_week4.*high_pct_mt"):
        run_qc(**kw, settings=settings)
    assert not (tmp_path / "out.h5ad").exists()
    assert (tmp_path / "f.png").exists()  # the figure is there to see why
    settings["continue_on_excess_removal"] = True
    pct_mt = qc_metrics(adata, species="human", copy=True).obs["pct_counts_mt"]
    settings["per_sample"]["organoid_week4"]["max_pct_mt"] = float(pct_mt.quantile(0.3))
    run_qc(**kw, settings=settings)
    summary = pd.read_csv(tmp_path / "s.tsv", sep="\t")
    assert summary.loc[0, "removed_fraction"] > 0.5
    assert "high_pct_mt" in summary.loc[0, "warnings"]
    assert summary.loc[0, "threshold_max_pct_mt_source"] == "config"


# ----------------------------------------------------------------------------------------------------------
# plate-based samples (issue #13)


def test_plate_sample_no_loading_rate_doublets(tmp_path):
    """A plate (one cell per well) is not a droplet run: no doublet removal unless a rate is set."""
    plate = datasets.plate_sample(60, n_genes=20_000, seed=1)
    plate = plate[:, ~plate.var_names.str.startswith("ERCC-")].copy()
    plate.X.data = np.rint(plate.X.data)  # what ingest does for technology=plate
    plate.X.eliminate_zeros()
    _write_ingested(plate, tmp_path / "in.h5ad")
    row = {**_sheet_row(plate, "plate_hsc"), "technology": "plate"}
    files = {k: str(tmp_path / f"out.{k}") for k in ("h5ad", "tsv", "png")}
    kw = {"h5ad": str(tmp_path / "in.h5ad"), "filtered": files["h5ad"], "summary": files["tsv"]}
    run_qc(**kw, figure=files["png"], sample=row, settings={"per_sample": {}})
    out = ad.read_h5ad(files["h5ad"])
    record = out.uns["hscseq"]["qc"]
    assert record["technology"] == "plate"
    assert record["removed"].get("doublet", 0) == 0
    assert any("plate-based" in w for w in record["warnings"])
    # depth thresholds follow the plate's read depth (hundreds of thousands), not UMI-scale defaults
    assert record["thresholds"]["min_counts"] > 10_000
    assert out.n_obs >= 0.8 * plate.n_obs
    # an explicit rate turns doublet calling back on for this sample
    # (kept for inspection only here: Scrublet on 60 plate cells flags most of them)
    settings = {
        "doublet_methods": ["scrublet"],
        "remove_doublets": False,
        "per_sample": {"plate_hsc": {"expected_doublet_rate": 0.05}},
    }
    run_qc(**kw, figure=files["png"], sample=row, settings=settings)
    again = ad.read_h5ad(files["h5ad"]).uns["hscseq"]["qc"]
    assert not any("plate-based" in w for w in again["warnings"])
    assert "scrublet" in again["doublets"]["methods"]
    # as a droplet run larger than one lane (qc.max_cells_per_lane) it gets a full lane's rate
    lane = {"doublet_rate_per_1000_cells": 0.5, "max_cells_per_lane": 20}
    settings = {"doublet_methods": ["scrublet"], "remove_doublets": False, **lane, "per_sample": {}}
    run_qc(**kw, figure=files["png"], sample={**row, "technology": "droplet"}, settings=settings)
    droplet = ad.read_h5ad(files["h5ad"]).uns["hscseq"]["qc"]
    assert droplet["doublets"]["expected_rate"] == pytest.approx(0.5 * 20 / 1000)
