"""Verdict first: one card per engineered/organoid sample and the warnings a reader must see at once.

The plain-language sentence is generated from the scorecard row (and the HSC programme table when present);
its numbers are the scorecard's, rounded for reading (``sentence_numbers`` lists them for the test).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from hscseq.fidelity.controls import SPLIT_DONOR
from hscseq.fidelity.profiles import PROFILE_SOURCE
from hscseq.report._html import esc
from hscseq.score.identity import CLASS_SLUGS

KNOWN_SCORECARD = {
    "sample",
    "condition",
    "timepoint",
    "n_cells",
    "programme_source",
    "closest_stage",
    "closest_stage_share",
    "confounded",
    "warning",
    "warnings",
}
PARTS = ("identity", "similarity", "programme", "composition")


def _num(row: Mapping, key: str) -> float:
    try:
        v = float(row.get(key, np.nan))
    except (TypeError, ValueError):
        return np.nan
    return v


def pct(x: float) -> str:
    return f"{100 * x:.0f}%"


def control_band(controls: pd.DataFrame | None) -> tuple[float, float] | None:
    """Range of the held-out-donor (positive control) fidelity CIs: where a real donor scores."""
    if controls is None or controls.empty or "kind" not in controls:
        return None
    pos = controls[controls["kind"] == "positive"]
    if pos.empty:
        return None
    lo = pos.get("fidelity_index_ci_low", pos["fidelity_index"]).astype(float).min()
    hi = pos.get("fidelity_index_ci_high", pos["fidelity_index"]).astype(float).max()
    return float(lo), float(hi)


def single_donor(controls: pd.DataFrame | None) -> bool:
    """True when the positive control held out part of the one in vivo donor, not another donor."""
    return bool(
        controls is not None
        and "held_out" in controls
        and len(controls)
        and (controls["held_out"].astype(str) == SPLIT_DONOR).all()
    )


def sentence(
    row: Mapping,
    programme: Mapping | None = None,
    band: tuple[float, float] | None = None,
    *,
    split: bool = False,
) -> str:
    """What the numbers of one scorecard row mean, in plain words (numbers as in scorecard.tsv, rounded).
    ``split``: the band comes from a held-out part of a single in vivo donor."""
    name = row["sample"]
    out = []
    f, lo, hi = (_num(row, k) for k in ("fidelity_index", "fidelity_index_ci_low", "fidelity_index_ci_high"))
    if np.isfinite(f):
        text = f"fidelity index {f:.2f} (95% CI {lo:.2f}-{hi:.2f}"
        if band is not None:
            who = "a held-out 20% of the one in vivo donor" if split else "held-out real donors"
            ref = "that donor's own cells" if split else "a real donor"
            text += f"; {who} {band[0]:.2f}-{band[1]:.2f}"
            verdict = f"within the range of {ref}" if hi >= band[0] else f"below the range of {ref}"
            text += f"), {verdict}"
        else:
            text += ")"
        out.append(text)
    parts = []
    if programme is not None and np.isfinite(_num(programme, "hsc_like_fraction")):
        p = programme
        parts.append(
            f"{pct(_num(p, 'hsc_like_fraction'))} HSC-like "
            f"(CI {pct(_num(p, 'hsc_like_ci_low'))}-{pct(_num(p, 'hsc_like_ci_high'))})"
        )
    prog = _num(row, "programme")
    if not np.isfinite(prog) and row.get("programme_source") == "unavailable":
        parts.append("HSC programme not assessed (no HSC type in the reference, no HSC programme scores)")
    if np.isfinite(prog):
        text = f"HSC programme {pct(prog)} established"
        missing = str((programme or {}).get("missing_genes", "") or "")
        genes = [g.strip() for g in missing.replace(";", ",").split(",") if g.strip() and g.strip() != "nan"]
        if genes:
            text += " - missing " + ", ".join(genes[:3])
        parts.append(text)
    novel = _num(row, "novel_share")
    if np.isfinite(novel):
        parts.append(
            f"{pct(novel)} (CI {pct(_num(row, 'novel_share_ci_low'))}-"
            f"{pct(_num(row, 'novel_share_ci_high'))}) off-target states with no in vivo counterpart"
            + (
                f" (held-out in vivo cells: {pct(ref_novel)})"
                if np.isfinite(ref_novel := _num(row, "reference_novel_share"))
                else ""
            )
        )
    if parts:
        out.append("; ".join(parts))
    scores = [
        f"{p} {_num(row, p):.2f}"
        for p in ("identity", "similarity", "composition")
        if np.isfinite(_num(row, p))
    ]
    if scores and row.get("programme_source") == PROFILE_SOURCE:
        out.append(", ".join(scores) + " (share of cells confidently mapped to a marrow type or its lineage)")
    elif scores:
        out.append(", ".join(scores) + " (1 = as close as a real donor)")
    return f"{name}: " + ". ".join(s[0].upper() + s[1:] for s in out) + "."


def _bar(row: Mapping, band, negative: float | None) -> str:
    f, lo, hi = (_num(row, k) for k in ("fidelity_index", "fidelity_index_ci_low", "fidelity_index_ci_high"))
    if not np.isfinite(f):
        return '<p class="note">no fidelity index (see the scorecard table)</p>'
    out = '<div class="bar" title="fidelity index with 95% CI; green band: held-out in vivo cells">'
    if band is not None:
        width = 100 * (band[1] - band[0])
        out += f'<div class="band" style="left:{100 * band[0]:.1f}%;width:{width:.1f}%"></div>'
    if negative is not None and np.isfinite(negative):
        out += f'<div class="neg" style="left:{100 * negative:.1f}%" title="off-target control"></div>'
    out += f'<div class="ci" style="left:{100 * lo:.1f}%;width:{100 * max(hi - lo, 0.004):.1f}%"></div>'
    out += f'<div class="pt" style="left:{100 * f:.1f}%"></div>'
    ticks = "".join(f'<span style="left:{t * 100:.0f}%">{t:g}</span>' for t in (0, 0.25, 0.5, 0.75, 1))
    return out + f'<div class="ticks">{ticks}</div></div>'


def _share(x: float) -> str:
    """A share of cells as a percentage (one decimal below 10%, so 0.1% does not read as 0)."""
    return f"{100 * x:.1f}%" if 100 * x < 10 else f"{100 * x:.0f}%"


def _kv(label: str, value: float, lo: float = np.nan, hi: float = np.nan, *, share: bool = False) -> str:
    """One part of a card: value [CI] and a mini bar; ``share``: a share of cells, in percent."""
    if not np.isfinite(value):
        return ""
    fmt = _share if share else (lambda x: f"{x:.2f}")
    ci = f" [{fmt(lo)}, {fmt(hi)}]" if np.isfinite(lo) and np.isfinite(hi) else ""
    bar = f'<div class="mini"><div style="width:{100 * min(max(value, 0), 1):.0f}%"></div></div>'
    return f"<span>{esc(label)}: <b>{fmt(value)}</b>{ci}</span>{bar}"


def _extra_calls(row: Mapping) -> str:
    """Columns other stages add to the scorecard (e.g. HSC-identity call fractions), shown generically."""
    out = []
    for key in row:
        if key in KNOWN_SCORECARD or key.endswith(("_ci_low", "_ci_high")) or key in PARTS:
            continue
        if key in ("fidelity_index", "novel_share", "identity_raw", "jsd"):
            continue
        if key.endswith(("_fraction", "_share")):
            out.append(
                _kv(
                    key.replace("_", " "),
                    _num(row, key),
                    _num(row, f"{key}_ci_low"),
                    _num(row, f"{key}_ci_high"),
                )
            )
    return "".join(out)


def _share(x: float) -> str:
    return f"{100 * x:.1f}%" if x < 0.1 else pct(x)


def identity_and_stage(row: Mapping, programme: Mapping | None = None) -> list[str]:
    """Plain-words HSC identity and stage of one sample: the in vivo stage it maps closest to (when the
    reference has stages: the primary answer), the score stage's maturity call from stage programmes beside
    it, and the per-cell identity classes (why cells are or are not HSC-like)."""
    out = []
    stage = row.get("closest_stage")
    if isinstance(stage, str) and stage:
        share = _num(row, "closest_stage_share")
        extra = f" ({pct(share)} of its mapped cells)" if np.isfinite(share) else ""
        out.append(f"Closest in vivo stage (reference stages): {stage}{extra}")
    call = (programme or {}).get("hsc_stage_call")
    if isinstance(call, str) and call:
        n = _num(programme, "n_stage_cells")
        extra = f" ({int(n)} HSC-like or pre-HSC cells)" if np.isfinite(n) else ""
        out.append(f"HSC maturity from stage programmes (AGM / fetal liver / adult): {call}{extra}")
    classes = [(name, _num(programme or {}, f"frac_{slug}")) for name, slug in CLASS_SLUGS.items()]
    classes = [(name, v) for name, v in classes if np.isfinite(v)]
    if classes:
        out.append("Identity of its cells: " + ", ".join(f"{name} {_share(v)}" for name, v in classes))
    return out


PRESENT = ("present", "over-represented", "under-represented", "true", "1", "yes")


def _presence_chips(presence: pd.DataFrame | None, sample: str, colours: Mapping[str, str]) -> str:
    """Lineage presence calls of another stage (``lineage_presence.tsv``), when the run has them."""
    if presence is None or presence.empty or "sample" not in presence:
        return ""
    what = next((c for c in ("lineage", "cell_type", "type") if c in presence), None)
    call = next((c for c in ("status", "present", "presence", "call") if c in presence), None)
    if what is None or call is None:
        return ""
    chips = []
    for _, r in presence[presence["sample"] == sample].iterrows():
        status = str(r[call]).lower()
        if status in PRESENT:
            style = f' style="background:{colours.get(str(r[what]), "#0072B2")}"'
            chips.append(f'<span class="chip"{style} title="{esc(r[call])}">{esc(r[what])}</span>')
        elif status in ("absent", "false", "0", "no"):
            chips.append(f'<span class="chip absent" title="{esc(r[call])}">{esc(r[what])}</span>')
        else:
            chips.append(f'<span class="chip absent" title="{esc(r[call])}">{esc(r[what])}?</span>')
    if not chips:
        return ""
    return (
        "<div><b>Lineages</b> (filled: present; dashed: absent; ?: undetermined): "
        + "".join(chips)
        + "</div>"
    )


def cards_html(
    scorecard: pd.DataFrame,
    *,
    controls: pd.DataFrame | None = None,
    programme: pd.DataFrame | None = None,
    presence: pd.DataFrame | None = None,
    colours: Mapping[str, str] | None = None,
) -> str:
    """One card per scorecard row: index on a 0-1 bar against the control band, parts, calls, the sentence."""
    band = control_band(controls)
    negative = None
    if controls is not None and not controls.empty and "kind" in controls:
        neg = controls.loc[controls["kind"] == "negative", "fidelity_index"].astype(float)
        negative = float(neg.max()) if len(neg) else None
    prog = programme.set_index("sample") if programme is not None and "sample" in programme else None
    cards = []
    for _, r in scorecard.iterrows():
        row = r.to_dict()
        prow = prog.loc[row["sample"]].to_dict() if prog is not None and row["sample"] in prog.index else None
        cond = esc(row.get("condition", ""))
        tp = row.get("timepoint")
        if isinstance(tp, str) and tp:
            cond += f" &middot; {esc(tp)}"
        body = f'<h3>{esc(row["sample"])}<span class="cond">{cond}</span></h3>'
        body += _bar(row, band, negative)
        parts = "".join(
            _kv(p, _num(row, p), _num(row, f"{p}_ci_low"), _num(row, f"{p}_ci_high")) for p in PARTS
        )
        parts += _kv(
            "novel share",
            _num(row, "novel_share"),
            _num(row, "novel_share_ci_low"),
            _num(row, "novel_share_ci_high"),
            share=True,
        )
        if prow is not None:
            parts += _kv(
                "HSC-like",
                _num(prow, "hsc_like_fraction"),
                _num(prow, "hsc_like_ci_low"),
                _num(prow, "hsc_like_ci_high"),
                share=True,
            )
        parts += _extra_calls(row)
        if prow is not None:
            parts += _extra_calls({k: v for k, v in prow.items() if k != "hsc_like_fraction"})
        body += f'<div class="kv">{parts}</div>'
        body += _presence_chips(presence, row["sample"], colours or {})
        lines = identity_and_stage(row, prow)
        if lines:
            body += '<ul class="identity">' + "".join(f"<li>{esc(x)}</li>" for x in lines) + "</ul>"
        text = sentence(row, prow, band, split=single_donor(controls))
        body += f'<p class="sentence" data-sample="{esc(row["sample"])}">{esc(text)}</p>'
        cards.append(f'<div class="card">{body}</div>')
    return f'<div class="cards">{"".join(cards)}</div>'


def collect_warnings(
    tables: Mapping[str, pd.DataFrame], settings: Mapping | None = None
) -> list[tuple[str, str]]:
    """(severity, text) pairs: failed controls, confounded batches, low coverage, excess QC removal, flags."""
    settings = settings or {}
    out: list[tuple[str, str]] = []
    controls = tables.get("fidelity_controls")
    if controls is not None and "pass" in controls:
        for _, r in controls[controls["pass"].astype(str) != "True"].iterrows():
            out.append(
                (
                    "bad",
                    f"Control failed: {r['control']} scored {float(r['fidelity_index']):.2f} (expected "
                    f"{r['expected']}). Do not trust this run's scorecard until this is understood.",
                )
            )
    if single_donor(controls):
        out.append(
            (
                "caution",
                "One in vivo donor: the positive control held out a random 20% of its cells, not another "
                "donor, so the control band holds no donor-to-donor differences and is optimistic. Add in "
                "vivo samples of a second donor to calibrate the index against a real donor.",
            )
        )
    if (
        controls is not None
        and "kind" in controls
        and len(controls)
        and (controls["kind"] != "negative").all()
    ):
        out.append(
            (
                "caution",
                "No negative control: no reference type has enough cells (fidelity.min_cells) in every "
                "held-out donor, so nothing shows that an absent population scores low on this reference.",
            )
        )
    sc = tables.get("scorecard")
    if sc is not None and "programme_source" in sc and (sc["programme_source"] == PROFILE_SOURCE).any():
        out.append(
            (
                "caution",
                "Profile reference: no labelled in vivo samples, so each index is its identity part "
                "alone (the share of cells confidently mapped to one of the 43 HematoMap marrow types, or "
                "at least to its lineage); no similarity, composition, HSC programme or controls. Add "
                "labelled in vivo samples or fidelity.reference for the full scorecard.",
            )
        )
    if sc is not None and "confounded" in sc:
        conf = sc.loc[sc["confounded"].astype(str) == "True", "sample"].tolist()
        if conf:
            out.append(
                (
                    "caution",
                    f"Confounded batches: {', '.join(conf)} - no in vivo cells were processed in the same "
                    "batch, so differences from in vivo (de.tsv) mix biology with batch effects.",
                )
            )
    cov = tables.get("signature_coverage")
    if cov is not None and "coverage" in cov and "signature" in cov:
        bar = float(settings.get("min_coverage", 0.5))
        low = cov[cov["coverage"].astype(float) < bar]
        if "sample" in low:
            low = low.drop_duplicates("signature")
        if len(low):
            names = ", ".join(
                f"{s} ({c:.0%})" for s, c in zip(low["signature"], low["coverage"], strict=True)
            )
            out.append(("caution", f"Low gene coverage (< {bar:.0%}), scores not computed: {names}."))
    qc = tables.get("qc_summary")
    if qc is not None and "removed_fraction" in qc:
        limit = float(settings.get("max_removed_fraction", 0.5))
        high = qc[qc["removed_fraction"].astype(float) > 0.6 * limit]
        for _, r in high.iterrows():
            out.append(
                (
                    "caution",
                    f"Excess QC removal: {r['sample']} lost {float(r['removed_fraction']):.0%} of its "
                    f"cells (the run stops above {limit:.0%}).",
                )
            )
    out += [("caution", w) for w in stage_warnings(tables)]
    return out


def stage_warnings(tables: Mapping[str, pd.DataFrame]) -> list[str]:
    """Warnings stages recorded in a ``warning``/``warnings`` column (text, or a boolean flag + value/bar)."""
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


def warnings_html(items: list[tuple[str, str]]) -> str:
    if not items:
        return (
            '<div class="warn info">No warnings: controls passed, no excess QC removal, '
            "coverage sufficient.</div>"
        )
    return "".join(f'<div class="warn {sev}">{esc(text)}</div>' for sev, text in items)
