"""Curated cell-type programmes of the simulator: marker genes, cell types as programme mixtures."""

from __future__ import annotations

#: Curated marker programmes (mouse MGI symbols). Sources: Giladi et al. 2018 and Baccin et al. 2019 (via the
#: HemaScopeR lineage lists), Wilson et al. 2015 MolO genes (hscScore), Paul et al. 2015 cluster markers,
#: Calvanese et al. 2022 (HSC, hemogenic endothelium) and classic marker genes of each lineage.
PROGRAMMES: dict[str, tuple[str, ...]] = {
    "HSC": (
        "Procr",
        "Hlf",
        "Mecom",
        "Mllt3",
        "Hoxb5",
        "Slamf1",
        "Fgd5",
        "Ly6a",
        "Vwf",
        "Meis1",
        "Gata2",
        "Ctnnal1",
        "Esam",
        "Sult1a1",
        "Cldn10",
        "Ramp2",
        "Cdkn1c",
        "Sox18",
        "Mpl",
        "Bmi1",
        "Hoxa9",
        "Spink2",
        "Pdzk1ip1",
        "Txnip",
    ),
    "MPP": ("Cd34", "Kit", "Flt3", "Mki67", "Calr", "Cdk6", "Hopx", "Ifitm1"),
    "LMPP": ("Dntt", "Satb1", "Il7r", "Flt3", "Cd7", "Blnk", "Lsp1"),
    "GMP": ("Mpo", "Elane", "Ctsg", "Prtn3", "Ms4a3", "Cebpa", "Cebpe", "Ms4a6c", "Fcgr3"),
    "MEP": ("Gata1", "Klf1", "Zfpm1", "Car1", "Car2", "Cd36", "Nfe2", "Tal1"),
    "MkP": ("Pf4", "Itga2b", "Gp9", "Gp1bb", "Ppbp", "Gp5", "Treml1", "Clec1b"),
    "erythroid": ("Hbb-bs", "Hba-a1", "Alas2", "Gypa", "Tfrc", "Epor", "Slc4a1", "Rhd", "Spta1", "Add2"),
    "monocyte": ("Csf1r", "Lyz2", "Ly6c2", "Cx3cr1", "Ccr2", "Fcgr1", "Irf8", "Ms4a7", "Emr1", "Cd14"),
    "neutrophil": ("Ltf", "Camp", "Ngp", "S100a8", "S100a9", "Lcn2", "Chil3", "Mmp8", "Cxcr2"),
    "B": ("Cd79a", "Cd79b", "Cd19", "Ebf1", "Pax5", "Vpreb3", "Ms4a1", "Igll1", "Blk"),
    "T_NK": ("Cd3e", "Cd3g", "Nkg7", "Gzma", "Klrd1", "Ccl5", "Il2rb", "Cd3d", "Lck"),
    "hemogenic_endothelium": (
        "Cdh5",
        "Pecam1",
        "Kdr",
        "Sox17",
        "Tie1",
        "Emcn",
        "Gja5",
        "Sox7",
        "Flt1",
        "Egfl7",
        "Cd93",
        "Eng",
    ),
    "primitive_erythroid": (
        "Hbb-y",
        "Hba-x",
        "Hbb-bh1",
        "Gata1",
        "Klf1",
        "Alas2",
        "Gypa",
        "Lin28b",
        "Igf2bp1",
    ),
}

#: Cell types as weighted mixtures of programmes (the hierarchy shares programmes with its neighbours).
CELL_TYPES: dict[str, dict[str, float]] = {
    "HSC": {"HSC": 1.0, "MPP": 0.3},
    "MPP": {"MPP": 1.0, "HSC": 0.35},
    "LMPP": {"LMPP": 1.0, "MPP": 0.5},
    "GMP": {"GMP": 1.0, "MPP": 0.3},
    "MEP": {"MEP": 1.0, "MPP": 0.25, "erythroid": 0.2},
    "MkP": {"MkP": 1.0, "MEP": 0.35, "HSC": 0.15},
    "erythroid": {"erythroid": 1.0, "MEP": 0.4},
    "monocyte": {"monocyte": 1.0, "GMP": 0.2},
    "neutrophil": {"neutrophil": 1.0, "GMP": 0.3},
    "B": {"B": 1.0, "LMPP": 0.15},
    "T_NK": {"T_NK": 1.0},
    "hemogenic_endothelium": {"hemogenic_endothelium": 1.0, "HSC": 0.15},
    "primitive_erythroid": {"primitive_erythroid": 1.0, "MEP": 0.2},
}

#: States that an adult bone-marrow reference does not contain.
OFFTARGET_TYPES = ("hemogenic_endothelium", "primitive_erythroid")


_CYCLING_SHARE = {"HSC": 0.1, "hemogenic_endothelium": 0.15}  # others: 0.45 of cells in S or G2M
_MITO_GENES = (
    "mt-Nd1",
    "mt-Nd2",
    "mt-Co1",
    "mt-Co2",
    "mt-Atp8",
    "mt-Atp6",
    "mt-Co3",
    "mt-Nd3",
    "mt-Nd4l",
    "mt-Nd4",
    "mt-Nd5",
    "mt-Nd6",
    "mt-Cytb",
)
