"""HTML building blocks of the report: page style, collapsible sortable tables with TSV download, figures."""

from __future__ import annotations

import base64
import html
import io
import os
from pathlib import Path

import pandas as pd

CSS = (Path(__file__).parent / "report.css").read_text()

SORT_JS = """
document.querySelectorAll('table.sortable').forEach(function(t){
  t.querySelectorAll('th').forEach(function(th, col){
    th.title='click to sort';
    th.addEventListener('click', function(){
      var body=t.tBodies[0], rows=Array.prototype.slice.call(body.rows);
      var asc = th.getAttribute('data-dir') !== 'asc';
      t.querySelectorAll('th').forEach(function(h){h.removeAttribute('data-dir');});
      th.setAttribute('data-dir', asc ? 'asc' : 'desc');
      rows.sort(function(a, b){
        var x=a.cells[col].textContent, y=b.cells[col].textContent;
        var nx=parseFloat(x), ny=parseFloat(y);
        var r = (!isNaN(nx) && !isNaN(ny)) ? nx-ny : x.localeCompare(y);
        return asc ? r : -r;
      });
      rows.forEach(function(r){body.appendChild(r);});
    });
  });
});
"""


MAX_DOWNLOAD_BYTES = 4_000_000  # a table's TSV embedded for download up to this size (base64)


def esc(text: object) -> str:
    return html.escape(str(text))


def fmt(x: object, digits: int = 3) -> str:
    if isinstance(x, float):
        return "" if pd.isna(x) else f"{x:.{digits}g}"
    return str(x)


def tsv_data_uri(df: pd.DataFrame) -> str:
    buf = io.StringIO()
    df.to_csv(buf, sep="\t", index=False)
    return "data:text/tab-separated-values;base64," + base64.b64encode(buf.getvalue().encode()).decode(
        "ascii"
    )


def table_html(
    df: pd.DataFrame, name: str, *, title: str | None = None, max_rows: int = 300, open_=False
) -> str:
    """A sortable table collapsed under a summary line, with the whole table downloadable as TSV."""
    if df.empty:
        return f'<p class="note">{esc(title or name)}: (empty table)</p>'
    shown = df.head(max_rows)
    body = shown.to_html(
        index=False, float_format=lambda x: f"{x:.3g}", na_rep="", border=0, classes="sortable", escape=True
    )
    more = f" (first {max_rows} shown; the download has all)" if len(df) > max_rows else ""
    uri = tsv_data_uri(df)
    if len(uri) > MAX_DOWNLOAD_BYTES:  # keep the report small: point to the file instead
        link = f'<span class="dl">full table: results/tables/{esc(name)}.tsv</span>'
    else:
        link = f'<a class="dl" download="{esc(name)}.tsv" href="{uri}">download TSV</a>'
    summary = f"Table: {esc(title or name)} &middot; {len(df)} rows{more}"
    return (
        f'<details class="table" data-table="{esc(name)}"{" open" if open_ else ""}>'
        f"<summary>{summary}{link}</summary>{body}</details>"
    )


def png_html(data: bytes, caption: str, *, name: str = "") -> str:
    b64 = base64.b64encode(data).decode("ascii")
    alt = esc(caption)
    return (
        f'<figure data-figure="{esc(name)}"><img alt="{alt}" src="data:image/png;base64,{b64}">'
        f"<figcaption>{alt}</figcaption></figure>"
    )


def figure_file_html(path: str | os.PathLike, caption: str | None = None) -> str:
    path = Path(path)
    return png_html(path.read_bytes(), caption or caption_from_name(path), name=path.name)


def caption_from_name(path: str | os.PathLike) -> str:
    stem = Path(path).name.removesuffix(".png")
    return stem.replace("_", " ").replace(".", " ")
