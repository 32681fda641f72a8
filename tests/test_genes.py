"""Gene identifiers: Ensembl lookups, human aliases, species evidence, orthologs, overlap checks."""

from __future__ import annotations

import numpy as np
import pytest

from hscseq import genes
from hscseq._utils import HscseqInputError


def test_symbol_ensembl_round_trip():
    assert genes.symbols_to_ensembl(["Gata1", "nope"], "mouse") == ["ENSMUSG00000031162", ""]
    assert genes.ensembl_to_symbols(["ENSG00000102145.15", "ENSG0"], "human") == ["GATA1", None]
    assert genes.is_ensembl("ENSMUSG00000031162", "mouse")
    assert not genes.is_ensembl("ENSMUSG00000031162", "human")


def test_human_aliases_resolve_to_10x_names_without_creating_duplicates():
    aliases = genes.alias_map("human")
    assert aliases["MLF1IP"] == "CENPU"  # old symbol
    assert aliases["FAM64A"] == "PIMREG"
    assert "GATA1" not in aliases  # current symbols are never renamed
    new, renames = genes.resolve_symbols(["MLF1IP", "GATA1"], "human")
    assert new == ["CENPU", "GATA1"]
    assert renames == {"MLF1IP": "CENPU"}
    new, renames = genes.resolve_symbols(["MLF1IP", "CENPU"], "human")  # target already present: keep both
    assert new == ["MLF1IP", "CENPU"]
    assert renames == {}
    assert genes.alias_map("mouse") == {}


def test_species_evidence_separates_mouse_and_human(demo_small):
    mouse = genes.species_evidence(list(demo_small["invivo_donor1"].var_names))
    human = genes.species_evidence(list(demo_small["organoid_week2"].var_names))
    assert mouse["mouse"] > 0.95
    assert mouse["human"] < 0.05
    assert human["human"] > 0.95
    assert human["mouse"] < 0.05


def test_make_unique_is_deterministic_and_avoids_taken_names():
    assert genes.make_unique(["A", "B", "A", "A-1", "A"]) == ["A", "B", "A-2", "A-1", "A-3"]


def test_orthologs_are_one_to_one_and_use_10x_human_names():
    table = genes.one2one_orthologs()
    assert not table["mouse_symbol"].duplicated().any()
    assert not table["human_symbol"].duplicated().any()
    m2h = genes.ortholog_map("mouse", "human")
    assert m2h["Gata1"] == "GATA1"
    assert m2h["mt-Co1"] == "MT-CO1"
    assert m2h["Prpf4b"] == "PRPF4B"  # HGNC renamed it PRP4K; human 10x data still call it PRPF4B
    assert genes.convert_symbols(["Gata1", "Gm12345"], "mouse", "human") == ["GATA1", None]


def test_to_species_keeps_counts_and_drops_genes_without_ortholog(demo_small):
    mouse = demo_small["invivo_donor1"]
    human = genes.to_species(mouse, "human")
    assert human.n_obs == mouse.n_obs
    assert 0.9 * mouse.n_vars < human.n_vars <= mouse.n_vars
    assert "GATA1" in human.var_names
    assert "Gata1" not in human.var_names
    i_m, i_h = mouse.var_names.get_loc("Gata1"), human.var_names.get_loc("GATA1")
    np.testing.assert_array_equal(mouse.X[:, i_m].toarray(), human.X[:, i_h].toarray())
    assert human.var.loc["GATA1", "source_symbol"] == "Gata1"
    assert human.var.loc["GATA1", "gene_id"] == "ENSG00000102145"
    assert "Gata1" in mouse.var_names  # input untouched
    same = genes.to_species(mouse, "mouse")
    assert same.shape == mouse.shape
    with pytest.raises(HscseqInputError, match="one-to-one human ortholog"):
        genes.to_species(mouse, "human", min_overlap=mouse.n_vars)


def test_check_overlap_stops_below_minimum():
    assert genes.check_overlap(["A", "B", "C"], ["A", "B"], what="sig", minimum=2) == 1.0
    with pytest.raises(HscseqInputError, match="only 1 of 10 genes overlap") as info:
        genes.check_overlap(["A"], list("ABCDEFGHIJ"), what="HSC signature", minimum=0.5, sample="s1")
    assert "sample 's1'" in str(info.value)
    assert "What to do:" in str(info.value)


def test_mouse_embryonic_globins_survive_the_move_to_human(demo_small):
    """Many-to-one rule: Hbb-y + Hbb-bh1 -> HBE1 (summed), Hba-x -> HBZ; HOX genes are one-to-one."""
    eng = demo_small["engineered_7TF"]
    human = genes.to_species(eng, "human")
    for gene in ("HBE1", "HBZ", "HBB", "HBA1", "HOXA9", "HOXB5"):
        assert gene in human.var_names, gene
    summed = eng[:, ["Hbb-y", "Hbb-bh1"]].X.sum(axis=1)
    np.testing.assert_array_equal(np.asarray(summed).ravel(), human[:, "HBE1"].X.toarray().ravel())
    assert set(human.var.loc["HBE1", "source_symbol"].split(",")) == {"Hbb-y", "Hbb-bh1"}
    # the embryonic globin still marks the primitive erythroid cells after the move
    prim = eng.obs["true_cell_type"].eq("primitive_erythroid").to_numpy()
    hbe1 = human[:, "HBE1"].X.toarray().ravel()
    assert hbe1[prim].mean() > 20 * hbe1[~prim].mean()
    # and the reverse: human embryonic/fetal beta globins -> Hbb-y, a many-to-one gene HBQ1 <- Hbq1a, Hbq1b
    h2m = genes.cross_species_map("human", "mouse")
    assert h2m["HBE1"] == h2m["HBG1"] == h2m["HBG2"] == "Hbb-y"
    assert genes.cross_species_map("mouse", "human")["Hbq1b"] == "HBQ1"
    # genes without any such ortholog are still dropped, and one-to-one genes keep their counts
    assert "Gata1" in eng.var_names and "GATA1" in human.var_names


def test_curated_ortholog_families_are_whole_mgi_groups():
    pairs = genes.all_orthologs()
    for row in genes.ortholog_families().itertuples():
        mouse, human = set(row.mouse_genes.split(",")), set(row.human_genes.split(","))
        linked = pairs[pairs["mouse_symbol"].isin(mouse) | pairs["human_symbol"].isin(human)]
        assert set(linked["mouse_symbol"]) == mouse, row.family
        assert set(linked["human_symbol"]) == human, row.family
        assert row.mouse_representative in mouse and row.human_representative in human
