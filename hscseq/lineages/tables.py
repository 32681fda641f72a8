"""Tables of the lineages stage: cells per sample and lineage, presence calls, time course and trends."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd
from scipy import stats

from hscseq._utils import input_error
from hscseq.fidelity.hierarchy import load_hierarchy, roll_up
from hscseq.fidelity.profiles import hematomap_lineages as default_hierarchy
from hscseq.lineages.core import (
    bh_adjust,
    clopper_pearson,
    linear_trend,
    presence_status,
    timepoint_value,
)
from hscseq.lineages.settings import LineageSettings, lineage_settings

NOVEL = "novel"
#: Cells of a lineage an organoid needs before its mapping fidelity is measured (time course and trends).
MIN_CELLS_FIDELITY = 10


def lineage_hierarchy(
    adata: ad.AnnData, hierarchy: Mapping[str, str] | str | Path | None = None
) -> dict[str, str]:
    """The child -> parent map that rolls mapped types up to lineages (the roots of the hierarchy).

    ``hierarchy``: a map, or a two-column TSV read by :func:`hscseq.fidelity.hierarchy.load_hierarchy` (the
    label-hierarchy format of the mapping stage: one mechanism); ``None``: the shipped HematoMap lineages when
    the cells were mapped onto the built-in profiles, else every type is its own lineage.
    """
    if isinstance(hierarchy, Mapping):
        return dict(hierarchy)
    if hierarchy:
        try:
            return load_hierarchy(hierarchy)
        except ValueError as err:
            raise input_error(str(err), path=hierarchy, fix="fix config lineages.hierarchy.") from err
    method = adata.uns.get("fidelity", {}).get("params", {}).get("method")
    return default_hierarchy() if method == "profiles" else {}


def to_lineage(labels, hierarchy: Mapping[str, str]) -> np.ndarray:
    """Lineage (root of the hierarchy) of each label; ``"<type> (uncertain)"`` counts as its parent's."""
    return roll_up(np.asarray(labels, dtype=object), hierarchy, level="root")


def lineage_counts(
    adata: ad.AnnData,
    *,
    settings: LineageSettings | Mapping[str, Any] | None = None,
    hierarchy: Mapping[str, str] | None = None,
    samples: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Cells per engineered/organoid sample and lineage (mapped labels rolled up), one row each.

    Columns: sample, condition, timepoint, replicate, lineage, n_sample, n_lineage, n_confident (cells of
    the lineage mapped with ``label_confidence >= settings.min_confidence``), closest_lineage (novel rows:
    the lineage most of the novel cells sit closest to), invivo_fraction (the in vivo cells' mapped lineages,
    novel ones in the denominator; NaN without in vivo cells).
    Every lineage of the reference appears for every sample (zeros included), plus ``novel``.
    ``hierarchy`` (a child -> parent map) overrides ``settings.hierarchy`` (see :func:`lineage_hierarchy`).
    """
    cfg = lineage_settings(settings)
    obs = adata.obs
    for col in ("sample", "condition", "predicted_label"):
        if col not in obs:
            raise input_error(f"obs lacks {col!r}.", fix="run the fidelity stage first (it maps the cells).")
    hier = lineage_hierarchy(adata, hierarchy if hierarchy is not None else cfg.hierarchy)
    labels = [str(x) for x in adata.uns.get("fidelity", {}).get("labels", [])]
    lineage = to_lineage(obs["predicted_label"].astype(str).to_numpy(), hier)
    closest = to_lineage(obs.get("closest_label", obs["predicted_label"]).astype(str).to_numpy(), hier)
    conf = obs.get("label_confidence", pd.Series(1.0, index=obs.index)).to_numpy(float) >= cfg.min_confidence
    if "mapped_coarse" in obs:  # sure of its parent type, hence of the lineage above it
        conf |= obs["mapped_coarse"].to_numpy(dtype=bool)
    universe = list(dict.fromkeys([*to_lineage(labels, hier), *sorted(set(lineage) - {NOVEL})]))
    universe = [u for u in universe if u != NOVEL] + [NOVEL]
    invivo = pd.Series(np.nan, index=universe)
    # the in vivo cells as the mapping labels them (each held out of the reference it is mapped on), not their
    # own labels: a query's composition is mapped too, so both carry the same mapping error (two halves of
    # one dataset: 130 cells mapped MEP in each half, 83 labelled MEP)
    mapped = obs["predicted_label"].astype(object)[(obs["condition"].astype(str) == "in_vivo").to_numpy()]
    mapped = mapped[mapped.notna() & (mapped.astype(str) != "")]
    if len(mapped):
        vc = pd.Series(to_lineage(mapped.astype(str).to_numpy(), hier)).value_counts(normalize=True)
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


def lineage_presence(
    counts: pd.DataFrame, settings: LineageSettings | Mapping[str, Any] | None = None
) -> pd.DataFrame:
    """Presence calls per sample and lineage from :func:`lineage_counts` (see :mod:`hscseq.lineages`)."""
    cfg = lineage_settings(settings)
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
            else cfg.min_fraction,
            invivo_fraction=r.invivo_fraction,
            background_rate=cfg.background_rate,
            alpha=cfg.alpha,
            min_cells=cfg.min_cells,
            power=cfg.power,
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


def lineage_timecourse(
    counts: pd.DataFrame, *, condition: str = "organoid", min_cells_fidelity: int = MIN_CELLS_FIDELITY
) -> pd.DataFrame:
    """Per lineage and timepoint: mean over replicate organoids, between-organoid SD and 95% CI.

    Measures: ``fraction`` (lineage cells / sample cells) and ``fidelity`` (share of the lineage's cells
    confidently mapped, in organoids with at least ``min_cells_fidelity`` cells of the lineage: the share
    of one or two stray cells is no lineage's fidelity; NaN where no organoid has them). With one organoid at
    a timepoint the CI is the binomial (cell-level) CI and ``n_organoids`` says so.
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
            ok = n.to_numpy() >= (min_cells_fidelity if measure == "fidelity" else 1)
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
    settings: LineageSettings | Mapping[str, Any] | None = None,
    condition: str = "organoid",
    min_cells_fidelity: int = MIN_CELLS_FIDELITY,
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
    cfg = lineage_settings(settings)
    calls = lineage_presence(sub, cfg)
    seen = set(calls.loc[~calls["status"].isin(["absent", "undetermined"]), "lineage"])
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
    sig = out["q_value"] < cfg.fdr
    out["trend"] = np.where(
        out["q_value"].isna(),
        np.where(out["lineage"].isin(seen), "not tested", "never present"),
        np.where(sig & (out["slope_per_unit"] > 0), "rising", np.where(sig, "falling", "flat")),
    )
    return out[cols]
