"""Fidelity stage: numeric cores, mapping and novelty, scorecard, controls, sweep on simulator truth."""

import numpy as np
import pandas as pd
import pytest

from hscseq import HscseqInputError, datasets
from hscseq import fidelity as fid
from hscseq.sweeps import build_fidelity_input, composition_mae, composition_truth, fidelity_sweep, novel_f1

pytestmark = pytest.mark.filterwarnings(
    "ignore:.*(dispersion|overflow|invalid value).*:RuntimeWarning", "ignore::UserWarning"
)


@pytest.fixture(scope="module")
def mapped():
    """Two in vivo donors, the default engineered sample and an organoid timepoint, mapped and scored."""
    specs = [
        *datasets.reference_specs(500),
        datasets.engineered_spec(450),
        datasets.SampleSpec(
            sample="organoid_week2",
            condition="organoid",
            n_cells=350,
            composition=datasets.ORGANOID_COMPOSITIONS["week2"],
            batch="organoid_week2",
            timepoint="week2",
            perturbation=0.15,
        ),
    ]
    adata = build_fidelity_input(datasets.simulate(specs, seed=0), seed=0)
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


def test_reference_cells_mapped_accurately_with_calibrated_null(mapped):
    info = mapped.uns["fidelity"]
    assert info["heldout_accuracy"] >= 0.9
    assert info["heldout_novel_rate"] <= 0.05  # ~ 1 - null_quantile per test, two tests
    assert mapped.uns["fidelity"]["params"]["null_quantile"] == 0.99


def test_offtarget_cells_are_novel(mapped):
    obs = mapped.obs
    m = (obs["sample"] == "engineered_7TF").to_numpy()
    novel = obs["novel"].to_numpy()[m]
    truth = obs["is_offtarget"].to_numpy()[m]
    assert novel[truth].mean() >= 0.95  # off-target states are never forced into a label
    assert (obs.loc[obs["novel"], "predicted_label"] == fid.NOVEL).all()
    assert novel_f1(novel, truth) >= 0.9


def test_composition_matches_truth(mapped):
    comp = mapped.uns["scorecard"]["composition"]
    for s in ("organoid_week2", "engineered_7TF"):
        mae = composition_mae(comp[comp["sample"] == s], composition_truth(mapped.obs, s))
        assert mae <= 0.03, (s, mae)
    org = comp[comp["sample"] == "organoid_week2"].set_index("cell_type")
    # organoid output has no lymphoid cells: B is depleted against in vivo with a CI below zero
    assert org.loc["B", "log2fc_ci_high"] < 0


def test_scorecard_rows_and_cis(mapped):
    table = mapped.uns["scorecard"]["table"].set_index("sample")
    assert set(table.index) == {"engineered_7TF", "organoid_week2"}
    for part in ("fidelity_index", "identity", "similarity", "composition"):
        assert (table[f"{part}_ci_low"] <= table[part] + 1e-9).all()
        assert (table[part] <= table[f"{part}_ci_high"] + 1e-9).all()
    # the engineered sample (40% off-target, incomplete HSC programme) is less faithful than the organoid
    assert table.loc["engineered_7TF", "fidelity_index"] < table.loc["organoid_week2", "fidelity_index"]
    assert table.loc["engineered_7TF", "novel_share"] >= 0.3


def test_sweep_monotone_and_controls():
    out = fidelity_sweep(
        levels=(0.0, 0.1, 0.2, 0.3, 0.45),
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
    assert summary["mae_composition_native"] <= 0.03


def test_run_fidelity_writes_tables(mapped, tmp_path):
    from hscseq._utils import write_h5ad

    scored = mapped.copy()
    for col in [c for c in scored.obs if c in ("predicted_label", "novel", "is_reference")]:
        del scored.obs[col]
    write_h5ad(scored, tmp_path / "scored.h5ad")
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
        scored=str(tmp_path / "scored.h5ad"),
        programme=str(tmp_path / "programme.tsv"),
        settings={"n_bootstrap": 20, "de_top_n": 30},
        **out,
    )
    card = pd.read_csv(out["scorecard"], sep="\t").set_index("sample")
    assert card.loc["engineered_7TF", "programme"] == pytest.approx(0.6)
    assert card.loc["engineered_7TF", "programme_source"] == "score_table"
    assert bool(card.loc["engineered_7TF", "confounded"])
    cells = pd.read_csv(out["cells"], sep="\t")
    assert len(cells) == mapped.n_obs and {"cell_id", "predicted_label", "novel"} <= set(cells.columns)
    ctrl = pd.read_csv(out["controls"], sep="\t")
    assert set(ctrl["kind"]) == {"positive", "negative"}
    de = pd.read_csv(out["de"], sep="\t")
    # organoid cells are perturbed: DE finds genes in both directions for matched types
    assert {"missing", "extra"} <= set(de["direction"])
    tc = pd.read_csv(out["timecourse"], sep="\t")
    assert set(tc["sample"]) == {"organoid_week2"}


def test_missing_counts_is_an_input_error(mapped, tmp_path):
    from hscseq._utils import write_h5ad

    bad = mapped.copy()
    del bad.layers["counts"]
    write_h5ad(bad, tmp_path / "scored.h5ad")
    with pytest.raises(HscseqInputError, match="counts"):
        fid.run_fidelity(
            scored=str(tmp_path / "scored.h5ad"),
            programme="",
            final=str(tmp_path / "f.h5ad"),
            cells=str(tmp_path / "c.tsv.gz"),
            scorecard=str(tmp_path / "s.tsv"),
            composition=str(tmp_path / "c.tsv"),
            figure=str(tmp_path / "f.png"),
            settings={},
        )
