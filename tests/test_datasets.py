"""The one seeded simulator: reproducible, mission-shaped, realistic counts, truth in obs."""

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from hscseq import datasets


def test_same_seed_same_data_and_different_seed_different_data():
    specs = datasets.reference_specs(200, n_donors=1)
    a = datasets.simulate(specs, seed=3)["invivo_donor1"]
    b = datasets.simulate(specs, seed=3)["invivo_donor1"]
    c = datasets.simulate(specs, seed=4)["invivo_donor1"]
    assert (a.X != b.X).nnz == 0
    assert a.obs.equals(b.obs)
    assert (a.X != c.X).nnz > 0


def test_counts_are_realistic_and_sparse(demo_small):
    for name, adata in demo_small.items():
        assert sp.issparse(adata.X), name
        x = adata.X.data
        assert np.all(x == np.round(x)) and x.min() >= 1
        lib = np.asarray(adata.X.sum(axis=1)).ravel()[~adata.obs["is_low_quality"].to_numpy()]
        assert 2000 <= np.median(lib) <= 5000, name
        assert adata.X.nnz / np.prod(adata.shape) < 0.6
        mito = adata.var_names.str.lower().str.startswith("mt-")
        pct = np.asarray(adata[:, mito].X.sum(axis=1)).ravel() / np.asarray(adata.X.sum(axis=1)).ravel()
        lq = adata.obs["is_low_quality"].to_numpy()
        assert np.median(pct[lq]) > 3 * np.median(pct[~lq])
        assert 0.03 <= adata.obs["is_doublet"].mean() <= 0.05


def test_scenario_shapes(demo_small):
    ref = demo_small["invivo_donor1"]
    assert set(datasets.REFERENCE_COMPOSITION) <= set(ref.obs["true_cell_type"])
    assert not ref.obs["is_offtarget"].any()
    eng = demo_small["engineered_7TF"]
    assert set(datasets.OFFTARGET_TYPES) <= set(eng.obs["true_cell_type"])
    assert eng.uns["simulation"]["missing_hsc_genes"] == list(datasets.DEFAULT_MISSING_HSC_GENES)
    org = [demo_small[s] for s in ("organoid_week2", "organoid_week4")]
    assert [o.obs["timepoint"].iloc[0] for o in org] == ["week2", "week4"]
    assert all(o.var_names.str.isupper().mean() > 0.99 for o in org), "human symbols"
    assert "HLF" in org[0].var_names and "Hlf" in ref.var_names
    # the planted composition is what was simulated
    comp = org[1].obs["true_cell_type"].value_counts(normalize=True)
    for cell_type, frac in datasets.ORGANOID_COMPOSITIONS["week4"].items():
        assert abs(comp[cell_type] - frac) < 0.02


def test_programmes_mark_their_cell_types(demo_small):
    ref = demo_small["invivo_donor1"]
    norm = ref.X.multiply(1e4 / ref.X.sum(axis=1)).tocsr()
    for cell_type, genes in [
        ("HSC", ["Hlf", "Procr", "Mecom"]),
        ("erythroid", ["Hbb-bs", "Alas2"]),
        ("neutrophil", ["Ltf", "Camp"]),
    ]:
        idx = [ref.var_names.get_loc(g) for g in genes]
        expr = np.asarray(norm[:, idx].mean(axis=1)).ravel()
        is_type = (ref.obs["true_cell_type"] == cell_type).to_numpy() & ~ref.obs["is_doublet"].to_numpy()
        assert expr[is_type].mean() > 5 * expr[~is_type].mean(), cell_type
    # engineered HSC-like cells lack the planted genes but keep the rest of the programme
    eng = demo_small["engineered_7TF"]
    e_norm = eng.X.multiply(1e4 / eng.X.sum(axis=1)).tocsr()
    hsc_e = (eng.obs["true_cell_type"] == "HSC").to_numpy()
    hsc_r = (ref.obs["true_cell_type"] == "HSC").to_numpy()
    missing = eng.var_names.get_loc("Hlf")
    kept = eng.var_names.get_loc("Mllt3")
    assert e_norm[hsc_e, missing].mean() < 0.3 * norm[hsc_r, missing].mean()
    assert e_norm[hsc_e, kept].mean() > 0.4 * norm[hsc_r, kept].mean()


def test_batch_effect_between_donors():
    specs = datasets.reference_specs(300)
    out = datasets.simulate(specs, seed=0, batch_effect=0.5)
    a, b = (np.asarray(x.X.mean(axis=0)).ravel() for x in out.values())
    ratio = np.log((a + 0.1) / (b + 0.1))[(a > 1) & (b > 1)]
    assert ratio.std() > 0.3


def test_demo_regenerates_bit_identically(tmp_path):
    d1, d2 = tmp_path / "a", tmp_path / "b"
    datasets.write_demo(d1, scale=0.05)
    datasets.write_demo(d2, scale=0.05)
    assert datasets.sha256sums(d1) == datasets.sha256sums(d2)


def test_shipped_demo_is_what_the_generator_writes(tmp_path, repo):
    """resources/demo (both scenarios) is reproducible: `make demo-data` rewrites the same bytes."""
    demo = tmp_path / "demo"
    datasets.main(["demo", str(demo), "--sheet", str(tmp_path / "samples.tsv")])
    datasets.main(["organoid", str(demo / "organoid"), "--sheet", str(tmp_path / "samples_organoid.tsv")])
    shipped = datasets.sha256sums(repo / "resources" / "demo")
    assert datasets.sha256sums(demo) == shipped
    total = sum(p.stat().st_size for p in (repo / "resources" / "demo").rglob("*") if p.is_file())
    assert total <= 25e6
    for name in ("samples.tsv", "samples_organoid.tsv"):
        sheet = pd.read_csv(tmp_path / name, sep="\t", keep_default_na=False)
        config = pd.read_csv(repo / "config" / name, sep="\t", keep_default_na=False)
        assert sheet.drop(columns="path").equals(config.drop(columns="path")), name
        assert [p.split("demo/")[1] for p in sheet["path"]] == [p.split("demo/")[1] for p in config["path"]]


def test_organoid_scenario_is_human_with_replicates_and_a_planted_emergence():
    specs = datasets.organoid_specs_from_profiles(300, seed=0)
    weeks = pd.Series([s.timepoint for s in specs]).value_counts()
    assert set(weeks.index) == {"week1", "week2", "week4", "week6"} and (weeks >= 2).sum() >= 2
    sims = datasets.simulate_organoids(specs[:1] + specs[-1:], seed=0)
    first, last = sims.values()
    assert first.var_names.str.match(r"^[A-Z0-9-]+$").mean() > 0.95, "human symbols"
    assert {"HLF", "MECOM", "GATA1", "MT-CO1"} <= set(first.var_names)
    # megakaryocytes are absent at week 1 and ~10% at week 6; the off-reference state is planted throughout
    mk = {"MKP", "MK"}
    assert not first.obs["true_cell_type"].isin(mk).any()
    assert 0.05 < last.obs["true_cell_type"].isin(mk).mean() < 0.16
    assert 0.03 < last.obs["is_offtarget"].mean() < 0.14
    # the planted type profiles come from the shipped HematoMap profiles: an MK cell correlates best with MK
    from hscseq.fidelity import load_hematomap

    prof = load_hematomap()
    cells = last[last.obs["true_cell_type"].eq("MK").to_numpy() & ~last.obs["is_doublet"].to_numpy()]
    pseudo = np.asarray(cells[:, prof.index].X.sum(axis=0)).ravel()
    r = pd.Series(
        [np.corrcoef(np.log1p(pseudo), np.log1p(prof[c].to_numpy()))[0, 1] for c in prof.columns],
        prof.columns,
    )
    assert r.idxmax() == "MK"


@pytest.mark.parametrize("n_cells", [50_000])
def test_large_simulation_stays_sparse_and_fast(n_cells):
    import time

    start = time.perf_counter()
    spec = datasets.SampleSpec(
        sample="big",
        condition="in_vivo",
        n_cells=n_cells,
        composition=datasets.REFERENCE_COMPOSITION,
        batch="b",
        doublet_rate=0.0,
    )
    adata = datasets.simulate([spec], n_genes=2000)["big"]
    assert adata.n_obs == n_cells and sp.issparse(adata.X)
    assert time.perf_counter() - start < 120


def test_plate_experiment_reaches_a_whole_transcriptome_past_the_10x_table(repo):
    """55k genes: the 10x table's ~32k, then Ensembl-style IDs no table knows; the fill follows depth."""
    specs = [
        datasets.plate_spec("d1", 120, condition="in_vivo", donor="d1"),
        datasets.plate_spec("e1", 60),
    ]
    out = datasets.plate_samples(specs, n_genes=[30_000, 55_000], expected_counts=[False, True], seed=2)
    table = pd.read_csv(
        repo / "resources/genes/mouse_symbol_ensembl_10x.tsv", sep="\t", comment="#", dtype=str
    )
    genes = {s: a.var_names[~a.var_names.str.fullmatch(r"ERCC-\d{5}")] for s, a in out.items()}
    assert {s: len(g) for s, g in genes.items()} == {"d1": 30_000, "e1": 55_000}
    assert genes["e1"].is_unique
    ids = out["e1"].var["gene_ids"]
    unannotated = ids[~ids.isin(table["ensembl_gene_id"]) & ids.str.startswith("ENSMUSG")]
    assert len(unannotated) == out["e1"].uns["simulation"]["n_unannotated"] > 20_000
    assert unannotated.index.equals(pd.Index(unannotated))  # named by their ID, no symbol to give
    # one experiment: the same model (the HSC programme genes on in both), independent cells
    assert out["d1"].obs_names.intersection(out["e1"].obs_names).empty
    x = out["d1"].X
    assert np.all(x.data == np.round(x.data)) and not np.all(out["e1"].X.data == np.round(out["e1"].X.data))
    # a damaged cell is shallow in the filled genes too, not only in the simulated 2,000
    a = out["d1"]
    low = a.obs["is_low_quality"].to_numpy()
    fill = np.asarray(a.X[:, 2000:].sum(axis=1)).ravel()
    assert low.sum() >= 3 and np.median(fill[low]) < 0.5 * np.median(fill[~low])
    # a single spec is plate_sample itself
    one = datasets.plate_samples([datasets.plate_spec("plate_hsc", 40)], n_genes=3_000, seed=5)["plate_hsc"]
    again = datasets.plate_sample(40, n_genes=3_000, seed=5)
    assert (one.X != again.X).nnz == 0 and list(one.var_names) == list(again.var_names)
