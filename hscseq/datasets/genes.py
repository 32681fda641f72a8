"""Gene universe of the simulator: mouse symbols, MGI one-to-one human orthologs and Ensembl IDs."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd

from hscseq._utils import resource_path
from hscseq.datasets.programmes import _MITO_GENES, PROGRAMMES


def _read_table(name: str) -> pd.DataFrame:
    return pd.read_csv(resource_path("genes", name), sep="\t", comment="#", dtype=str)


def mouse_to_human_one2one() -> dict[str, str]:
    """MGI one-to-one mouse -> human symbol map (mitochondrial genes mapped to the 10x ``MT-`` names)."""
    table = _read_table("mouse_human_orthologs_mgi_one2one.tsv")
    mapping = dict(zip(table["mouse_symbol"], table["human_symbol"], strict=True))
    for gene in _MITO_GENES:
        mapping[gene] = "MT-" + gene[3:].upper()
    return mapping


def gene_universe(n_genes: int, *, seed: int = 0) -> list[str]:
    """Programme, cell-cycle, mitochondrial, ribosomal genes, then seeded background genes (mouse)."""
    mouse = _read_table("mouse_symbol_ensembl_10x.tsv")["gene_symbol"]
    known = set(mouse)
    one2one = mouse_to_human_one2one()
    cc = pd.read_csv(resource_path("genesets", "cell_cycle_mouse_hemascoper.tsv"), sep="\t", comment="#")
    genes: list[str] = []
    for programme in PROGRAMMES.values():
        genes.extend(programme)
    genes.extend(cc["Gene"])
    genes.extend(_MITO_GENES)
    ribo = sorted(g for g in known if g.startswith(("Rps", "Rpl")) and g in one2one and "-" not in g)
    genes.extend(ribo[:40])
    genes = [g for g in dict.fromkeys(genes) if g in known]
    if len(genes) > n_genes:
        msg = f"n_genes must be at least {len(genes)} (programme, cell-cycle, mito and ribosomal genes)"
        raise ValueError(msg)
    pool = sorted(
        g
        for g in dict.fromkeys(mouse)
        if g in one2one and g not in set(genes) and not g.startswith(("Gm", "mt-")) and not g.endswith("Rik")
    )
    rng = np.random.default_rng(seed)
    background = rng.choice(pool, size=n_genes - len(genes), replace=False)
    return genes + sorted(background.tolist())


def _annotate_genes(adata: ad.AnnData, species: str) -> ad.AnnData:
    """Rename to ``species`` symbols (one-to-one orthologs for human) and add Ensembl IDs."""
    if species == "human":
        mapping = mouse_to_human_one2one()
        keep = [g for g in adata.var_names if g in mapping]
        adata = adata[:, keep].copy()
        adata.var_names = [mapping[g] for g in keep]
        table = _read_table("human_symbol_ensembl_10x.tsv")
    elif species == "mouse":
        table = _read_table("mouse_symbol_ensembl_10x.tsv")
    else:
        msg = f"species must be 'mouse' or 'human', not {species!r}"
        raise ValueError(msg)
    ids = table.drop_duplicates("gene_symbol").set_index("gene_symbol")["ensembl_gene_id"]
    adata.var["gene_ids"] = ids.reindex(adata.var_names).fillna("").to_numpy()
    adata.var["feature_types"] = "Gene Expression"
    return adata
