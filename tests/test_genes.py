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
