"""Lineage presence per sample and lineage time courses with replicate organoids as the unit (issue #15).

Numeric cores (numpy in, arrays out) first, then AnnData/table wrappers and the workflow entry point.

Presence, per sample and lineage (cells rolled up from mapped types to lineages by a child -> parent table):

- ``fraction``: lineage cells / all cells of the sample (novel cells count in the denominator), with a
  Clopper-Pearson 95% CI;
- ``present``: at least ``min_cells`` cells and more than mapping noise could make: the one-sided binomial
  test of the count against ``background_rate`` (the share of cells a lineage can receive by mis-mapping
  alone) has p < ``alpha``;
- ``detection_limit``: the smallest true fraction that would be called present with probability ``power``
  given the sample's cell number (binomial);
- ``absent``: not present although a lineage at ``expected_fraction`` (its in vivo fraction when the reference
  has a composition, otherwise ``min_fraction``) lies at or above the detection limit; ``undetermined`` when
  the sample has too few cells to tell;
- ``over-represented`` / ``under-represented``: present and the two-sided binomial test against the in vivo
  fraction has p < ``alpha`` (only with an in vivo composition: profile references carry none).

Novel cells (no in vivo counterpart) get a row of their own (lineage ``novel``) with the same test, and the
lineage their members sit closest to (``closest_lineage``: "8% novel, stromal-like").

Time course: per lineage and sample (organoid), the fraction and the lineage's mapping fidelity (share of its
cells confidently mapped). Per timepoint the mean over replicate organoids, the between-organoid SD and a t CI
(binomial CI with a single organoid). Trend per lineage: ordinary least squares of the per-organoid value on
time (the number in the timepoint label, e.g. weeks), so the between-organoid scatter sets the standard error;
t-test of the slope on n_organoids - 2 df; Benjamini-Hochberg across lineages per measure. Fidelity trends use
organoids with at least ``min_cells_fidelity`` cells of the lineage.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd
from scipy import stats

from hscseq._utils import input_error, resource_path

logger = logging.getLogger(__name__)

NOVEL = "novel"
DEFAULT_SETTINGS: dict[str, Any] = {
    "hierarchy": None,
    "min_cells": 3,
    "background_rate": 0.005,
    "alpha": 0.05,
    "power": 0.8,
    "min_fraction": 0.02,
    "min_confidence": 0.5,
    "fdr": 0.05,
}


# --------------------------------------------------------------------------------------------------------
# label hierarchy (tiny loader until hscseq.fidelity.hierarchy lands; same two-column child -> parent TSV)


def load_lineages(path: str | Path | None = None) -> dict[str, str]:
    """Child -> parent map from a two-column TSV (default: the HematoMap 43 types -> lineages)."""
    path = resource_path("references", "hematomap_lineages.tsv") if path is None else Path(path)
    if not Path(path).is_file():
        raise input_error(
            "the label hierarchy does not exist.", path=path, fix="fix config lineages.hierarchy."
        )
    table = pd.read_csv(path, sep="\t", comment="#", dtype=str, header=None)
    if table.shape[1] >= 2 and tuple(table.iloc[0, :2].str.strip().str.lower()) == ("child", "parent"):
        table = table.iloc[1:]  # the header line is optional (the format of issue #14's hierarchy)
    if table.shape[1] != 2:
        raise input_error(
            "the label hierarchy needs exactly two tab-separated columns (child, parent).",
            path=path,
            fix="write one 'child<TAB>parent' line per label.",
        )
    return dict(zip(table.iloc[:, 0].str.strip(), table.iloc[:, 1].str.strip(), strict=True))


def roll_up(labels: Sequence[str], hierarchy: Mapping[str, str]) -> np.ndarray:
    """Parent of each label (labels without a parent, e.g. ``novel``, stay as they are)."""
    return np.array([hierarchy.get(str(lab), str(lab)) for lab in labels], dtype=object)


# --------------------------------------------------------------------------------------------------------
# numeric cores


def clopper_pearson(k: np.ndarray, n: np.ndarray, alpha: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """Exact binomial (1 - alpha) CI of k / n (vectorised; n = 0 gives NaN)."""
    k = np.asarray(k, dtype=float)
    n = np.asarray(n, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        lo = np.where(k > 0, stats.beta.ppf(alpha / 2, k, n - k + 1), 0.0)
        hi = np.where(k < n, stats.beta.ppf(1 - alpha / 2, k + 1, n - k), 1.0)
    bad = n <= 0
    return np.where(bad, np.nan, lo), np.where(bad, np.nan, hi)


def presence_pvalue(k: np.ndarray, n: np.ndarray, background_rate: float) -> np.ndarray:
    """One-sided binomial p that ``k`` of ``n`` cells arise from mis-mapping at ``background_rate``."""
    k = np.asarray(k)
    return np.where(k > 0, stats.binom.sf(k - 1, n, background_rate), 1.0)


def critical_count(n: int, *, background_rate: float, alpha: float, min_cells: int) -> int:
    """Smallest count called present in a sample of ``n`` cells."""
    k = np.arange(0, n + 1)
    ok = (k >= min_cells) & (presence_pvalue(k, np.full_like(k, n), background_rate) < alpha)
    return int(k[ok][0]) if ok.any() else n + 1


def detection_limit(
    n: int, *, background_rate: float, alpha: float, min_cells: int, power: float = 0.8
) -> float:
    """Smallest true fraction called present with probability ``power`` among ``n`` cells (NaN if none)."""
    kc = critical_count(n, background_rate=background_rate, alpha=alpha, min_cells=min_cells)
    if n <= 0 or kc > n:
        return np.nan
    lo, hi = 0.0, 1.0
    for _ in range(60):  # P(X >= kc | n, f) increases with f: bisection
        mid = (lo + hi) / 2
        if stats.binom.sf(kc - 1, n, mid) >= power:
            hi = mid
        else:
            lo = mid
    return hi


def presence_status(
    k: int,
    n: int,
    *,
    expected_fraction: float,
    invivo_fraction: float = np.nan,
    background_rate: float = 0.005,
    alpha: float = 0.05,
    min_cells: int = 3,
    power: float = 0.8,
) -> tuple[str, float, float]:
    """Call one lineage in one sample: (status, presence p-value, detection limit); see the module doc."""
    p = float(presence_pvalue(np.array([k]), np.array([n]), background_rate)[0])
    limit = detection_limit(n, background_rate=background_rate, alpha=alpha, min_cells=min_cells, power=power)
    if k >= min_cells and p < alpha:
        status = "present"
        if np.isfinite(invivo_fraction) and 0 < invivo_fraction < 1:
            p_ratio = stats.binomtest(int(k), int(n), invivo_fraction).pvalue
            if p_ratio < alpha:
                status = "over-represented" if k / n > invivo_fraction else "under-represented"
        return status, p, limit
    if np.isfinite(limit) and limit <= expected_fraction:
        return "absent", p, limit
    return "undetermined", p, limit


def linear_trend(values: np.ndarray, t: np.ndarray) -> tuple[float, float, float]:
    """OLS slope of per-unit values on time, its t statistic and two-sided p (n_units - 2 df).

    One value per replicate unit (organoid), so the residual scatter between organoids sets the standard
    error. Returns (0, 0, 1) for a constant series and NaNs with fewer than 3 units or 2 distinct times.
    """
    v, t = np.asarray(values, dtype=float), np.asarray(t, dtype=float)
    ok = np.isfinite(v) & np.isfinite(t)
    v, t = v[ok], t[ok]
    if len(v) < 3 or len(np.unique(t)) < 2:
        return np.nan, np.nan, np.nan
    tc = t - t.mean()
    sxx = float(tc @ tc)
    slope = float(tc @ (v - v.mean()) / sxx)
    resid = v - v.mean() - slope * tc
    df = len(v) - 2
    s2 = float(resid @ resid) / df
    if s2 <= 1e-30:
        return (slope, np.inf * np.sign(slope), 0.0) if abs(slope) > 1e-15 else (0.0, 0.0, 1.0)
    tstat = slope / np.sqrt(s2 / sxx)
    return slope, float(tstat), float(2 * stats.t.sf(abs(tstat), df))


def bh_adjust(p: np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (NaN stays NaN)."""
    p = np.asarray(p, dtype=float)
    out = np.full_like(p, np.nan)
    ok = np.isfinite(p)
    if not ok.any():
        return out
    q = p[ok]
    order = np.argsort(q)
    ranked = q[order] * len(q) / np.arange(1, len(q) + 1)
    ranked = np.minimum.accumulate(ranked[::-1])[::-1]
    res = np.empty_like(q)
    res[order] = np.clip(ranked, 0, 1)
    out[ok] = res
    return out


def timepoint_value(timepoint: str) -> float:
    """The number in a timepoint label (``week4`` -> 4.0, ``d10`` -> 10.0); NaN without one."""
    m = re.search(r"[-+]?\d+(\.\d+)?", str(timepoint))
    return float(m.group()) if m else np.nan


# --------------------------------------------------------------------------------------------------------
# tables


def _hierarchy_for(adata: ad.AnnData, hierarchy: Mapping[str, str] | str | Path | None) -> dict[str, str]:
    """The child -> lineage map: given, or HematoMap's for the built-in profiles, else each type its own."""
    if isinstance(hierarchy, Mapping):
        return dict(hierarchy)
    if hierarchy:
        return load_lineages(hierarchy)
    method = adata.uns.get("fidelity", {}).get("params", {}).get("method")
    return load_lineages() if method == "profiles" else {}


def lineage_counts(
    adata: ad.AnnData,
    *,
    hierarchy: Mapping[str, str] | str | Path | None = None,
    min_confidence: float = 0.5,
    samples: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Cells per engineered/organoid sample and lineage (mapped labels rolled up), one row each.

    Columns: sample, condition, timepoint, replicate, lineage, n_sample, n_lineage, n_confident (cells of the
    lineage mapped with ``label_confidence >= min_confidence``), closest_lineage (novel rows: the lineage
    most of the novel cells sit closest to), invivo_fraction (NaN without an in vivo composition).
    Every lineage of the reference appears for every sample (zeros included), plus ``novel``.
    """
    obs = adata.obs
    for col in ("sample", "condition", "predicted_label"):
        if col not in obs:
            raise input_error(f"obs lacks {col!r}.", fix="run the fidelity stage first (it maps the cells).")
    hier = _hierarchy_for(adata, hierarchy)
    labels = [str(x) for x in adata.uns.get("fidelity", {}).get("labels", [])]
    lineage = roll_up(obs["predicted_label"].astype(str).to_numpy(), hier)
    closest = roll_up(obs.get("closest_label", obs["predicted_label"]).astype(str).to_numpy(), hier)
    conf = obs.get("label_confidence", pd.Series(1.0, index=obs.index)).to_numpy(float) >= min_confidence
    universe = list(dict.fromkeys([*roll_up(labels, hier), *sorted(set(lineage) - {NOVEL})]))
    universe = [u for u in universe if u != NOVEL] + [NOVEL]
    invivo = pd.Series(np.nan, index=universe)
    if "reference_label" in obs and (obs["condition"].astype(str) == "in_vivo").any():
        ref = obs["reference_label"].astype(object)
        ref = ref[(obs["condition"].astype(str) == "in_vivo") & ref.notna() & (ref.astype(str) != "")]
        if len(ref):
            vc = pd.Series(roll_up(ref.astype(str).to_numpy(), hier)).value_counts(normalize=True)
            invivo = vc.reindex(universe).fillna(0.0)
            invivo[NOVEL] = np.nan
    meta = samples.set_index("sample") if samples is not None and "sample" in samples else None
    rows = []
    query = obs["condition"].astype(str).isin(["engineered", "organoid"]).to_numpy()
    for s in pd.unique(obs["sample"].astype(str)[query]):
        m = query & (obs["sample"].astype(str) == s).to_numpy()
        n = int(m.sum())
        tp = str(obs["timepoint"][m].iloc[0]) if "timepoint" in obs else ""
        rep = ""
        if meta is not None and s in meta.index and "replicate" in meta:
            rep = str(meta.loc[s, "replicate"] or "")
        for lin in universe:
            sel = m & (lineage == lin)
            near = pd.Series(closest[sel]).value_counts()
            rows.append(
                {
                    "sample": s,
                    "condition": str(obs["condition"][m].iloc[0]),
                    "timepoint": "" if tp == "nan" else tp,
                    "replicate": "" if rep == "nan" else rep,
                    "lineage": lin,
                    "n_sample": n,
                    "n_lineage": int(sel.sum()),
                    "n_confident": int((sel & conf).sum()) if lin != NOVEL else 0,
                    "closest_lineage": str(near.index[0]) if lin == NOVEL and len(near) else "",
                    "invivo_fraction": float(invivo.get(lin, np.nan)),
                }
            )
    return pd.DataFrame(rows)


def lineage_presence(counts: pd.DataFrame, settings: Mapping[str, Any] | None = None) -> pd.DataFrame:
    """Presence calls per sample and lineage from :func:`lineage_counts` (see the module doc)."""
    cfg = {**DEFAULT_SETTINGS, **(settings or {})}
    if counts.empty:
        return counts.assign(fraction=[], ci_low=[], ci_high=[], detection_limit=[], p_present=[], status=[])
    k = counts["n_lineage"].to_numpy()
    n = counts["n_sample"].to_numpy()
    lo, hi = clopper_pearson(k, n)
    out = counts.copy()
    out["fraction"] = k / np.maximum(n, 1)
    out["ci_low"], out["ci_high"] = lo, hi
    calls = [
        presence_status(
            int(r.n_lineage),
            int(r.n_sample),
            expected_fraction=r.invivo_fraction
            if np.isfinite(r.invivo_fraction) and r.invivo_fraction > 0
            else cfg["min_fraction"],
            invivo_fraction=r.invivo_fraction,
            background_rate=cfg["background_rate"],
            alpha=cfg["alpha"],
            min_cells=cfg["min_cells"],
            power=cfg["power"],
        )
        for r in counts.itertuples()
    ]
    out["status"] = [c[0] for c in calls]
    out["p_present"] = [c[1] for c in calls]
    out["detection_limit"] = [c[2] for c in calls]
    cols = ["sample", "condition", "timepoint", "replicate", "lineage", "status", "fraction", "ci_low",
            "ci_high", "n_lineage", "n_sample", "detection_limit", "p_present", "invivo_fraction",
            "closest_lineage"]  # fmt: skip
    return out[cols]


def presence_summary(presence: pd.DataFrame) -> pd.DataFrame:
    """One line per sample: "erythroid, myeloid present; B, T absent; 8% novel (stromal-like)"."""
    rows = []
    for s, g in presence.groupby("sample", sort=False):
        parts = []
        for status in ("present", "over-represented", "under-represented", "absent", "undetermined"):
            names = g.loc[(g["status"] == status) & (g["lineage"] != NOVEL), "lineage"].tolist()
            if names:
                parts.append(f"{', '.join(names)} {status}")
        nov = g[g["lineage"] == NOVEL]
        if len(nov) and nov["status"].iloc[0] == "present":
            like = nov["closest_lineage"].iloc[0]
            parts.append(f"{100 * nov['fraction'].iloc[0]:.0f}% novel" + (f" ({like}-like)" if like else ""))
        tp = g["timepoint"].iloc[0]
        rows.append({"sample": s, "timepoint": tp, "summary": "; ".join(parts)})
    return pd.DataFrame(rows)


def lineage_timecourse(counts: pd.DataFrame, *, condition: str = "organoid") -> pd.DataFrame:
    """Per lineage and timepoint: mean over replicate organoids, between-organoid SD and 95% CI.

    Measures: ``fraction`` (lineage cells / sample cells) and ``fidelity`` (share of the lineage's cells
    confidently mapped; NaN in organoids without cells of the lineage). With one organoid at a timepoint the
    CI is the binomial (cell-level) CI and ``n_organoids`` says so.
    """
    sub = counts[(counts["condition"] == condition) & (counts["timepoint"].astype(str) != "")].copy()
    cols = ["lineage", "measure", "timepoint", "time", "n_organoids", "mean", "sd_between", "ci_low",
            "ci_high", "values"]  # fmt: skip
    if sub.empty:
        return pd.DataFrame(columns=cols)
    sub["time"] = sub["timepoint"].map(timepoint_value)
    rows = []
    for (lin, tp), g in sub.groupby(["lineage", "timepoint"], sort=False):
        for measure, k, n in (
            ("fraction", g["n_lineage"], g["n_sample"]),
            ("fidelity", g["n_confident"], g["n_lineage"]),
        ):
            if lin == NOVEL and measure == "fidelity":
                continue
            ok = n.to_numpy() > 0
            v = (k.to_numpy()[ok] / n.to_numpy()[ok]).astype(float)
            r = len(v)
            if r == 0:
                mean, sd, lo, hi = np.nan, np.nan, np.nan, np.nan
            elif r == 1:
                mean, sd = float(v[0]), np.nan
                lo_a, hi_a = clopper_pearson(k.to_numpy()[ok], n.to_numpy()[ok])
                lo, hi = float(lo_a[0]), float(hi_a[0])
            else:
                mean, sd = float(v.mean()), float(v.std(ddof=1))
                half = stats.t.ppf(0.975, r - 1) * sd / np.sqrt(r)
                lo, hi = max(0.0, mean - half), min(1.0, mean + half)
            rows.append(
                {
                    "lineage": lin,
                    "measure": measure,
                    "timepoint": tp,
                    "time": float(g["time"].iloc[0]),
                    "n_organoids": r,
                    "mean": mean,
                    "sd_between": sd,
                    "ci_low": lo,
                    "ci_high": hi,
                    "values": ",".join(f"{x:.4g}" for x in v),
                }
            )
    out = pd.DataFrame(rows, columns=cols)
    return out.sort_values(["measure", "lineage", "time"]).reset_index(drop=True)


def lineage_trends(
    counts: pd.DataFrame,
    *,
    condition: str = "organoid",
    fdr: float = 0.05,
    min_cells_fidelity: int = 10,
    settings: Mapping[str, Any] | None = None,
) -> pd.DataFrame:
    """Trend over time per lineage (fraction and fidelity), organoids as units, BH-adjusted per measure.

    Only lineages called present (:func:`lineage_presence` with ``settings``) in at least one organoid are
    tested: counts at the mapping-noise level carry no trend (``trend`` = ``never present``).
    """
    sub = counts[(counts["condition"] == condition) & (counts["timepoint"].astype(str) != "")].copy()
    cols = ["lineage", "measure", "n_organoids", "n_timepoints", "slope_per_unit", "t", "p_value",
            "q_value", "trend"]  # fmt: skip
    if sub.empty:
        return pd.DataFrame(columns=cols)
    sub["time"] = sub["timepoint"].map(timepoint_value)
    calls = lineage_presence(sub, settings)
    seen = set(calls.loc[calls["status"] != "absent", "lineage"][calls["status"] != "undetermined"])
    rows = []
    for lin, g in sub.groupby("lineage", sort=False):
        for measure, k, n in (
            ("fraction", g["n_lineage"], g["n_sample"]),
            ("fidelity", g["n_confident"], g["n_lineage"]),
        ):
            if (lin == NOVEL and measure == "fidelity") or lin not in seen:
                if lin not in seen and measure == "fraction":
                    rows.append(
                        {"lineage": lin, "measure": measure, "n_organoids": len(g), "p_value": np.nan}
                    )
                continue
            ok = n.to_numpy() >= (min_cells_fidelity if measure == "fidelity" else 1)
            vals = k.to_numpy()[ok] / n.to_numpy()[ok]
            slope, t, p = linear_trend(vals, g["time"].to_numpy()[ok])
            rows.append(
                {
                    "lineage": lin,
                    "measure": measure,
                    "n_organoids": int(ok.sum()),
                    "n_timepoints": int(g.loc[ok, "time"].nunique()),
                    "slope_per_unit": slope,
                    "t": t,
                    "p_value": p,
                }
            )
    out = pd.DataFrame(rows)
    out["q_value"] = np.nan
    for _measure, idx in out.groupby("measure").groups.items():
        out.loc[idx, "q_value"] = bh_adjust(out.loc[idx, "p_value"].to_numpy())
    sig = out["q_value"] < fdr
    out["trend"] = np.where(
        out["q_value"].isna(),
        np.where(out["lineage"].isin(seen), "not tested", "never present"),
        np.where(sig & (out["slope_per_unit"] > 0), "rising", np.where(sig, "falling", "flat")),
    )
    return out[cols]


# --------------------------------------------------------------------------------------------------------
# figures (return Figures; the entry point saves them)


def plot_timecourse(timecourse: pd.DataFrame, counts: pd.DataFrame, *, measure: str = "fraction"):
    """Per lineage: replicate organoids (points) and their mean with the 95% CI (line, band) over time."""
    import matplotlib.pyplot as plt

    tc = timecourse[timecourse["measure"] == measure]
    fig, ax = plt.subplots(figsize=(8, 5))
    if tc.empty:
        ax.text(0.5, 0.5, "no organoid samples with a timepoint", ha="center", va="center")
        ax.set_axis_off()
        return fig
    cmap = plt.get_cmap("tab10")
    org = counts[(counts["condition"] == "organoid") & (counts["timepoint"].astype(str) != "")]
    for j, (lin, g) in enumerate(tc.groupby("lineage", sort=False)):
        if measure == "fraction" and g["mean"].max() == 0:
            continue  # never made: listed as absent in the presence table
        g = g.sort_values("time")
        color = "grey" if lin == NOVEL else cmap(j % 10)
        ax.plot(g["time"], g["mean"], marker="o", color=color, label=lin)
        ax.fill_between(g["time"], g["ci_low"], g["ci_high"], color=color, alpha=0.15)
        pts = org[org["lineage"] == lin]
        num, den = ("n_lineage", "n_sample") if measure == "fraction" else ("n_confident", "n_lineage")
        ok = pts[den] > 0
        ax.scatter(
            pts.loc[ok, "timepoint"].map(timepoint_value),
            pts.loc[ok, num] / pts.loc[ok, den],
            s=12,
            color=color,
        )
    ax.set_xlabel("time (number in the timepoint label, e.g. weeks)")
    if measure == "fraction":
        ax.set_ylabel("fraction of the organoid's cells")
        ax.set_title("Composition over time: replicate organoids (points), mean and 95% CI")
    else:
        ax.set_ylabel("share of the lineage's cells confidently mapped")
        ax.set_ylim(0, 1.05)
        ax.set_title("Mapping fidelity per lineage over time (organoids as units)")
    ax.legend(fontsize=7, bbox_to_anchor=(1.0, 1.0), loc="upper left")
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------------------------------------
# workflow entry


def run_lineages(
    *,
    final: str,
    summary: str,
    presence: str,
    timecourse: str,
    trends: str,
    composition_figure: str,
    fidelity_figure: str,
    settings: dict,
    samples: Sequence[Mapping[str, str]] = (),
) -> None:
    """Stage entry: presence per sample and lineage (+ one summary line per sample), organoid time course and
    trends, and two figures (composition and fidelity over time)."""
    import matplotlib.pyplot as plt

    from hscseq._utils import atomic_path, write_table

    cfg = {**DEFAULT_SETTINGS, **(settings or {})}
    adata = ad.read_h5ad(final, backed="r")
    obs_only = ad.AnnData(obs=adata.obs.copy(), uns={"fidelity": dict(adata.uns.get("fidelity", {}))})
    adata.file.close()
    sheet = pd.DataFrame(list(samples)) if samples else None
    counts = lineage_counts(
        obs_only, hierarchy=cfg["hierarchy"], min_confidence=cfg["min_confidence"], samples=sheet
    )
    table = lineage_presence(counts, cfg)
    tc = lineage_timecourse(counts)
    tr = lineage_trends(counts, fdr=cfg["fdr"], settings=cfg)
    for _, r in presence_summary(table).iterrows():
        logger.info("presence %s %s: %s", r["timepoint"], r["sample"], r["summary"])
    for _, r in tr[tr["trend"].isin(["rising", "falling"])].iterrows():
        logger.info("trend %s %s: %s (q = %.3g)", r["lineage"], r["measure"], r["trend"], r["q_value"])
    write_table(presence_summary(table), summary, index=False)
    write_table(table, presence, index=False)
    write_table(tc, timecourse, index=False)
    write_table(tr, trends, index=False)
    for measure, path in (("fraction", composition_figure), ("fidelity", fidelity_figure)):
        fig = plot_timecourse(tc, counts, measure=measure)
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=110)
        plt.close(fig)
