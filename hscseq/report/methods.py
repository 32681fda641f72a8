"""Methods: package versions, the full effective config, parameters per stage, a citation per method."""

from __future__ import annotations

import platform
from collections.abc import Mapping
from importlib.metadata import PackageNotFoundError, version

import pandas as pd

from hscseq.report._html import esc, table_html

PACKAGES = (
    "hscseq",
    "scanpy",
    "anndata",
    "scvi-tools",
    "torch",
    "snakemake",
    "leidenalg",
    "igraph",
    "harmonypy",
    "scib-metrics",
    "pydeseq2",
    "numpy",
    "scipy",
    "pandas",
    "scikit-learn",
    "umap-learn",
    "pynndescent",
    "matplotlib",
    "seaborn",
)

STAGE_DOC = {
    "ingest": "read every count matrix, check species and gene identifiers",
    "qc": "adaptive per-sample thresholds, doublets, cell-cycle phase",
    "merge": "concatenate samples on shared genes (one-to-one orthologs across species)",
    "integrate": "integration and integration metrics",
    "cluster": "Leiden clustering, UMAP, markers",
    "score": "native HSC and lineage signatures, HSC-like calls, HSC programme",
    "fidelity": "mapping onto the in vivo reference, novelty, scorecard, controls",
    "report": "this report",
}

CITATIONS = """
<ul class="note">
<li>Workflow: Snakemake (M&ouml;lder et al. 2021, F1000Research 10:33).</li>
<li>Quality control: per-sample adaptive thresholds (median &plusmn; k MADs), doublets with Scrublet
(Wolock et al. 2019, Cell Systems 8:281) and SOLO (Bernstein et al. 2020, Cell Systems 11:95) through scanpy
(Wolf et al. 2018, Genome Biology 19:15), cell-cycle phase from the Tirosh et al. 2016 genes
(Science 352:189).</li>
<li>Integration: scVI (Lopez et al. 2018, Nature Methods 15:1053; scvi-tools, Gayoso et al. 2022, Nature
Biotechnology 40:163), scANVI (Xu et al. 2021, Mol Syst Biol 17:e9620), scArches surgery (Lotfollahi et al.
2022, Nature Biotechnology 40:121), Harmony (Korsunsky et al. 2019, Nature Methods 16:1289); metrics from scib
(Luecken et al. 2022, Nature Methods 19:41).</li>
<li>Clustering and embedding: Leiden (Traag et al. 2019, Scientific Reports 9:5233) on the integrated latent
space; UMAP (McInnes et al. 2018, arXiv:1802.03426).</li>
<li>Signatures: native HSC signatures of Calvanese et al. 2022 (Nature 604:534), Wilson et al. 2015 MolO genes
as used by hscScore (Hamey &amp; G&ouml;ttgens 2019, Exp Hematol 78:11), Eppert et al. 2011 HSC-R (Nature
Medicine 17:1086, via MSigDB), lineage markers of Giladi et al. 2018 and Baccin et al. 2019 (via HemaScopeR);
control-gene scores against expression-matched genes (Tirosh et al. 2016, Science 352:189; scanpy's
score_genes), or AUCell-style ranking (Aibar et al. 2017, Nature Methods 14:1083) with
<code>score.method: aucell</code>.</li>
<li>Reference and fidelity: MGI one-to-one mouse-human orthologs; HematoMap human bone-marrow profiles (GPL-3,
via HemaScopeR); Jensen-Shannon divergence of compositions, cells of uncertain fine type counted by
probabilistic classify-and-count within their parent (Bella et al. 2010, IEEE ICDM, doi:10.1109/ICDM.2010.75);
pseudobulk differential expression with PyDESeq2
(Muzellec et al. 2023, Bioinformatics 39:btad547).</li>
</ul>
"""


def versions() -> pd.DataFrame:
    rows = [{"package": "python", "version": platform.python_version()}]
    for name in PACKAGES:
        try:
            rows.append({"package": name, "version": version(name)})
        except PackageNotFoundError:
            continue
    return pd.DataFrame(rows)


def stage_parameters(config: Mapping) -> pd.DataFrame:
    """One row per stage setting of the effective config (lists and maps written out)."""
    rows = []
    for stage, doc in STAGE_DOC.items():
        for key, value in (config.get(stage) or {}).items():
            rows.append({"stage": stage, "purpose": doc, "parameter": key, "value": str(value)})
    return pd.DataFrame(rows)


def methods_html(config: Mapping | None, provenance: Mapping | None = None) -> str:
    import yaml

    out = "<h3>Package versions</h3>" + table_html(
        versions(), "versions", title="package versions", open_=True
    )
    if provenance:
        from hscseq.provenance import methods_lines

        items = "".join(f"<li>{esc(line)}</li>" for line in methods_lines(provenance))
        out += (
            "<h3>Provenance (results/provenance.json)</h3>"
            f"<details><summary>versions, config hash and input checksums</summary><ul>{items}</ul></details>"
        )
    if config:
        out += "<h3>Parameters per stage</h3>"
        out += table_html(stage_parameters(config), "parameters", title="parameters per stage")
        text = yaml.safe_dump(dict(config), sort_keys=False, default_flow_style=None)
        out += (
            "<details><summary>The full effective config (config.yaml + overlays + --config)</summary>"
            f'<pre class="config">{esc(text)}</pre></details>'
        )
    return out + "<h3>Citations</h3>" + CITATIONS
