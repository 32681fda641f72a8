"""Fidelity stage: numeric cores, mapping and novelty, scorecard, controls, sweep on simulator truth.

The shared latent is the documented PCA stand-in of :func:`hscseq.sweeps.build_fidelity_input` (features as
the integrate stage picks them); the sweep module (``python -m hscseq.sweeps fidelity``) verifies on more
seeds and larger samples.
"""

import importlib

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from hscseq import HscseqInputError, datasets
from hscseq import fidelity as fid
from hscseq.sweeps import build_fidelity_input, composition_mae, composition_truth, fidelity_sweep, novel_f1

pytestmark = pytest.mark.filterwarnings(
    "ignore:.*(dispersion|overflow|invalid value).*:RuntimeWarning", "ignore::UserWarning"
)


def _organoid(tp: str, n: int) -> datasets.SampleSpec:
    return datasets.SampleSpec(
        sample=f"organoid_{tp}",
        condition="organoid",
        n_cells=n,
        composition=datasets.ORGANOID_COMPOSITIONS[tp],
        batch=f"organoid_{tp}",
        timepoint=tp,
        perturbation=0.15,
    )


@pytest.fixture(scope="module")
def mapped():
    """Two in vivo donors, the default engineered sample and two organoid timepoints, mapped and scored."""
    specs = [
        *datasets.reference_specs(500),
        datasets.engineered_spec(450),
        _organoid("week2", 350),
        _organoid("week4", 350),
    ]
    adata = build_fidelity_input(datasets.simulate(specs, seed=1), seed=1)
    fid.map_to_reference(adata, random_state=0)
    fid.scorecard(adata, n_bootstrap=30, random_state=0)
    return adata


def test_numeric_cores():
    probs = fid.knn_vote(np.array([[0, 0, 1], [2, 2, 2]]), 3)
    np.testing.assert_allclose(probs, [[2 / 3, 1 / 3, 0], [0, 0, 1]])
    assert fid.jensen_shannon(np.array([0.5, 0.5]), np.array([0.5, 0.5])) == pytest.approx(0)
    assert fid.jensen_shannon(np.array([1.0, 0.0]), np.array([0.0, 1.0])) == pytest.approx(1)
    # similarity: as far as two donors -> 1, twice as far -> 0.5
    np.testing.assert_allclose(fid.similarity_ratio(np.array([0.9, 0.8]), 0.9), [1.0, 0.5])
    # adjusted classify-and-count recovers the truth from a known confusion matrix
    confusion = np.array([[0.8, 0.2], [0.1, 0.9]])
    truth = np.array([0.3, 0.7])
    np.testing.assert_allclose(fid.correct_composition(confusion.T @ truth, confusion), truth, atol=1e-6)
    f = fid.weighted_fidelity_index(
        {"identity": 1.0, "similarity": np.nan, "programme": 0.5, "composition": 0.0},
        {"identity": 1, "similarity": 1, "programme": 1, "composition": 1},
    )
    assert float(f) == pytest.approx(0.5)  # NaN part left out, weights renormalised
    # two nulls: the threshold is the larger of the donor-null quantile and a low held-out-type quantile
    rng = np.random.default_rng(0)
    d0 = np.concatenate([rng.normal(1.0, 0.1, 500), rng.normal(5.0, 0.1, 500)])
    codes = np.repeat([0, 1], 500)
    absent = np.concatenate([rng.normal(3.0, 0.1, 500), rng.normal(4.0, 0.1, 500)])
    thr, _ = fid.novelty_thresholds(
        d0,
        codes,
        np.zeros(1000),
        2,
        quantile=0.99,
        absent_quantile=0.05,
        absent_distance=absent,
        absent_codes=codes,
    )
    assert thr[0] == pytest.approx(np.quantile(absent[:500], 0.05))  # held-out-type null dominates
    assert thr[0] == pytest.approx(3.0 - 1.645 * 0.1, abs=0.03)
    assert thr[1] == pytest.approx(np.quantile(d0[500:], 0.99))  # donor null dominates
    # position smoothing removes per-cell noise but keeps a shift of the whole group
    pts = rng.normal(0, 1, (400, 5))
    pts[:200, 0] += 3
    sm = fid.smooth_latent(pts, np.repeat(["a", "b"], 200), n_neighbors=15)
    assert sm[:200].std(axis=0).mean() < 0.75 * pts[:200].std(axis=0).mean()
    assert sm[:200, 0].mean() - sm[200:, 0].mean() == pytest.approx(3, abs=0.3)


def test_reference_cells_mapped_accurately_with_calibrated_null(mapped):
    info = mapped.uns["fidelity"]
    assert info["heldout_accuracy"] >= 0.95
    assert info["heldout_novel_rate"] <= 0.02  # held-out donors are not novel
    assert info["params"]["null_quantile"] == 0.99
    # each scorecard row shows it beside the sample's novel share (what a real donor's cells get)
    table = mapped.uns["scorecard"]["table"]
    assert (table["reference_novel_share"] == info["heldout_novel_rate"]).all()
    eng = table.set_index("sample").loc["engineered_7TF"]
    assert eng["novel_share"] > eng["reference_novel_share"]  # its planted off-target cells


def test_offtarget_cells_are_novel(mapped):
    obs = mapped.obs
    m = (obs["sample"] == "engineered_7TF").to_numpy()
    novel = obs["novel"].to_numpy()
    truth = obs["is_offtarget"].to_numpy()
    assert novel[m][truth[m]].mean() >= 0.95  # off-target states are never forced into a label
    assert (obs.loc[obs["novel"], "predicted_label"] == fid.NOVEL).all()
    query = ~obs["is_reference"].to_numpy()
    assert novel_f1(novel[query], truth[query]) >= 0.9  # over ALL query cells
    # perturbed organoid output is made of reference types: not novel
    org = obs["condition"].eq("organoid").to_numpy()
    assert novel[org].mean() <= 0.03


def test_composition_matches_truth(mapped):
    comp = mapped.uns["scorecard"]["composition"]
    for s in ("organoid_week2", "organoid_week4"):
        mae = composition_mae(comp[comp["sample"] == s], composition_truth(mapped.obs, s))
        assert mae <= 0.03, (s, mae)
    # the engineered sample too: HSC-like cells with an incomplete programme (20% weaker, 5 genes off) are
    # still HSC, and the off-target states are counted as novel
    eng = comp[comp["sample"] == "engineered_7TF"]
    truth = composition_truth(mapped.obs, "engineered_7TF")
    assert composition_mae(eng, truth) <= 0.03
    fractions = eng.set_index("cell_type")["fraction"]
    for cell_type in ("HSC", fid.NOVEL):
        assert abs(fractions[cell_type] - truth[cell_type]) <= 0.05, cell_type
    org = comp[comp["sample"] == "organoid_week2"].set_index("cell_type")
    # organoid output has no lymphoid cells: B is depleted against in vivo with a CI below zero
    assert org.loc["B", "log2fc_ci_high"] < 0


def test_scorecard_rows_and_cis(mapped):
    table = mapped.uns["scorecard"]["table"].set_index("sample")
    assert set(table.index) == {"engineered_7TF", "organoid_week2", "organoid_week4"}
    for part in ("fidelity_index", "identity", "similarity", "composition"):
        assert (table[f"{part}_ci_low"] <= table[part] + 1e-9).all()
        assert (table[part] <= table[f"{part}_ci_high"] + 1e-9).all()
    # the engineered sample (40% off-target, incomplete HSC programme) is less faithful than the organoids
    assert (
        table.loc["engineered_7TF", "fidelity_index"] < table.drop("engineered_7TF")["fidelity_index"]
    ).all()
    assert table.loc["engineered_7TF", "novel_share"] >= 0.3
    # the organoid lacks lymphoid output: composition is the part that pulls its index down
    org = table.loc["organoid_week2"]
    assert org["identity"] >= 0.95 and org["composition"] < org["identity"]


def test_sweep_monotone_and_controls():
    out = fidelity_sweep(
        levels=(0.0, 0.15, 0.3, 0.45, 0.6),
        n_ref=400,
        n_query=250,
        n_engineered=300,
        n_bootstrap=20,
        seeds=(0,),
    )
    summary = out["summary"].iloc[0]
    assert summary["spearman_fidelity_vs_perturbation"] <= -0.9
    assert summary["positive_control_min"] >= 0.9
    assert summary["negative_control_max"] <= 0.2
    levels = out["levels"]
    # composition within 0.03 up to moderate perturbation (0.45 shrinks every programme by 27%)
    assert (levels.loc[levels["perturbation"] <= 0.3, "mae_composition"] <= 0.03).all()
    assert summary["novel_f1_engineered"] >= 0.9
    assert summary["novel_f1_query"] >= 0.9  # engineered plus mildly perturbed samples
    assert summary["mae_composition_engineered"] <= 0.03
    # perturbed samples are made of reference types: few novel calls at mild perturbation; at 0.3 (every
    # programme 18% weaker, 10% of genes shifted) up to ~10% of cells are farther than the nulls allow
    assert (levels.loc[levels["perturbation"] <= 0.15, "novel_share"] <= 0.03).all()
    assert (levels.loc[levels["perturbation"] <= 0.3, "novel_share"] <= 0.12).all()


def test_run_fidelity_writes_tables(mapped, tmp_path):
    from hscseq._utils import write_h5ad

    scored = mapped.copy()
    for col in [c for c in scored.obs if c in ("predicted_label", "novel", "is_reference")]:
        del scored.obs[col]
    write_h5ad(scored, tmp_path / "clustered.h5ad")
    # the score stage's file: its columns on the same cells, no matrix (the stage joins the two)
    scores = ad.AnnData(obs=pd.DataFrame(index=scored.obs_names))
    scores.obs["hsc_score"] = np.linspace(0, 1, scored.n_obs)
    scores.obs["ontogeny_call"] = "definitive"
    scores.uns["hscseq"] = {"score": {"hsc_signature": "hsc_native"}}
    write_h5ad(scores, tmp_path / "scores.h5ad")
    pd.DataFrame({"sample": ["engineered_7TF"], "hsc_programme_share": [0.6]}).to_csv(
        tmp_path / "programme.tsv", sep="\t", index=False
    )
    out = {
        k: str(tmp_path / v)
        for k, v in {
            "final": "final.h5ad",
            "cells": "cells.tsv.gz",
            "scorecard": "scorecard.tsv",
            "composition": "composition.tsv",
            "figure": "fidelity.png",
            "de": "de.tsv",
            "controls": "controls.tsv",
            "timecourse": "timecourse.tsv",
        }.items()
    }
    fid.run_fidelity(
        clustered=str(tmp_path / "clustered.h5ad"),
        scores=str(tmp_path / "scores.h5ad"),
        programme=str(tmp_path / "programme.tsv"),
        settings={"n_bootstrap": 20, "de_top_n": 30, "de_max_genes": 200},
        **out,
    )
    card = pd.read_csv(out["scorecard"], sep="\t").set_index("sample")
    hier = ad.read_h5ad(out["final"]).uns["mapping"]["hierarchy"]  # a table: labels with "/" stay whole
    assert isinstance(hier, pd.DataFrame) and list(hier.columns) == ["child", "parent"]
    comp = pd.read_csv(out["composition"], sep="\t")
    parent = dict(zip(hier["child"], hier["parent"], strict=True))
    roots = {c: c for c in comp["cell_type"]} | {c: p for c, p in parent.items() if p not in parent}
    assert (comp["lineage"] == comp["cell_type"].map(lambda c: roots.get(parent.get(c, c), c))).all()
    assert card.loc["engineered_7TF", "programme"] == pytest.approx(0.6)
    assert card.loc["engineered_7TF", "programme_source"] == "score_table"
    assert bool(card.loc["engineered_7TF", "confounded"])
    cells = pd.read_csv(out["cells"], sep="\t")
    assert len(cells) == mapped.n_obs
    assert {"cell_id", "predicted_label", "novel", "hsc_score", "ontogeny_call"} <= set(cells.columns)
    by_cell = cells.set_index("cell_id").loc[scored.obs_names.astype(str), "hsc_score"]
    np.testing.assert_allclose(by_cell, np.linspace(0, 1, scored.n_obs))  # each cell got its own score
    ctrl = pd.read_csv(out["controls"], sep="\t")
    assert set(ctrl["kind"]) == {"positive", "negative"}
    assert ctrl["pass"].all(), ctrl[["control", "fidelity_index"]]
    de = pd.read_csv(out["de"], sep="\t")
    # organoid cells are perturbed: DE finds genes in both directions for matched types
    assert {"missing", "extra"} <= set(de["direction"])
    # the planted missing HSC genes are among the top missing genes of the engineered HSCs
    hsc_missing = set(
        de.query("sample == 'engineered_7TF' and cell_type == 'HSC' and direction == 'missing'")["gene"]
    )
    assert len(hsc_missing & set(datasets.DEFAULT_MISSING_HSC_GENES)) >= 3
    tc = pd.read_csv(out["timecourse"], sep="\t")
    assert set(tc["sample"]) == {"organoid_week2", "organoid_week4"}
    # monocytes rise from week 2 to week 4 (0.22 -> 0.36 in the simulation)
    mono = tc[tc["measure"] == "fraction:monocyte"].set_index("timepoint")["value"]
    assert mono["week4"] > mono["week2"]


def _run_with_reference_h5ad(tmp_path, ref: ad.AnnData, engineered: ad.AnnData, **settings) -> dict[str, str]:
    """Write ``ref`` as a reference h5ad and the engineered sample as the scored input; run the stage."""
    from hscseq._utils import write_h5ad

    write_h5ad(ref, tmp_path / "reference.h5ad")
    query = build_fidelity_input({"engineered_7TF": engineered}, seed=0)
    del query.obs["reference_label"]
    write_h5ad(query, tmp_path / "scored.h5ad")
    # no controls: with scANVI they train five more models (their setup is tested on small data below)
    out = {k: str(tmp_path / f"{k}.tsv") for k in ("scorecard", "composition")}
    fid.run_fidelity(
        clustered=str(tmp_path / "scored.h5ad"),
        programme="",
        final=str(tmp_path / "final.h5ad"),
        cells=str(tmp_path / "cells.tsv.gz"),
        figure=str(tmp_path / "f.png"),
        settings={
            "reference": str(tmp_path / "reference.h5ad"),
            "reference_label_key": "cell_type",
            "reference_donor_key": "donor",
            "n_bootstrap": 10,
            **settings,
        },
        **out,
    )
    return out


def test_external_reference_with_stages(tmp_path):
    """A reference h5ad with a yolk-sac stage holding the primitive states: they map there, not novel."""

    yolk = {"primitive_erythroid": 0.5, "hemogenic_endothelium": 0.5}
    specs = [
        *datasets.reference_specs(350),
        *[
            datasets.SampleSpec(
                sample=f"yolk_sac{i}",
                condition="in_vivo",
                n_cells=200,
                composition=yolk,
                batch=f"donor{i}",
                donor=f"donor{i}",
            )
            for i in (1, 2)
        ],
        datasets.engineered_spec(300),
    ]
    sims = datasets.simulate(specs, seed=2)
    refs = [sims[k] for k in ("invivo_donor1", "invivo_donor2", "yolk_sac1", "yolk_sac2")]
    ref = ad.concat(refs, join="inner", merge="same", index_unique="-")
    ref.obs["cell_type"] = ref.obs["true_cell_type"].astype(str)
    ref.obs["stage"] = np.where(ref.obs["sample"].str.startswith("yolk"), "yolk_sac", "adult_bm")
    out = _run_with_reference_h5ad(
        tmp_path, ref, sims["engineered_7TF"], reference_stage_key="stage", method="knn"
    )
    final = ad.read_h5ad(tmp_path / "final.h5ad")
    obs = final.obs
    prim = obs["true_cell_type"].astype(str).isin(datasets.OFFTARGET_TYPES).to_numpy()
    assert (obs["closest_stage"].astype(str).to_numpy()[prim] == "yolk_sac").mean() >= 0.9
    hsc = (obs["true_cell_type"] == "HSC").to_numpy()
    assert (obs["closest_stage"].astype(str).to_numpy()[hsc] == "adult_bm").mean() >= 0.9
    # present in this reference, the primitive states are mapped (to their own type), not novel
    pred = obs["predicted_label"].astype(str).to_numpy()
    assert (pred[prim] == obs["true_cell_type"].astype(str).to_numpy()[prim]).mean() >= 0.8
    card = pd.read_csv(out["scorecard"], sep="\t")
    assert card.loc[0, "closest_stage"] in ("yolk_sac", "adult_bm")
    assert card.loc[0, "novel_share"] <= 0.1


@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::FutureWarning")
def test_external_reference_defaults_to_scanvi_surgery(tmp_path):
    """With a reference h5ad, ``auto`` trains scANVI on it and maps the query by surgery; an adult-only
    reference leaves the off-target states novel (distances in the uncorrected PCA)."""

    sims = datasets.simulate([*datasets.reference_specs(350), datasets.engineered_spec(300)], seed=3)
    ref = ad.concat(
        [sims["invivo_donor1"], sims["invivo_donor2"]], join="inner", merge="same", index_unique="-"
    )
    ref.obs["cell_type"] = ref.obs["true_cell_type"].astype(str)
    _run_with_reference_h5ad(tmp_path, ref, sims["engineered_7TF"], max_epochs=20)
    final = ad.read_h5ad(tmp_path / "final.h5ad")
    assert final.uns["fidelity"]["params"]["method"] == "scanvi"
    obs = final.obs  # the query cells
    truth = obs["is_offtarget"].to_numpy()
    assert novel_f1(obs["novel"].to_numpy(), truth) >= 0.9
    hsc = (obs["true_cell_type"] == "HSC").to_numpy()
    # 20 epochs here (50 by default): most HSC-like cells keep their type through surgery
    assert (obs["predicted_label"].astype(str).to_numpy()[hsc] == "HSC").mean() >= 0.7


@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::FutureWarning")
def test_scanvi_surgery_runs_with_calibrated_null():
    """scVI -> scANVI on the reference (one donor held out), scArches surgery for the query (few epochs).

    Runs the real models; mapping accuracy is NOT validated at these epochs (see the stage report), which is
    why ``method: auto`` is kNN and scANVI is opt-in.
    """
    specs = [*datasets.reference_specs(200), datasets.engineered_spec(150)]
    adata = build_fidelity_input(datasets.simulate(specs, seed=0), seed=0)
    fid.map_to_reference(adata, method="scanvi", max_epochs=5, n_latent=8, random_state=0)
    obs = adata.obs
    lat = adata.obsm["X_fidelity_scanvi"]
    assert lat.shape == (adata.n_obs, 8) and np.isfinite(lat).all()
    probs = adata.obsm["fidelity_scanvi_probabilities"]
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-6)
    held = obs["is_reference"].to_numpy() & (obs["donor"] == "donor2").to_numpy()  # mapped by surgery
    assert adata.uns["fidelity"]["params"]["method"] == "scanvi"
    # the null comes from the held-out donor: its cells are (almost) never novel
    assert obs["novel"].to_numpy()[held].mean() <= 0.05


def _human_organoid_spec(n_cells: int) -> datasets.SampleSpec:
    """Human cells of the reference composition, no doublets or low-quality cells (profile-path tests)."""
    return datasets.SampleSpec(
        sample="organoid_h",
        condition="organoid",
        n_cells=n_cells,
        composition=datasets.REFERENCE_COMPOSITION,
        batch="organoid_h",
        species="human",
        doublet_rate=0.0,
        low_quality_rate=0.0,
    )


def test_profile_reference_maps_lineages_and_refuses_mouse(tmp_path):
    """HematoMap (human profiles, GPL-3): simulated human cells land on their lineage's profiles."""
    from hscseq._utils import write_h5ad

    spec = _human_organoid_spec(600)
    a = datasets.simulate([spec], seed=0)["organoid_h"]
    a.layers["counts"] = a.X.copy()
    fid.map_to_profiles(a)
    assert len(a.uns["fidelity"]["labels"]) == 43
    closest = a.obs["closest_label"].astype(str)
    truth = a.obs["true_cell_type"].astype(str)
    families = {
        "GMP": {"GMP", "MDP", "CDP", "CMP", "pro-Mono"},
        "MkP": {"MKP", "MK", "MEP"},
        "B": {c for c in a.uns["fidelity"]["labels"] if c.endswith("B") or "pro-B" in c or "pre-B" in c},
    }
    for t, fam in families.items():
        share = closest[truth == t].isin(fam).mean()
        assert share >= 0.5, (t, share)  # chance: a handful of 43 profiles
    # no single-cell reference and mouse data: the human profiles cannot be used
    mouse = build_fidelity_input(datasets.simulate([datasets.engineered_spec(120)], seed=0), seed=0)
    del mouse.obs["reference_label"]
    write_h5ad(mouse, tmp_path / "scored.h5ad")
    with pytest.raises(HscseqInputError, match="human only"):
        fid.run_fidelity(
            clustered=str(tmp_path / "scored.h5ad"),
            programme="",
            final=str(tmp_path / "f.h5ad"),
            cells=str(tmp_path / "c.tsv.gz"),
            scorecard=str(tmp_path / "s.tsv"),
            composition=str(tmp_path / "c.tsv"),
            figure=str(tmp_path / "f.png"),
            settings={},
        )


def test_profile_cells_between_close_subtypes_are_sure_of_their_lineage(tmp_path):
    """HematoMap has eight CD4/CD8 T states whose profiles correlate within ~0.02: a real T cell's best type
    rarely reaches 0.5 (on real PBMCs only 13% of cells did, so real blood scored identity 0.13). A cell
    halfway between two T profiles is sure of its lineage, not of its type: ``T (uncertain)``, counted as
    confidently mapped; cells of one distinct profile keep their type. Composition spreads the uncertain
    cells over the lineage's types by probability, so the lineage totals stay those of the argmax."""
    from hscseq.fidelity.profiles import _profile_scorecard, load_hematomap

    prof = load_hematomap()
    share = prof / prof.sum(axis=0)
    rng = np.random.default_rng(0)
    n, umis = 200, 4000
    mixed = 0.5 * share["CD4 Tnaive"] + 0.5 * share["CD4 Tem"]
    expected = np.vstack([np.tile(mixed.to_numpy(), (n, 1)), np.tile(share["CD14 Mono"].to_numpy(), (n, 1))])
    counts = sp.csr_matrix(rng.poisson(expected * umis).astype(np.float32))
    a = ad.AnnData(X=counts, var=pd.DataFrame(index=prof.index))
    a.obs_names = [f"c{i}" for i in range(a.n_obs)]
    a.obs["sample"], a.obs["condition"] = "org", "organoid"
    fid.map_to_profiles(a, layer=None)
    t_cells = a.obs_names[:n]
    assert (a.obs.loc[t_cells, "label_confidence"] < 0.5).mean() >= 0.8  # no T state is sure
    t_types = [c for c, p in fid.hematomap_lineages().items() if p == "T"]
    t_labels = a.obs.loc[t_cells, "mapped_label"]
    assert (t_labels == "T (uncertain)").mean() >= 0.8
    assert t_labels.isin([*t_types, "T (uncertain)"]).all()  # sure of the type, or else of the lineage
    assert (a.obs.loc[a.obs_names[n:], "mapped_label"] == "CD14 Mono").mean() > 0.9
    table, comp = _profile_scorecard(a, fid.FidelitySettings.from_config({"n_bootstrap": 20}))
    assert table["identity"].iloc[0] > 0.9
    frac = comp.set_index("cell_type")["fraction"]
    argmax_t = a.obs["predicted_label"].astype(str).isin(t_types).mean()
    assert frac.reindex(t_types).fillna(0).sum() == pytest.approx(argmax_t)
    assert frac[["CD4 Tnaive", "CD4 Tem"]].min() > 0.1  # spread, not all on one argmax
    a.write_h5ad(tmp_path / "mapped.h5ad")  # the final h5ad keeps what the scorecard needs ("HSC/MPP" too)
    again = _profile_scorecard(ad.read_h5ad(tmp_path / "mapped.h5ad"), fid.FidelitySettings())[1]
    pd.testing.assert_series_equal(again.set_index("cell_type")["fraction"], frac)


def test_missing_counts_is_an_input_error(mapped, tmp_path):
    from hscseq._utils import write_h5ad

    bad = mapped.copy()
    del bad.layers["counts"]
    write_h5ad(bad, tmp_path / "scored.h5ad")
    with pytest.raises(HscseqInputError, match="counts"):
        fid.run_fidelity(
            clustered=str(tmp_path / "scored.h5ad"),
            programme="",
            final=str(tmp_path / "f.h5ad"),
            cells=str(tmp_path / "c.tsv.gz"),
            scorecard=str(tmp_path / "s.tsv"),
            composition=str(tmp_path / "c.tsv"),
            figure=str(tmp_path / "f.png"),
            settings={},
        )


@pytest.fixture(scope="module")
def small_input():
    specs = [*datasets.reference_specs(200), datasets.engineered_spec(150)]
    return build_fidelity_input(datasets.simulate(specs, seed=4), seed=4)


@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::FutureWarning")
@pytest.mark.parametrize(
    ("method", "novelty_space", "with_programme", "null_quantile"),
    [
        ("knn", "uncorrected", False, 0.99),
        ("scanvi", "uncorrected", False, 0.99),
        ("knn", "integrated", False, 0.99),
        ("knn", "uncorrected", True, 0.99),
        ("knn", "uncorrected", False, 0.9),
    ],
)
def test_controls_run_the_scorecard_setup(small_input, method, novelty_space, with_programme, null_quantile):
    """Every setting that shapes the scorecard reaches the controls too.

    Issue #12: the controls used to map with kNN in the scVI latent while the scorecard used the uncorrected
    PCA and the score stage's programme table."""
    settings = fid.FidelitySettings.from_config(
        {
            "method": method,
            "novelty_space": novelty_space,
            "null_quantile": null_quantile,
            "n_bootstrap": 10,
            "max_epochs": 3,
            "n_latent": 6,
        }
    )
    share = 0.37  # planted: no computed programme share is this value
    programme = (
        pd.DataFrame(
            {"sample": ["invivo_donor1", "invivo_donor2", "engineered_7TF"], "hsc_programme_share": share}
        )
        if with_programme
        else None
    )
    work = small_input.copy()
    table, _, ctrl = fid.score_with_controls(work, settings, programme=programme)
    mapping = work.uns["fidelity"]["params"]
    assert mapping["method"] == method
    assert mapping["distance_rep"] == ("X_pca_uncorrected" if novelty_space == "uncorrected" else None)
    assert mapping["null_quantile"] == null_quantile
    assert set(ctrl["kind"]) == {"positive", "negative"}
    assert ctrl.attrs["settings"] == settings.as_params()
    for key in ("method", "distance_rep", "null_quantile", "absent_quantile", "n_neighbors"):
        assert ctrl.attrs["null"][key] == mapping[key], key
    for kind, eff in zip(ctrl["kind"], ctrl.attrs["effective"], strict=True):
        for key in (
            "method",
            "distance_rep",
            "null_quantile",
            "absent_quantile",
            "n_neighbors",
            "label_metric",
            "label_method",
        ):
            assert eff["mapping"][key] == mapping[key], key
        assert eff["mapping"]["null_given"]  # thresholds of the full reference, computed with these settings
        card = work.uns["scorecard"]["params"]
        for key in ("weights", "min_confidence", "min_cells"):
            assert eff["scorecard"][key] == card[key], key
        if kind == "positive":  # (a negative control may hold the HSC type out of its reference)
            assert eff["scorecard"]["hsc_label"] == card["hsc_label"]
        assert eff["scorecard"]["settings"] == {
            **settings.as_params(),
            "n_bootstrap": settings.controls_n_bootstrap,
        }
    eng = table.set_index("sample").loc["engineered_7TF"]
    positive = ctrl[ctrl["kind"] == "positive"]
    if with_programme:
        assert eng["programme"] == pytest.approx(share)
        assert (positive["programme_source"] == "score_table").all()
        np.testing.assert_allclose(positive["programme"], share)
    else:
        assert eng["programme_source"] == "reference_hsc_genes"
        assert (positive["programme_source"] == "reference_hsc_genes").all()
        assert not np.isclose(positive["programme"], share).any()


def test_profile_reference_stage_writes_tables_and_figure(tmp_path):
    """No single-cell reference, human cells: the stage scores against HematoMap profiles and plots."""
    from hscseq._utils import write_h5ad

    spec = _human_organoid_spec(300)
    human = build_fidelity_input(datasets.simulate([spec], seed=0), seed=0)
    del human.obs["reference_label"]
    write_h5ad(human, tmp_path / "scored.h5ad")
    out = {k: str(tmp_path / f"{k}.tsv") for k in ("scorecard", "composition")}
    fid.run_fidelity(
        clustered=str(tmp_path / "scored.h5ad"),
        programme="",
        final=str(tmp_path / "f.h5ad"),
        cells=str(tmp_path / "c.tsv.gz"),
        figure=str(tmp_path / "f.png"),
        settings={"n_bootstrap": 10},
        mapping_accuracy=str(tmp_path / "acc.tsv"),
        mapping_calibration=str(tmp_path / "cal.tsv"),
        calibration_figure=str(tmp_path / "cal.png"),
        **out,
    )
    card = pd.read_csv(out["scorecard"], sep="\t")
    assert card["programme_source"].iloc[0] == "unavailable (profile reference)"
    # no ensemble on profiles: the accuracy card says so, and its figure is drawn empty (it used to crash)
    assert "no ensemble mapping" in pd.read_csv(tmp_path / "acc.tsv", sep="\t")["note"].iloc[0]
    assert (tmp_path / "cal.png").stat().st_size > 1000
    assert card["n_cells"].iloc[0] == human.n_obs
    # each type's lineage (the report shades a lineage's types alike): the shipped HematoMap roll-up
    from hscseq.fidelity.profiles import hematomap_lineages

    comp = pd.read_csv(out["composition"], sep="\t")
    lineages = hematomap_lineages()
    types = comp[comp["cell_type"] != "novel"]
    assert (types["lineage"] == types["cell_type"].map(lineages).fillna(types["cell_type"])).all()
    assert set(types["lineage"]) <= set(lineages.values())
    # the figure used to crash here (a profile reference has no in vivo composition)
    assert (tmp_path / "f.png").stat().st_size > 1000


def test_control_references_share_the_counts_and_leave_the_reference_alone(small_input):
    """The controls' full and null references annotate the reference cells without copying their count
    matrices (at 250k cells each copy is several GB); what they write stays theirs."""
    ctl = importlib.import_module("hscseq.fidelity.controls")  # the module (the package exports a function)
    work = small_input.copy()
    settings = fid.FidelitySettings.from_config({"n_bootstrap": 10})
    st = ctl._setup(
        work, settings, reference_key="reference_label", use_rep="X_integrated", distance_rep=None,
        layer="counts", seed=0,
    )  # fmt: skip
    assert np.shares_memory(st.null_ref.X.data, st.ref.X.data)
    assert np.shares_memory(st.null_ref.layers["counts"].data, st.ref.layers["counts"].data)
    assert "_ref" in st.null_ref.obs and "_ref" not in st.ref.obs
    assert st.full_null["params"]["null_quantile"] == settings.null_quantile  # the full reference's null
    assert "fidelity" not in st.ref.uns
    # a positive control maps every reference cell: on the reference's own matrices, not a copy (a copy
    # of the reference's counts and X per control: a 250,000-cell run was killed for memory in its first)
    positive = ctl._control_object(st, "reference_label", st.donor_list[0], "positive")
    assert np.shares_memory(positive.X.data, st.ref.X.data)
    assert "_ref" in positive.obs and "_sample" not in st.ref.obs
    fid.map_to_reference(positive, settings=settings, reference_key="_ref", sample_key="_sample")
    assert "fidelity" not in st.ref.uns and "predicted_label" not in st.ref.obs


def test_negative_controls_keep_the_cells_they_leave_out_without_changing_a_number(small_input, monkeypatch):
    """A negative control maps on the reference's own matrices: the cells it leaves out (the held-out
    donor's other types, the other donors' off-target cells) stay in the object, unlabelled and unscored
    (a copy without them per control killed a 250,000-cell run for memory). Its row is the row of the
    control run on a copy without those cells."""
    ctl = importlib.import_module("hscseq.fidelity.controls")
    settings = fid.FidelitySettings.from_config({"n_bootstrap": 10})
    st = ctl._setup(
        small_input.copy(), settings, reference_key="reference_label", use_rep="X_integrated",
        distance_rep=None, layer="counts", seed=0,
    )  # fmt: skip
    held = st.donor_list[0]
    work = ctl._control_object(st, "reference_label", held, "negative")
    assert np.shares_memory(work.X.data, st.ref.X.data) and work.n_obs == st.ref.n_obs
    left_out = work.obs["_sample"] == ctl.EXCLUDED
    query = work.obs["_sample"] == ctl.CONTROL
    is_type = st.labels == st.negative_type
    assert left_out.sum() > query.sum() > 0
    np.testing.assert_array_equal(query, (st.donors == held) & is_type)
    assert work.obs.loc[left_out | query, "_ref"].isna().all()
    assert not (work.obs["_ref"] == st.negative_type).any()  # the type is absent from its reference
    where = {
        "held_donor": held, "kind": "negative", "programme": None, "reference_key": "reference_label",
        "sample_key": "sample", "use_rep": "X_integrated", "layer": "counts", "seed": 0,
    }  # fmt: skip
    kept, _ = ctl._run_control(st, settings, **where)
    original = ctl._control_object
    monkeypatch.setattr(ctl, "_control_object", lambda *a, **k: original(*a, **{**k, "alias": False}))
    dropped, _ = ctl._run_control(st, settings, **where)
    assert kept.keys() == dropped.keys() and kept["n_cells"] == int(query.sum())
    for key, value in kept.items():
        if isinstance(value, float):
            assert value == pytest.approx(dropped[key], rel=1e-6, abs=1e-9, nan_ok=True), key
        else:
            assert value == dropped[key], key


def test_cells_outside_the_query_mask_are_left_out_and_change_nothing(small_input):
    """``query_mask``: unlabelled cells outside it get no label, confidence or distance and are not novel;
    every other cell's result is the one of the object without them (the negative controls' excluded
    cells cost no mapping)."""
    a = small_input.copy()
    fid.uncorrected_pca(a, random_state=0)  # one novelty space for both objects
    settings = fid.FidelitySettings.from_config({})
    unlabelled = a.obs["reference_label"].isna().to_numpy()
    rng = np.random.default_rng(0)
    skip = unlabelled & (rng.random(a.n_obs) < 0.5)
    assert 0 < skip.sum() < unlabelled.sum()
    masked = a.copy()
    fid.map_to_reference(masked, settings=settings, distance_rep="X_pca_uncorrected", query_mask=~skip)
    alone = a[~skip].copy()
    fid.map_to_reference(alone, settings=settings, distance_rep="X_pca_uncorrected")
    left = masked.obs.loc[skip]
    for col in ("predicted_label", "closest_label", "mapped_label", "mapped_fine_label"):
        assert left[col].isna().all(), col
    assert left[["label_confidence", "reference_distance", "mapped_confidence"]].isna().all().all()
    assert not left["novel"].any() and not left["mapped_coarse"].any()
    assert "nan" not in masked.obs["mapped_label"].cat.categories
    kept = masked.obs.loc[alone.obs_names]
    for col in ("predicted_label", "mapped_label", "novel"):
        np.testing.assert_array_equal(kept[col].astype(str), alone.obs[col].astype(str), err_msg=col)
    for col in ("label_confidence", "reference_distance"):
        np.testing.assert_allclose(kept[col], alone.obs[col], rtol=1e-6, err_msg=col)
    assert masked.uns["fidelity"]["heldout_accuracy"] == alone.uns["fidelity"]["heldout_accuracy"]


def test_a_samples_smoothing_groups_do_not_depend_on_the_other_samples():
    """Query cells are smoothed in seeded groups drawn per sample: adding or reordering other samples
    leaves a sample's groups (and so its novelty calls) as they were."""
    from hscseq.fidelity.ensemble import smoothing_groups

    a = np.array(["A"] * 40)
    mixed = np.array(["B", "A"] * 40)
    alone = smoothing_groups(a, np.zeros(40, bool), 10.0, seed=3)
    with_b = smoothing_groups(mixed, np.zeros(80, bool), 10.0, seed=3)
    np.testing.assert_array_equal(with_b[mixed == "A"], alone)
    assert len(set(alone)) == 4 and len(set(with_b[mixed == "B"])) == 4
    assert not np.array_equal(alone, smoothing_groups(a, np.zeros(40, bool), 10.0, seed=4))


def test_capped_reference_keeps_at_most_the_cap_per_type_and_donor():
    """The controls' subsample: at most ``cap`` cells of each (type, donor), smaller pairs whole, seeded."""
    ctl = importlib.import_module("hscseq.fidelity.controls")
    labels = np.repeat(["A", "A", "B", "C"], [50, 30, 8, 40])
    donors = np.array(["d1"] * 50 + ["d2"] * 30 + ["d1"] * 8 + ["d2"] * 40)
    pos = ctl.capped_reference(labels, donors, 20, seed=3)
    kept = pd.Series(1, index=pd.MultiIndex.from_arrays([labels[pos], donors[pos]])).groupby(level=[0, 1])
    assert kept.sum().to_dict() == {("A", "d1"): 20, ("A", "d2"): 20, ("B", "d1"): 8, ("C", "d2"): 20}
    assert len(np.unique(pos)) == len(pos) and np.all(np.diff(pos) > 0)
    np.testing.assert_array_equal(pos, ctl.capped_reference(labels, donors, 20, seed=3))
    assert not np.array_equal(pos, ctl.capped_reference(labels, donors, 20, seed=4))
    np.testing.assert_array_equal(ctl.capped_reference(labels, donors, None, seed=3), np.arange(128))


def test_controls_on_a_capped_reference_still_pass_and_fail(small_input):
    """With ``controls_max_cells_per_type`` the controls map and score a seeded subsample of the reference
    (at most the cap per type per donor): the held-out donors still pass (F >= 0.9) and the absent type still
    scores as off-target (F <= 0.2); the main mapping is not touched."""
    ctl = importlib.import_module("hscseq.fidelity.controls")
    cap = 15
    work = small_input.copy()
    ref = work.obs["reference_label"].notna().to_numpy()
    sizes = work.obs.loc[ref].groupby(["reference_label", "donor"], observed=True).size()
    assert (sizes > cap).any() and (sizes < cap).any()  # the cap bites on some pairs only
    settings = fid.FidelitySettings.from_config({"n_bootstrap": 10, "controls_max_cells_per_type": cap})
    st = ctl._setup(
        work, settings, reference_key="reference_label", use_rep="X_integrated", distance_rep=None,
        layer="counts", seed=0,
    )  # fmt: skip
    got = st.ref.obs.groupby(["reference_label", "donor"], observed=True).size()
    assert {(str(t), str(d)): n for (t, d), n in got.items()} == {
        (str(t), str(d)): n for (t, d), n in sizes.clip(upper=cap).items()
    }
    table = fid.controls(work, settings=settings)
    assert table.attrs["reference_cells"] == int(sizes.clip(upper=cap).sum()) < int(ref.sum())
    assert "fidelity" not in work.uns  # the controls leave the object they check alone
    positive, negative = table[table["kind"] == "positive"], table[table["kind"] == "negative"]
    assert len(positive) == len(negative) == 2
    assert (positive["fidelity_index"] >= 0.9).all() and positive["pass"].all()
    assert (negative["fidelity_index"] <= 0.2).all() and negative["pass"].all()


def test_negative_control_type_needs_cells_in_every_held_out_donor():
    """The negative control scores a held-out donor's cells of the absent type: the farthest type with one
    cell in a donor tests nothing (a user's run chose such a type with 1 cell), so the farthest type with
    ``min_cells`` in every held-out donor is taken, and none when no type has them."""
    ctl = importlib.import_module("hscseq.fidelity.controls")
    rng = np.random.default_rng(0)
    centres = {"A": 0.0, "B": 1.0, "far": 10.0, "rare": 30.0}
    sizes = {("A", "d1"): 40, ("A", "d2"): 40, ("B", "d1"): 40, ("B", "d2"): 40}
    sizes |= {("far", "d1"): 12, ("far", "d2"): 12, ("rare", "d1"): 40, ("rare", "d2"): 1}
    labels = np.repeat([t for t, _ in sizes], list(sizes.values()))
    donors = np.repeat([d for _, d in sizes], list(sizes.values()))
    latent = np.array([centres[t] for t in labels])[:, None] + rng.normal(0, 0.1, (len(labels), 2))
    held = np.array([donors == d for d in ("d1", "d2")])
    classes = sorted(centres)
    assert ctl._negative_type(latent, labels, classes, held[:1], 10) == "rare"  # d1 has 40 rare cells
    assert ctl._negative_type(latent, labels, classes, held, 10) == "far"  # d2 has 1: rare is skipped
    assert ctl._negative_type(latent, labels, classes, held, 50) is None


def test_controls_reuse_the_main_mappings_null_only_when_it_is_theirs(small_input):
    """The scorecard's kNN mapping already holds the full reference's null (its thresholds come from the
    reference cells' held-out donors, whatever the query): computed afresh it is the same, so the controls
    reuse it, and only with the same settings and every reference cell (a cap or other quantiles remap)."""
    ctl = importlib.import_module("hscseq.fidelity.controls")
    settings = fid.FidelitySettings.from_config({"n_bootstrap": 10})
    work = small_input.copy()
    fid.map_to_reference(work, settings=settings)
    main = work.uns["fidelity"]
    where = {
        "reference_key": "reference_label",
        "use_rep": "X_integrated",
        "distance_rep": main["params"]["distance_rep"],
        "layer": "counts",
        "seed": settings.seed,
    }
    fresh = ctl._setup(work, settings, **where).full_null
    assert fresh is not main and fresh["labels"] == main["labels"]
    np.testing.assert_allclose(fresh["distance_thresholds"], main["distance_thresholds"], rtol=1e-6)
    assert fresh["uncertainty_threshold"] == pytest.approx(main["uncertainty_threshold"], rel=1e-6)
    assert ctl._setup(work, settings, **where, reference_null=main).full_null is main
    for other in (settings.replace(null_quantile=0.9), settings.replace(controls_max_cells_per_type=15)):
        assert ctl._setup(work, other, **where, reference_null=main).full_null is not main
