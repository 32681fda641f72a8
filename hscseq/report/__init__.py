"""Self-contained HTML report a stem-cell biologist reads in five minutes: the verdict first.

Order: warnings (in colour), one verdict card per engineered/organoid sample (fidelity index on a 0-1 bar
against the held-out-donor band, parts, HSC-like share, lineage presence when a stage provides it, and a
plain-language sentence whose numbers are the scorecard's), then figures with their tables collapsed below
(sortable, downloadable as TSV), an interactive UMAP, QC, and Methods (versions, config, parameters,
citations). Everything is inline (PNG as data URIs, JavaScript in the page): the file opens offline.
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

import hscseq
from hscseq._utils import atomic_path
from hscseq.report import figures as F
from hscseq.report._html import CSS, SORT_JS, esc, figure_file_html, png_html, table_html
from hscseq.report.methods import methods_html
from hscseq.report.umap import umap_cells, umap_html
from hscseq.report.verdict import cards_html, collect_warnings, sentence, stage_warnings, warnings_html

logger = logging.getLogger(__name__)

__all__ = ["run_report", "sentence", "stage_warnings", "write_report"]

# table name -> (section heading, note); tables of other names get a generic section
SECTION_NOTES = {
    "composition": "Fraction of each cell type per sample against the in vivo reference, with log2 fold "
    "change and bootstrap 95% CI; novel cells are their own category.",
    "timecourse": "Composition and fidelity of organoid samples over time.",
    "similarity": "Per matched cell type: pseudobulk similarity to in vivo, 1 = as close as two real donors.",
    "hsc_programme": "Per sample: share of HSC-like cells (bootstrap 95% CI), share of the native HSC "
    "programme established in them, the genes missing, and the primitive versus definitive call.",
    "de": "Pseudobulk differential expression per matched cell type, engineered or organoid versus in vivo.",
    "qc_summary": "Per sample: cells in, removed by each criterion, doublets, cells out, and the thresholds "
    "used.",
    "integration_metrics": "scib-metrics on the in vivo cells: batch mixing and conservation of the labels.",
}
KNOWN_TABLES = {
    "scorecard",
    "fidelity_controls",
    "composition",
    "timecourse",
    "hsc_programme",
    "hsc_missing_genes",
    "signature_coverage",
    "de",
    "qc_summary",
    "integration_metrics",
    "markers",
    "presence",
    "lineage_presence",
    "lineage_summary",
    "lineage_trends",
}


def _hsc_labels(cells: pd.DataFrame, config: Mapping) -> list[str]:
    wanted = set((config.get("score") or {}).get("reference_hsc_labels") or [])
    if (config.get("fidelity") or {}).get("hsc_label"):
        wanted.add(config["fidelity"]["hsc_label"])
    present = set(cells.loc[cells["condition"] == "in_vivo", "predicted_label"].astype(str))
    found = sorted(present & wanted)
    return found or sorted(p for p in present if "HSC" in p)[:1]


class _Page:
    def __init__(self) -> None:
        self.nav: list[str] = []
        self.parts: list[str] = []

    def section(self, anchor: str, heading: str, body: str) -> None:
        self.nav.append(f'<a href="#{anchor}">{esc(heading)}</a>')
        self.parts.append(f'<section id="{anchor}"><h2>{esc(heading)}</h2>{body}</section>')


def _note(name: str) -> str:
    return f'<p class="note">{esc(SECTION_NOTES[name])}</p>' if name in SECTION_NOTES else ""


def _figures_named(figures: Sequence[str | os.PathLike], prefixes: Sequence[str], placed: set[str]) -> str:
    out = []
    for f in figures:
        name = Path(f).name
        if name not in placed and name.startswith(tuple(prefixes)):
            placed.add(name)
            out.append(figure_file_html(f))
    return "".join(out)


def _verdict(page: _Page, t: Mapping[str, pd.DataFrame], colours, figures, placed) -> None:
    sc = t.get("scorecard")
    if sc is None:
        return
    body = (
        '<p class="note">One card per engineered or organoid sample. The bar shows the fidelity index (dark '
        "tick) with its 95% CI (blue) on 0-1; the green band is where held-out in vivo cells score (positive "
        "control: each in vivo donor held out in turn, or 20% of a single donor), the orange line the "
        "off-target control. See README, 'How to read the scorecard'.</p>"
    )
    if sc.empty:
        body += '<p class="note">No engineered or organoid sample in this run.</p>'
    else:
        body += cards_html(
            sc,
            controls=t.get("fidelity_controls"),
            programme=t.get("hsc_programme"),
            presence=t.get("lineage_presence", t.get("presence")),
            colours=colours,
        )
    stage_fig = _figures_named(figures, ["fidelity"], placed)
    if stage_fig:
        body += f"<details><summary>Scorecard figure of the fidelity stage</summary>{stage_fig}</details>"
    body += table_html(sc, "scorecard", title="scorecard (every column, with CIs)")
    if "fidelity_controls" in t:
        body += table_html(t["fidelity_controls"], "fidelity_controls", title="controls")
    page.section("verdict", "Verdict per sample", body)


def _composition(page: _Page, t, colours, figures, placed) -> None:
    comp = t.get("composition")
    if comp is None or comp.empty:
        return
    fig = png_html(
        F.to_png(F.composition_figure(comp, colours, scorecard=t.get("scorecard"))),
        "Composition per sample (by time point) beside the in vivo reference",
        name="composition",
    )
    heat = (  # (a profile reference has no per-type similarity to in vivo cells)
        png_html(
            F.to_png(F.similarity_heatmap(comp)),
            "Similarity to in vivo per sample and matched type",
            name="similarity",
        )
        if "similarity" in comp
        else ""
    )
    page.section(
        "composition",
        "Composition versus in vivo",
        _note("composition")
        + fig
        + _figures_named(figures, ["composition"], placed)
        + table_html(comp, "composition"),
    )
    page.section("similarity", "Similarity per cell type", _note("similarity") + heat)
    # the organoid stage's time-course figures and lineage tables have their slot here; without organoid
    # timepoints the time-course figures are placeholders: left out (their tables stay, empty)
    tc = t.get("timecourse")
    if tc is not None and tc.empty:
        placed.update(Path(f).name for f in figures if Path(f).name.startswith("timecourse"))
    body = _note("timecourse") + _figures_named(figures, ["timecourse", "lineage"], placed)
    for name in ("lineage_summary", "lineage_presence", "lineage_trends", "timecourse"):
        if name in t:
            body += table_html(t[name], name, open_=name == "lineage_summary")
    if body != _note("timecourse"):
        page.section("timecourse", "Lineages and time course", body)


def _hsc(page: _Page, t, cells, config, figures, placed) -> None:
    body = _note("hsc_programme")
    if cells is not None and "hsc_score" in cells:
        queries = t["scorecard"]["sample"].tolist() if "scorecard" in t else []
        prog = t.get("hsc_programme")
        threshold = None
        if prog is not None and "hsc_threshold" in prog and prog["hsc_threshold"].notna().any():
            threshold = float(prog["hsc_threshold"].dropna().iloc[0])
        fig = F.hsc_score_figure(
            cells, _hsc_labels(cells, config), query_samples=queries, threshold=threshold
        )
        body += png_html(F.to_png(fig), "HSC score per sample against in vivo HSCs", name="hsc_scores")
    body += _figures_named(figures, ["scores", "hsc", "signature"], placed)
    for name, title in (
        ("hsc_programme", "HSC programme per sample"),
        ("hsc_missing_genes", "native HSC genes: detection and level against in vivo HSCs"),
        ("signature_coverage", "signature coverage"),
    ):
        if name in t:
            body += table_html(t[name], name, title=title)
    page.section("hsc_programme", "Native HSC programme", body)


def _umap(page: _Page, final, cells, colours, samples_order, figures, placed) -> None:
    if final is None:
        return
    df = umap_cells(final, cells)
    body = umap_html(df, colours, F.sample_palette(samples_order))
    static = _figures_named(figures, ["umap"], placed)
    if static:
        body += f"<details><summary>Static UMAP of the cluster stage</summary>{static}</details>"
    page.section("umap", "Cells on the UMAP", body)


def _qc_integration(page: _Page, t, figures, qc_figures, placed) -> None:
    if "qc_summary" in t:
        qc = t["qc_summary"]
        body = _note("qc_summary") + png_html(
            F.to_png(F.qc_figure(qc)), "Quality control per sample", name="qc"
        )
        body += table_html(qc, "qc_summary")
        if qc_figures:
            body += '<details><summary>Per-sample QC figures</summary><div class="grid">'
            body += "".join(figure_file_html(p) for p in qc_figures) + "</div></details>"
        page.section("qc_summary", "Quality control", body)
    if "de" in t:
        page.section(
            "de",
            "Differences explained",
            _note("de") + _figures_named(figures, ["de"], placed) + table_html(t["de"], "de"),
        )
    body = _note("integration_metrics") + _figures_named(figures, ["integr", "markers", "dotplot"], placed)
    for name in ("integration_metrics", "markers"):
        if name in t:
            body += table_html(t[name], name)
    if body != _note("integration_metrics"):
        page.section("integration", "Integration and clusters", body)


def _read_tsv(path: str | Path) -> pd.DataFrame:
    """A results table; a table written without columns (e.g. no DE or controls on a profile reference) is
    an empty frame."""
    try:
        return pd.read_csv(path, sep="\t")
    except pd.errors.EmptyDataError:
        return pd.DataFrame()


def write_report(
    html_path: str | os.PathLike,
    *,
    tables: Mapping[str, str | os.PathLike],
    figures: Sequence[str | os.PathLike] = (),
    qc_figures: Sequence[str | os.PathLike] = (),
    samples: Sequence[Mapping[str, str]] = (),
    title: str = "hscseq fidelity report",
    final: str | os.PathLike | None = None,
    cells: str | os.PathLike | None = None,
    config: Mapping[str, Any] | None = None,
    provenance: Mapping[str, Any] | None = None,
) -> None:
    """Write the self-contained HTML report.

    Parameters
    ----------
    html_path
        Output file (written atomically).
    tables
        Table name (``scorecard``, ``composition``, ``qc_summary``, ...) -> TSV path. Known names get their
        place; others (e.g. a ``presence`` table of another stage) a generic section.
    figures
        Stage PNGs placed by name prefix (fidelity, scores, umap, markers, timecourse ...).
    qc_figures
        Per-sample QC PNGs.
    samples
        Sample-sheet rows (the run's inputs).
    title
        Title of the report.
    final
        ``results/anndata/integrated.h5ad`` (UMAP coordinates for the interactive view).
    cells
        ``results/tables/cells.tsv.gz`` (per-cell values: HSC score distributions, UMAP hover).
    config
        The effective config (Methods: full config and parameters per stage).
    provenance
        The run's provenance record (:func:`hscseq.provenance.load`), listed in Methods.
    """
    config = dict(config or {})
    t = {name: _read_tsv(path) for name, path in tables.items()}
    cell_table = pd.read_csv(cells, sep="\t") if cells is not None else None
    types: set[str] = set()
    for df in (t.get("composition"), cell_table):
        if df is not None:
            col = "cell_type" if "cell_type" in df else "predicted_label"
            types |= set(df[col].dropna().astype(str))
    colours = F.palette(types, F.lineage_groups(t.get("composition")))  # a lineage's types: one hue
    sample_names = [str(s["sample"]) for s in samples] or (
        sorted(cell_table["sample"].unique()) if cell_table is not None else []
    )
    figures = [Path(f) for f in figures]
    for f in [*figures, *map(Path, qc_figures)]:
        if not f.is_file():
            raise FileNotFoundError(f"report figure {f} does not exist")
    placed: set[str] = set()
    page = _Page()
    settings = {**(config.get("score") or {}), **(config.get("qc") or {})}
    page.section("warnings", "Warnings", warnings_html(collect_warnings(t, settings)))
    _verdict(page, t, colours, figures, placed)
    _composition(page, t, colours, figures, placed)
    _hsc(page, t, cell_table, config, figures, placed)
    _umap(page, final, cell_table, colours, sample_names, figures, placed)
    _qc_integration(page, t, figures, qc_figures, placed)
    for name, df in t.items():
        if name not in KNOWN_TABLES:
            page.section(name, name.replace("_", " ").capitalize(), table_html(df, name, open_=True))
    rest = [f for f in figures if f.name not in placed]
    if rest:
        page.section("figures", "More figures", "".join(figure_file_html(f) for f in rest))
    if samples:
        cols = [
            "sample",
            "condition",
            "species",
            "technology",
            "batch",
            "timepoint",
            "donor",
            "format",
            "path",
        ]
        df = pd.DataFrame(list(samples))
        page.section("inputs", "Inputs", table_html(df[[c for c in cols if c in df]], "samples", open_=True))
    page.section("methods", "Methods", methods_html(config, provenance))
    stamp = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    doc = (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{esc(title)}</title><style>{CSS}</style></head><body>"
        f"<header><h1>{esc(title)}</h1><p>hscseq {hscseq.__version__} &middot; {stamp} &middot; "
        f"{len(samples)} samples</p></header><nav>{''.join(page.nav)}</nav><main>{''.join(page.parts)}</main>"
        f"<script>{SORT_JS}</script></body></html>\n"
    )
    with atomic_path(html_path) as tmp:
        tmp.write_text(doc, encoding="utf-8")
    logger.info("report written to %s (%d sections, %.1f MB)", html_path, len(page.parts), len(doc) / 1e6)


def run_report(
    *,
    html: str,
    settings: dict,
    samples: Sequence[Mapping[str, str]] = (),
    figures: Sequence[str] = (),
    qc_figures: Sequence[str] = (),
    final: str | None = None,
    cells: str | None = None,
    config: Mapping[str, Any] | None = None,
    provenance_record: str | None = None,
    **tables: str,
) -> None:
    """Workflow entry: every other named input is a TSV table shown under its name; ``provenance_record``
    (``results/provenance.json``) is listed in Methods."""
    from hscseq import provenance

    record = provenance.load(provenance_record) if provenance_record else None
    tables = {name: path for name, path in tables.items() if str(path).endswith((".tsv", ".tsv.gz"))}
    write_report(
        html,
        tables=tables,
        figures=list(figures),
        qc_figures=list(qc_figures),
        samples=samples,
        title=settings.get("title", "hscseq fidelity report"),
        final=final,
        cells=cells,
        config=config,
        provenance=record,
    )
