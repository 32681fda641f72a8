"""Lineage presence calls and organoid time courses on simulated organoids with planted lineage emergence."""

from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest

from hscseq import HscseqInputError, datasets
from hscseq import lineages as pr

LINEAGES = ["HSPC", "myeloid", "dendritic", "erythroid", "megakaryocyte", "B", "T", "NK", "stromal", "novel"]


def _planted_counts(seed: int, *, n: int = 500, mismap: float = 0.01) -> pd.DataFrame:
    """Fast in-process organoids: lineage counts drawn from the simulator's per-organoid compositions.

    The replicate organoids' compositions are the simulator's Dirichlet draws around the planted plan
    (megakaryocytes rise 0 -> 10%, stromal flat at 10%); cells are drawn multinomially and ``mismap`` of them
    land on a random lineage (mapping noise).
    """
    hier = {**pr.default_hierarchy(), "endothelial_like": "novel"}
    rng = np.random.default_rng([seed, 99])
    rows = []
    for spec in datasets.organoid_specs_from_profiles(n, seed=seed):
        lin = pd.Series(spec.composition).groupby(lambda t: hier[t]).sum().reindex(LINEAGES).fillna(0.0)
        p = (1 - mismap) * lin.to_numpy() + mismap / len(LINEAGES)
        for lineage, k in zip(LINEAGES, rng.multinomial(n, p), strict=True):
            rows.append(
                {
                    "sample": spec.sample,
                    "condition": "organoid",
                    "timepoint": spec.timepoint,
                    "replicate": spec.replicate,
                    "lineage": lineage,
                    "n_sample": n,
                    "n_lineage": int(k),
                    "n_confident": int(rng.binomial(k, 0.9)),
                    "closest_lineage": "stromal" if lineage == "novel" else "",
                    "invivo_fraction": np.nan,
                }
            )
    return pd.DataFrame(rows)


def test_planted_rise_is_detected_and_a_flat_lineage_is_not():
    """Megakaryocytes rising 0 -> 10% over weeks 1-6: called rising at FDR 0.05 in >= 9 of 10 seeds; the flat
    stromal lineage (10% throughout) called in <= 1 of 10."""
    rising, false_calls = 0, 0
    for seed in range(10):
        trends = pr.lineage_trends(_planted_counts(seed), settings={"fdr": 0.05}).set_index(
            ["lineage", "measure"]
        )
        rising += trends.loc[("megakaryocyte", "fraction"), "trend"] == "rising"
        false_calls += trends.loc[("stromal", "fraction"), "trend"] != "flat"
        # lineages never made cannot trend
        assert trends.loc[("B", "fraction"), "trend"] == "never present"
    assert rising >= 9
    assert false_calls <= 1


def test_timecourse_uses_replicate_organoids_as_units():
    counts = _planted_counts(0)
    tc = pr.lineage_timecourse(counts)
    mk = tc[(tc["lineage"] == "megakaryocyte") & (tc["measure"] == "fraction")].set_index("timepoint")
    assert list(mk["n_organoids"]) == [2, 2, 2, 2]
    # the between-organoid SD is the SD of the two organoids' fractions
    week4 = counts[(counts["lineage"] == "megakaryocyte") & (counts["timepoint"] == "week4")]
    fr = week4["n_lineage"] / week4["n_sample"]
    assert mk.loc["week4", "sd_between"] == pytest.approx(fr.std(ddof=1))
    assert mk.loc["week4", "ci_low"] <= mk.loc["week4", "mean"] <= mk.loc["week4", "ci_high"]
    # the planted rise is visible in the means
    assert mk.loc["week1", "mean"] < 0.01 < 0.07 < mk.loc["week6", "mean"]


def test_timecourse_fidelity_needs_cells_of_the_lineage():
    """A lineage's mapping fidelity is the share of its cells confidently mapped: with 1-2 stray cells it is
    0 or 1 by chance (a user's run showed HSPC 1.0 from 2 cells), so it is measured from 10 cells on."""
    counts = pd.DataFrame(
        {
            "sample": ["o1", "o1", "o2", "o2"],
            "condition": "organoid",
            "timepoint": "week1",
            "lineage": ["HSPC", "T", "HSPC", "T"],
            "n_lineage": [2, 500, 30, 400],
            "n_confident": [2, 450, 15, 380],
            "n_sample": [502, 502, 430, 430],
        }
    )
    tc = pr.lineage_timecourse(counts).set_index(["lineage", "measure"])
    assert tc.loc[("HSPC", "fidelity"), "n_organoids"] == 1  # o1's two cells do not count
    assert tc.loc[("HSPC", "fidelity"), "mean"] == pytest.approx(0.5)
    assert tc.loc[("HSPC", "fraction"), "n_organoids"] == 2  # the fraction still counts every organoid
    assert tc.loc[("T", "fidelity"), "mean"] == pytest.approx((0.9 + 0.95) / 2)
    lone = pr.lineage_timecourse(counts[counts["sample"] == "o1"]).set_index(["lineage", "measure"])
    assert np.isnan(lone.loc[("HSPC", "fidelity"), "mean"])


def test_presence_calls_present_absent_and_novel():
    table = pr.lineage_presence(_planted_counts(1))
    call = table.set_index(["sample", "lineage"])["status"]
    for s in table["sample"].unique():
        for lineage in ("B", "T", "NK"):
            assert call[(s, lineage)] == "absent", (s, lineage)
        for lineage in ("HSPC", "myeloid", "erythroid", "stromal"):
            assert call[(s, lineage)] == "present", (s, lineage)
    # megakaryocytes are not made at week 1 and are made from week 2
    assert call[("organoid_week1_r1", "megakaryocyte")] == "absent"
    assert call[("organoid_week6_r1", "megakaryocyte")] == "present"
    assert call[("organoid_week4_r1", "novel")] == "present"
    row = table.set_index(["sample", "lineage"]).loc[("organoid_week4_r1", "myeloid")]
    assert row["ci_low"] < row["fraction"] < row["ci_high"]
    summary = pr.presence_summary(table).set_index("sample")["summary"]
    assert "B, T, NK absent" in summary["organoid_week4_r1"]
    assert "novel (stromal-like)" in summary["organoid_week4_r1"]


def test_detection_limit_depends_on_cell_number():
    kw = {"background_rate": 0.005, "alpha": 0.05, "min_cells": 3}
    small, large = pr.detection_limit(100, **kw), pr.detection_limit(5000, **kw)
    assert large < small
    # at the detection limit a lineage is called present in ~80% of samples (binomial simulation)
    rng = np.random.default_rng(0)
    k = rng.binomial(1000, pr.detection_limit(1000, **kw), size=4000)
    called = [pr.presence_status(int(x), 1000, expected_fraction=0.02, **kw)[0] == "present" for x in k]
    assert 0.77 <= np.mean(called) <= 0.83
    # 0 of 60 cells cannot show that a 2% lineage is absent; 0 of 2000 can
    assert pr.presence_status(0, 60, expected_fraction=0.02, **kw)[0] == "undetermined"
    assert pr.presence_status(0, 2000, expected_fraction=0.02, **kw)[0] == "absent"


def test_over_and_under_representation_against_in_vivo():
    kw = {"expected_fraction": 0.1, "background_rate": 0.005, "alpha": 0.05, "min_cells": 3}
    assert pr.presence_status(60, 300, invivo_fraction=0.1, **kw)[0] == "over-represented"
    assert pr.presence_status(10, 300, invivo_fraction=0.1, **kw)[0] == "under-represented"
    assert pr.presence_status(30, 300, invivo_fraction=0.1, **kw)[0] == "present"


def test_clopper_pearson_matches_known_values():
    lo, hi = pr.clopper_pearson(np.array([0, 5]), np.array([10, 10]))
    assert hi[0] == pytest.approx(0.3085, abs=1e-4)
    assert lo[1] == pytest.approx(0.1871, abs=1e-4)
    assert hi[1] == pytest.approx(0.8129, abs=1e-4)


def test_profile_path_recovers_the_planted_lineages(tmp_path):
    """Cells simulated from the shipped profiles, mapped back onto them: lineage composition MAE <= 0.05,
    the off-reference state is called novel, B/T/NK are absent."""
    from hscseq import fidelity
    from hscseq.fidelity import map_to_profiles, profiles

    specs = [s for s in datasets.organoid_specs_from_profiles(250, seed=3) if s.replicate == "r1"]
    sims = datasets.simulate_organoids(specs, seed=3)
    adata = ad.concat(list(sims.values()))
    adata = adata[~adata.obs["is_doublet"] & ~adata.obs["is_low_quality"]].copy()
    map_to_profiles(adata, layer=None, random_state=0)
    counts = pr.lineage_counts(adata)
    hier = {**pr.default_hierarchy(), "endothelial_like": "novel"}
    truth = adata.obs.assign(lineage=adata.obs["true_cell_type"].map(hier))
    errors = []
    for s, g in counts.groupby("sample"):
        planted = truth[truth["sample"] == s]["lineage"].value_counts(normalize=True)
        measured = g.set_index("lineage")["n_lineage"] / g["n_sample"].iloc[0]
        errors.append((measured - planted.reindex(measured.index).fillna(0)).abs().mean())
    assert max(errors) <= 0.05
    nov = truth["true_cell_type"].eq("endothelial_like").to_numpy()
    assert adata.obs["novel"].to_numpy()[nov].mean() > 0.9
    assert adata.obs["novel"].to_numpy()[~nov].mean() < 0.02
    table = pr.lineage_presence(counts).set_index(["sample", "lineage"])
    lymphoid = table.loc[[(s, x) for s in counts["sample"].unique() for x in ("B", "T", "NK")]]
    # ~230 cells per organoid: a 2% lineage could be missed, so the call is "undetermined", never "present"
    assert set(lymphoid["status"]) == {"undetermined"}
    assert (lymphoid["detection_limit"] > 0.02).all()
    # the profile-only path draws its scorecard figure (no in vivo composition: it used to raise KeyError)
    cfg = fidelity.FidelitySettings.from_config({"n_bootstrap": 20})
    table, comp = profiles._profile_scorecard(adata, cfg)
    assert "invivo_fraction" not in comp
    from hscseq._plotting import save_and_close
    from hscseq.fidelity.plot import scorecard_figure

    save_and_close(scorecard_figure(table, comp, pd.DataFrame()), tmp_path / "fidelity.png")
    tc = fidelity.timecourse(table, comp)
    assert set(tc["timepoint"]) == {"week1", "week2", "week4", "week6"}
    assert (tmp_path / "fidelity.png").stat().st_size > 10_000


def test_run_lineages_writes_tables_and_figures(tmp_path):
    """Stage entry on a mapped object (profile reference): tables, a summary line per sample, figures."""
    counts = _planted_counts(2, n=200)
    hier = pr.default_hierarchy()
    first_type = {lin: child for child, lin in reversed(list(hier.items()))}
    obs_rows = []
    for r in counts.itertuples():
        label = "novel" if r.lineage == "novel" else first_type[r.lineage]
        for i in range(r.n_lineage):
            obs_rows.append(
                {
                    "sample": r.sample,
                    "condition": "organoid",
                    "timepoint": r.timepoint,
                    "predicted_label": label,
                    "closest_label": "Stromal" if label == "novel" else label,
                    "label_confidence": 0.9 if i < r.n_confident else 0.2,
                    "novel": label == "novel",
                }
            )
    obs = pd.DataFrame(obs_rows)
    obs.index = [f"c{i}" for i in range(len(obs))]
    adata = ad.AnnData(obs=obs, uns={"fidelity": {"params": {"method": "profiles"}, "labels": list(hier)}})
    adata.write_h5ad(tmp_path / "final.h5ad")
    out = {k: str(tmp_path / f"{k}.tsv") for k in ("summary", "presence", "timecourse", "trends")}
    figs = {k: str(tmp_path / f"{k}.png") for k in ("composition_figure", "fidelity_figure")}
    sheet = [{"sample": s, "replicate": s[-2:]} for s in counts["sample"].unique()]
    pr.run_lineages(final=str(tmp_path / "final.h5ad"), settings={}, samples=sheet, **out, **figs)
    presence = pd.read_csv(out["presence"], sep="\t", keep_default_na=False)
    assert set(presence["lineage"]) == set(hier.values()) | {"novel"}
    assert set(presence["replicate"]) == {"r1", "r2"}
    summary = pd.read_csv(out["summary"], sep="\t").set_index("sample")["summary"]
    assert "megakaryocyte" in summary["organoid_week6_r1"].split(" present")[0]
    assert "B, T, NK absent" in summary["organoid_week6_r1"] or "undetermined" in summary["organoid_week6_r1"]
    trends = pd.read_csv(out["trends"], sep="\t").set_index(["lineage", "measure"])
    assert trends.loc[("T", "fraction"), "trend"] == "never present"
    for f in figs.values():
        assert Path(f).stat().st_size > 10_000


def test_lineages_share_the_mapping_hierarchy_loader(tmp_path):
    """One mechanism: a user hierarchy in the mapping stage's TSV format (header, several levels, comments) is
    read by the same loader; cells the mapping left at a coarse ``"<parent> (uncertain)"`` label count in
    their lineage, and a cyclic file is refused naming the file and the config key."""
    path = tmp_path / "hierarchy.tsv"
    path.write_text(
        "# my labels\nchild\tparent\nCD4 naive\tCD4 T\nCD4 memory\tCD4 T\nCD4 T\tT\nMono\tmyeloid\n"
    )
    labels = ["CD4 naive", "CD4 T (uncertain)", "Mono", "novel"]
    obs = pd.DataFrame(
        {"sample": "s1", "condition": "organoid", "timepoint": "week1", "predicted_label": labels},
        index=[f"c{i}" for i in range(4)],
    )
    adata = ad.AnnData(obs=obs, uns={"fidelity": {"labels": ["CD4 naive", "CD4 memory", "Mono"]}})
    counts = pr.lineage_counts(adata, settings={"hierarchy": str(path)}).set_index("lineage")
    assert counts["n_lineage"].to_dict() == {"T": 2, "myeloid": 1, "novel": 1}
    path.write_text("a\tb\nb\ta\n")
    with pytest.raises(HscseqInputError, match=r"(?s)hierarchy\.tsv.*cycle.*lineages\.hierarchy"):
        pr.lineage_counts(adata, settings={"hierarchy": str(path)})


def test_in_vivo_composition_is_taken_as_mapped_so_mapping_error_cancels():
    """Two halves of one dataset must not differ: the query's lineages are mapped labels, so the in vivo
    fraction they are tested against is the in vivo cells' mapped (held-out) labels, not their own labels.
    Here the mapping calls 40% of true A cells B in both halves: B is present at its in vivo rate."""
    n = 400
    labels = np.array(["A"] * 300 + ["C"] * 100, dtype=object)
    mapped = labels.copy()
    mapped[:120] = "B"  # 120 of the 300 A cells mapped to B, in either half
    obs = pd.DataFrame(
        {
            "sample": ["ref"] * n + ["half2"] * n,
            "condition": ["in_vivo"] * n + ["engineered"] * n,
            "reference_label": np.concatenate([labels, [None] * n]),
            "predicted_label": np.concatenate([mapped, mapped]),
        },
        index=[f"c{i}" for i in range(2 * n)],
    )
    adata = ad.AnnData(obs=obs, uns={"fidelity": {"labels": ["A", "B", "C"]}})
    counts = pr.lineage_counts(adata)
    row = counts[counts["sample"] == "half2"].set_index("lineage")
    assert row.loc["B", "invivo_fraction"] == pytest.approx(0.3)  # mapped, not labelled (0)
    status = pr.lineage_presence(counts).set_index("lineage")["status"]
    assert set(status[["A", "B", "C"]]) == {"present"}
