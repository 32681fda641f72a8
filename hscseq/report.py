"""Self-contained HTML report: the fidelity scorecard first, then how it was reached.

Every figure is embedded as base64 PNG and every table inline, so ``results/report.html`` can be mailed or
archived as one file and opened without network access.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd

import hscseq
from hscseq._utils import atomic_path

logger = logging.getLogger(__name__)

_CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:0;color:#1d2433;background:#fafbfc}
header{background:#14325c;color:#fff;padding:1.2em 2em}header h1{margin:0;font-size:1.6em}
header p{margin:.3em 0 0;opacity:.85}nav{background:#e8edf5;padding:.5em 2em;position:sticky;top:0}
nav a{margin-right:1.2em;color:#14325c;text-decoration:none;font-weight:600}
main{padding:1em 2em;max-width:1300px}section{margin-bottom:2.5em}
h2{border-bottom:2px solid #14325c;padding-bottom:.2em}h3{margin-top:1.4em}
table{border-collapse:collapse;font-size:.85em;margin:.5em 0;display:block;overflow-x:auto;max-width:100%}
th,td{border:1px solid #cdd5e0;padding:.25em .5em;text-align:right;white-space:nowrap}
th{background:#eef2f8}td:first-child,th:first-child{text-align:left}
.warning{background:#fff4e0;border-left:5px solid #e69500;padding:.6em 1em;margin:.6em 0}
.note{color:#4a5568;font-size:.92em;max-width:60em}figure{margin:1em 0}
figure img{max-width:100%;border:1px solid #dde3ec;background:#fff}figcaption{font-size:.85em;color:#4a5568}
.grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(480px,1fr));gap:1em}
"""


def _table_html(df: pd.DataFrame, *, max_rows: int = 60) -> str:
    if df.empty:
        return '<p class="note">(empty table)</p>'
    shown = df.head(max_rows)
    body = shown.to_html(
        index=False, float_format=lambda x: f"{x:.3g}", na_rep="", border=0, classes="data", escape=True
    )
    if len(df) > max_rows:
        body += f'<p class="note">First {max_rows} of {len(df)} rows; the full table is in the results.</p>'
    return body


def _read_table(path: str | os.PathLike) -> pd.DataFrame:
    return pd.read_csv(path, sep="\t")


def _figure_html(path: str | os.PathLike, caption: str) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    alt = html.escape(caption)
    return (
        f'<figure><img alt="{alt}" src="data:image/png;base64,{data}"><figcaption>{alt}</figcaption></figure>'
    )


def _caption(path: str | os.PathLike) -> str:
    stem = Path(path).name.removesuffix(".png")
    return stem.replace("_", " ").replace(".", " ")


def _warnings_from(tables: Mapping[str, pd.DataFrame]) -> list[str]:
    """Collect the warnings that stages recorded in a ``warning``/``warnings`` column of their tables.

    A text column holds the warning itself; a boolean column flags the row (e.g. a metric below its bar),
    which is then described by its ``value`` and ``bar`` columns when present.
    """
    out = []
    for name, df in tables.items():
        for col in ("warning", "warnings"):
            if col not in df:
                continue
            key = df.columns[0]
            values = df[col]
            if values.dtype == bool or set(values.dropna().astype(str)) <= {"True", "False"}:
                for _, row in df[values.astype(str) == "True"].iterrows():
                    detail = (
                        f" ({row['value']:.3g} below the bar {row['bar']:.3g})"
                        if {"value", "bar"} <= set(df.columns)
                        else ""
                    )
                    out.append(f"{name}: {row[key]} flagged{detail}")
                continue
            for _, row in df[values.notna() & (values.astype(str) != "")].iterrows():
                out.append(f"{name}: {row[key]}: {row[col]}")
    return out


SECTION_TABLES = {
    "scorecard": (
        "Fidelity scorecard",
        "One row per engineered or organoid sample. See README, 'How to read "
        "the scorecard', for the meaning of every column and the fidelity index formula.",
    ),
    "fidelity_controls": (
        "Controls",
        "A held-out in vivo donor scored as a query should come out close to 1; "
        "a known off-target population close to 0.",
    ),
    "composition": (
        "Composition versus in vivo",
        "Fraction of each cell type per sample against the in vivo "
        "reference, with log2 fold change and bootstrap 95% CI.",
    ),
    "timecourse": ("Time course", "Composition and fidelity of organoid samples over time."),
    "hsc_programme": (
        "Native HSC programme",
        "Per sample: share of HSC-like cells (bootstrap 95% CI), share "
        "of the native HSC programme established in them, the genes missing, and the "
        "primitive versus definitive call.",
    ),
    "de": (
        "Differences explained",
        "Pseudobulk differential expression per matched cell type, engineered or organoid versus in vivo.",
    ),
    "qc_summary": (
        "Quality control",
        "Per sample: cells in, removed by each criterion, doublets, cells out, and the thresholds used.",
    ),
    "integration_metrics": (
        "Integration quality",
        "scib-metrics on the in vivo cells: batch mixing and conservation of the reference labels.",
    ),
    "markers": ("Cluster markers", "Top marker genes per Leiden cluster (Wilcoxon)."),
}


def write_report(
    html_path: str | os.PathLike,
    *,
    tables: Mapping[str, str | os.PathLike],
    figures: Sequence[str | os.PathLike] = (),
    qc_figures: Sequence[str | os.PathLike] = (),
    samples: Sequence[Mapping[str, str]] = (),
    title: str = "hscseq fidelity report",
) -> None:
    """Write the self-contained HTML report.

    Parameters
    ----------
    html_path
        Output file.
    tables
        Table name (e.g. ``scorecard``, ``qc_summary``) -> TSV path. Known names get their own section in a
        fixed order; others are appended.
    figures
        PNG files shown in the results sections (captions from the file names).
    qc_figures
        Per-sample QC PNG files.
    samples
        Sample-sheet rows (shown as the run's inputs).
    title
        Title of the report.
    """
    loaded = {name: _read_table(path) for name, path in tables.items()}
    nav, parts = [], []

    def section(anchor: str, heading: str, body: str) -> None:
        nav.append(f'<a href="#{anchor}">{html.escape(heading)}</a>')
        parts.append(f'<section id="{anchor}"><h2>{html.escape(heading)}</h2>{body}</section>')

    warnings = _warnings_from(loaded)
    if warnings:
        items = "".join(f'<div class="warning">{html.escape(w)}</div>' for w in warnings)
        section("warnings", "Warnings", items)

    figures_by_name = {Path(f).name: f for f in figures}
    placed: set[str] = set()

    def figures_for(prefixes: Sequence[str]) -> str:
        out = []
        for name, path in figures_by_name.items():
            if name not in placed and name.startswith(tuple(prefixes)):
                placed.add(name)
                out.append(_figure_html(path, _caption(path)))
        return f'<div class="grid">{"".join(out)}</div>' if out else ""

    figure_groups = {
        "scorecard": ["fidelity"],
        "composition": ["composition"],
        "timecourse": ["timecourse"],
        "hsc_programme": ["scores", "hsc", "signature"],
        "integration_metrics": ["umap", "integr"],
        "markers": ["markers", "dotplot"],
        "de": ["de"],
    }
    for name, (heading, note) in SECTION_TABLES.items():
        if name not in loaded:
            continue
        body = f'<p class="note">{html.escape(note)}</p>' + _table_html(loaded[name])
        body += figures_for(figure_groups.get(name, []))
        if name == "qc_summary" and qc_figures:
            body += (
                '<div class="grid">' + "".join(_figure_html(p, _caption(p)) for p in qc_figures) + "</div>"
            )
        section(name, heading, body)
    for name, df in loaded.items():
        if name not in SECTION_TABLES:
            section(name, name.replace("_", " ").capitalize(), _table_html(df))
    rest = [f for n, f in figures_by_name.items() if n not in placed]
    if rest:
        section(
            "figures",
            "More figures",
            '<div class="grid">' + "".join(_figure_html(p, _caption(p)) for p in rest) + "</div>",
        )
    if samples:
        cols = ["sample", "condition", "species", "batch", "timepoint", "donor", "format", "path"]
        df = pd.DataFrame(list(samples))
        section("inputs", "Inputs", _table_html(df[[c for c in cols if c in df]]))
    section("methods", "Methods and citations", _METHODS)

    stamp = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    doc = (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>"
        f"<header><h1>{html.escape(title)}</h1><p>hscseq {hscseq.__version__} &middot; {stamp} &middot; "
        f"{len(samples)} samples</p></header><nav>{''.join(nav)}</nav><main>{''.join(parts)}</main>"
        "</body></html>\n"
    )
    with atomic_path(html_path) as tmp:
        tmp.write_text(doc, encoding="utf-8")
    logger.info("report written to %s (%d sections, %.1f MB)", html_path, len(parts), len(doc) / 1e6)


_METHODS = """
<ul class="note">
<li>Quality control: per-sample adaptive thresholds (median &plusmn; k MADs), doublets with Scrublet
(Wolock et al. 2019, Cell Systems 8:281) through scanpy (Wolf et al. 2018, Genome Biology 19:15), cell-cycle
phase from the Tirosh et al. 2016 genes (Science 352:189).</li>
<li>Integration: scVI (Lopez et al. 2018, Nature Methods 15:1053; scvi-tools, Gayoso et al. 2022, Nature
Biotechnology 40:163), scANVI (Xu et al. 2021, Mol Syst Biol 17:e9620), Harmony (Korsunsky et al. 2019,
Nature Methods 16:1289); metrics from scib (Luecken et al. 2022, Nature Methods 19:41).</li>
<li>Clustering: Leiden (Traag et al. 2019, Scientific Reports 9:5233) on the integrated latent space.</li>
<li>Signatures: native HSC signatures of Calvanese et al. 2022 (Nature 604:534), Wilson et al. 2015 MolO genes
as used by hscScore (Hamey &amp; G&ouml;ttgens 2019, Exp Hematol 78:11), Eppert et al. 2011 HSC-R (Nature
Medicine 17:1086, via MSigDB), lineage markers of Giladi et al. 2018 and Baccin et al. 2019 (via HemaScopeR);
AUCell-style ranking (Aibar et al. 2017, Nature Methods 14:1083).</li>
<li>Reference: MGI one-to-one mouse-human orthologs; HematoMap human bone-marrow profiles (GPL-3, via
HemaScopeR); differential expression with PyDESeq2 (Muzellec et al. 2023, Bioinformatics 39:btad547).</li>
</ul>
"""


def run_report(
    *,
    html: str,
    settings: dict,
    samples: Sequence[Mapping[str, str]] = (),
    figures: Sequence[str] = (),
    qc_figures: Sequence[str] = (),
    **tables: str,
) -> None:
    """Workflow entry: every other named input is a TSV table shown under its name."""
    tables = {
        name: path
        for name, path in tables.items()
        if str(path).endswith((".tsv", ".tsv.gz")) and name not in ("cells",)
    }
    write_report(
        html,
        tables=tables,
        figures=list(figures),
        qc_figures=list(qc_figures),
        samples=samples,
        title=settings.get("title", "hscseq fidelity report"),
    )
