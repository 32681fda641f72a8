"""The report: verdict first, numbers equal to the scorecard, self-contained, complete in a real browser."""

import base64
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import anndata as ad
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from hscseq.report import write_report

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
needs_browser = pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER),
    reason="headless Chromium/chromedriver not installed (apt-get install chromium chromium-driver)",
)
SECTIONS = [
    "warnings",
    "verdict",
    "composition",
    "similarity",
    "hsc_programme",
    "umap",
    "qc_summary",
    "methods",
]
TYPES = ["HSC", "MPP", "Erythroid", "Myeloid"]


def _png(path: Path, title: str) -> Path:
    fig, ax = plt.subplots(figsize=(3, 2))
    ax.plot([0, 1], [0, 1])
    ax.set_title(title)
    fig.savefig(path, dpi=60)
    plt.close(fig)
    return path


def _scorecard() -> pd.DataFrame:
    rows = []
    for name, cond, tp, f, novel in (
        ("engineered_A", "engineered", "", 0.4137, 0.3912),
        ("organoid_w2", "organoid", "week2", 0.7781, 0.0249),
    ):
        row = {"sample": name, "condition": cond, "timepoint": tp, "n_cells": 300, "fidelity_index": f}
        row["reference_novel_share"] = 0.023
        row |= {"fidelity_index_ci_low": f - 0.031, "fidelity_index_ci_high": f + 0.027}
        for part, v in (
            ("identity", 0.58),
            ("similarity", 0.83),
            ("programme", 0.634),
            ("composition", 0.71),
        ):
            row |= {part: v, f"{part}_ci_low": v - 0.05, f"{part}_ci_high": v + 0.04}
        row |= {
            "novel_share": novel,
            "novel_share_ci_low": novel - 0.021,
            "novel_share_ci_high": novel + 0.018,
        }
        row |= {"confounded": name == "engineered_A"}
        rows.append(row)
    return pd.DataFrame(rows)


def _controls(pass_positive: bool = True) -> pd.DataFrame:
    f = 0.95 if pass_positive else 0.62
    return pd.DataFrame(
        {
            "control": ["positive: held-out donor d1", "negative: Erythroid of d1 absent from the reference"],
            "kind": ["positive", "negative"],
            "expected": [">= 0.9", "<= 0.2"],
            "pass": [pass_positive, True],
            "fidelity_index": [f, 0.05],
            "fidelity_index_ci_low": [f - 0.02, 0.01],
            "fidelity_index_ci_high": [f + 0.02, 0.09],
        }
    )


def _composition() -> pd.DataFrame:
    rows = []
    invivo = dict(zip(TYPES, [0.1, 0.3, 0.35, 0.25], strict=True))
    for sample, fr in (("engineered_A", [0.35, 0.1, 0.1, 0.06]), ("organoid_w2", [0.05, 0.3, 0.35, 0.28])):
        for t, f in zip(TYPES, fr, strict=True):
            rows.append(
                {
                    "sample": sample,
                    "cell_type": t,
                    "fraction": f,
                    "invivo_fraction": invivo[t],
                    "similarity": 0.8,
                }
            )
        rows.append(
            {"sample": sample, "cell_type": "novel", "fraction": 1 - sum(fr), "invivo_fraction": np.nan}
        )
    return pd.DataFrame(rows)


@pytest.fixture
def report_inputs(tmp_path):
    rng = np.random.default_rng(0)
    samples = [
        {"sample": "invivo_d1", "condition": "in_vivo", "species": "mouse", "batch": "d1", "path": "/x"},
        {
            "sample": "engineered_A",
            "condition": "engineered",
            "species": "mouse",
            "batch": "b1",
            "path": "/y",
        },
        {"sample": "organoid_w2", "condition": "organoid", "species": "mouse", "batch": "b2", "path": "/z"},
    ]
    programme = pd.DataFrame(
        {
            "sample": ["engineered_A", "organoid_w2"],
            "hsc_like_fraction": [0.4031, 0.052],
            "hsc_like_ci_low": [0.3712, 0.03],
            "hsc_like_ci_high": [0.4349, 0.07],
            "hsc_programme_share": [0.634, 0.634],
            "missing_genes": ["Procr,Hlf,Mecom,Fgd5", ""],
        }
    )
    qc = pd.DataFrame(
        {
            "sample": [s["sample"] for s in samples],
            "cells_in": [400, 330, 320],
            "removed_counts": [10, 20, 200],
            "removed_mito": [5, 8, 20],
            "removed_total": [15, 30, 210],
            "removed_fraction": [0.0375, 0.0909, 0.65625],
            "cells_out": [385, 300, 110],
        }
    )
    tables = {}
    for name, df in {
        "scorecard": _scorecard(),
        "fidelity_controls": _controls(),
        "composition": _composition(),
        "hsc_programme": programme,
        "qc_summary": qc,
    }.items():
        tables[name] = tmp_path / f"{name}.tsv"
        df.to_csv(tables[name], sep="\t", index=False)
    n = 600
    cells = pd.DataFrame(
        {
            "cell_id": [f"c{i}" for i in range(n)],
            "sample": rng.choice([s["sample"] for s in samples], n),
            "predicted_label": rng.choice([*TYPES, "novel"], n),
            "hsc_score": rng.uniform(0, 0.4, n),
            "novel": False,
        }
    )
    cond = {s["sample"]: s["condition"] for s in samples}
    cells["condition"] = cells["sample"].map(cond)
    cells["novel"] = cells["predicted_label"] == "novel"
    cells.to_csv(tmp_path / "cells.tsv.gz", sep="\t", index=False)
    adata = ad.AnnData(obs=pd.DataFrame(index=cells["cell_id"].to_numpy()))
    adata.obsm["X_umap"] = (
        rng.normal(size=(n, 2)) + 4 * (cells["sample"] == "engineered_A").to_numpy()[:, None]
    )
    adata.write_h5ad(tmp_path / "final.h5ad")
    figures = [_png(tmp_path / "umap.png", "umap"), _png(tmp_path / "fidelity.png", "fidelity")]
    qc_figures = [_png(tmp_path / "engineered_A.png", "qc A"), _png(tmp_path / "organoid_w2.png", "qc B")]
    config = {
        "score": {"reference_hsc_labels": ["HSC"], "min_coverage": 0.5},
        "qc": {"max_removed_fraction": 0.8},
    }
    return {
        "tables": tables,
        "figures": figures,
        "qc_figures": qc_figures,
        "samples": samples,
        "final": tmp_path / "final.h5ad",
        "cells": tmp_path / "cells.tsv.gz",
        "config": config,
    }


def _sentences(text: str) -> dict[str, str]:
    return dict(re.findall(r'<p class="sentence" data-sample="([^"]+)">([^<]+)</p>', text))


def test_report_is_self_contained_with_verdict_first(tmp_path, report_inputs):
    out = tmp_path / "report.html"
    write_report(out, **report_inputs)
    text = out.read_text()
    assert "http://" not in text and "https://" not in text  # nothing fetched from the network
    assert "<script src" not in text and "<link " not in text
    positions = [text.index(f'<section id="{s}"') for s in SECTIONS]
    assert positions == sorted(positions), "warnings, then the verdict, then the evidence, Methods last"
    assert set(_sentences(text)) == {"engineered_A", "organoid_w2"}
    # figures generated for the report itself (composition, similarity, HSC scores, QC) plus the stage PNGs
    for name in ("composition", "similarity", "hsc_scores", "qc", "fidelity.png", "umap.png"):
        assert f'data-figure="{name}"' in text, name
    assert "HSC_UMAP=" in text
    assert "scanpy" in text and "Snakemake (M&ouml;lder" in text and "reference_hsc_labels" in text


def test_verdict_sentence_numbers_equal_the_scorecard(tmp_path, report_inputs):
    out = tmp_path / "report.html"
    write_report(out, **report_inputs)
    sentences = _sentences(out.read_text())
    sc = pd.read_csv(report_inputs["tables"]["scorecard"], sep="\t").set_index("sample")
    prog = pd.read_csv(report_inputs["tables"]["hsc_programme"], sep="\t").set_index("sample")
    for sample, text in sentences.items():
        row = sc.loc[sample]
        f, lo, hi = row["fidelity_index"], row["fidelity_index_ci_low"], row["fidelity_index_ci_high"]
        low = text.lower()
        assert f"fidelity index {f:.2f} (95% ci {lo:.2f}-{hi:.2f}" in low
        assert f"hsc programme {100 * row['programme']:.0f}% established" in low
        novel = [round(100 * row[k]) for k in ("novel_share", "novel_share_ci_low", "novel_share_ci_high")]
        assert f"{novel[0]}% (ci {novel[1]}%-{novel[2]}%) off-target" in low
        assert f"(held-out in vivo cells: {round(100 * row['reference_novel_share'])}%)" in low
        hsc = [
            round(100 * prog.loc[sample, k])
            for k in ("hsc_like_fraction", "hsc_like_ci_low", "hsc_like_ci_high")
        ]
        assert f"{hsc[0]}% hsc-like (ci {hsc[1]}%-{hsc[2]}%)" in low
        # every number in the sentence is one of the table's values (rounded as printed) or the control band
        values = [v for v in [*row, *prog.loc[sample]] if isinstance(v, float) and np.isfinite(v)]
        allowed = {round(v, 2) for v in values} | {round(100 * v) for v in values}
        allowed |= {0.93, 0.97}  # the held-out-donor band from the controls table
        body = text.split(":", 1)[1].replace("(1 = as close as a real donor)", "")
        for number in re.findall(r"(?<![\w.])\d+(?:\.\d+)?", body):
            if number == "95":  # "95% CI"
                continue
            value = float(number)
            assert value in allowed, (sample, number, text)
    assert "missing Procr, Hlf, Mecom" in sentences["engineered_A"]


def _written(tmp_path, report_inputs) -> tuple[str, str]:
    """The report written from ``report_inputs``: its HTML and its warnings section."""
    out = tmp_path / "report.html"
    write_report(out, **report_inputs)
    text = out.read_text()
    return text, text[text.index('<section id="warnings"') : text.index('<section id="verdict"')]


def test_warnings_are_at_the_top_in_colour(tmp_path, report_inputs):
    _controls(pass_positive=False).to_csv(report_inputs["tables"]["fidelity_controls"], sep="\t", index=False)
    _, warnings = _written(tmp_path, report_inputs)
    assert '<div class="warn bad">Control failed: positive: held-out donor d1 scored 0.62' in warnings
    assert "Confounded batches: engineered_A - no in vivo cells" in warnings
    assert "Excess QC removal: organoid_w2 lost 66%" in warnings
    assert "invivo_d1 lost" not in warnings


def test_a_single_donor_control_and_a_missing_negative_control_are_said(tmp_path, report_inputs):
    """With one in vivo donor the positive control holds out 20% of that donor (no donor-to-donor
    differences): the band and the warnings say so; a run without a negative control says that too."""
    controls = _controls().iloc[:1].assign(held_out="heldout_20pct")  # positive only, the split donor
    controls.to_csv(report_inputs["tables"]["fidelity_controls"], sep="\t", index=False)
    text, warnings = _written(tmp_path, report_inputs)
    assert "One in vivo donor: the positive control held out a random 20% of its cells" in warnings
    assert "No negative control" in warnings
    verdict = text[text.index('<section id="verdict"') :]
    assert "a held-out 20% of the one in vivo donor 0.93-0.97" in verdict
    assert "held-out real donors" not in verdict.split("<section")[1]
    _controls().assign(held_out=["d1", "d1"]).to_csv(
        report_inputs["tables"]["fidelity_controls"], sep="\t", index=False
    )
    text, _ = _written(tmp_path, report_inputs)
    assert "One in vivo donor" not in text and "No negative control" not in text
    assert "held-out real donors 0.93-0.97" in text


def test_a_profile_reference_scorecard_is_not_read_on_a_donor_scale(tmp_path, report_inputs):
    """Against the shipped profiles the index is identity alone, a raw share with no donor null: the card does
    not say "1 = as close as a real donor" and a warning says what is missing."""
    sc = _scorecard()
    for part in ("similarity", "programme", "composition"):
        sc[[part, f"{part}_ci_low", f"{part}_ci_high"]] = np.nan
    sc["programme_source"] = "unavailable (profile reference)"
    sc.to_csv(report_inputs["tables"]["scorecard"], sep="\t", index=False)
    pd.DataFrame().to_csv(report_inputs["tables"]["fidelity_controls"], sep="\t", index=False)
    text, warnings = _written(tmp_path, report_inputs)
    assert "Profile reference: no labelled in vivo samples" in warnings
    assert "Identity 0.58 (share of cells confidently mapped to a marrow type or its lineage)" in text
    assert "as close as a real donor)" not in text
    assert "HSC programme not assessed" not in text  # a profile row says so in its warning


def test_time_course_figures_only_with_organoid_timepoints(tmp_path, report_inputs):
    """An engineered-only run has no time course: its placeholder figures are left out, not shown."""
    inputs = dict(report_inputs)
    inputs["figures"] = [*inputs["figures"], _png(tmp_path / "timecourse_composition.png", "tc")]
    tc = tmp_path / "timecourse.tsv"
    inputs["tables"] = {**inputs["tables"], "timecourse": tc}
    out = tmp_path / "report.html"
    pd.DataFrame(columns=["sample", "timepoint", "fidelity_index"]).to_csv(tc, sep="\t", index=False)
    write_report(out, **inputs)
    assert 'data-figure="timecourse_composition.png"' not in out.read_text()
    pd.DataFrame({"sample": ["o1"], "timepoint": ["week2"], "fidelity_index": [0.7]}).to_csv(
        tc, sep="\t", index=False
    )
    write_report(out, **inputs)
    assert 'data-figure="timecourse_composition.png"' in out.read_text()


def test_a_missing_programme_part_is_said_not_dropped(tmp_path, report_inputs):
    sc = _scorecard()
    sc.loc[0, ["programme", "programme_ci_low", "programme_ci_high"]] = np.nan
    sc["programme_source"] = ["unavailable", "score_table"]
    sc.to_csv(report_inputs["tables"]["scorecard"], sep="\t", index=False)
    out = tmp_path / "report.html"
    write_report(out, **report_inputs)
    sentences = _sentences(out.read_text())
    assert "HSC programme not assessed (no HSC type in the reference" in sentences["engineered_A"]
    assert "not assessed" not in sentences["organoid_w2"]


def test_other_stages_columns_and_presence_tables_render_when_present(tmp_path, report_inputs):
    sc = _scorecard()
    sc["hsc_identity_definitive_fraction"] = [0.31, 0.02]
    sc.to_csv(report_inputs["tables"]["scorecard"], sep="\t", index=False)
    presence = pd.DataFrame(
        {
            "sample": ["organoid_w2"] * 3,
            "lineage": ["Erythroid", "Lymphoid", "Mk"],
            "status": ["present", "absent", "undetermined"],
        }
    )
    report_inputs["tables"]["lineage_presence"] = tmp_path / "lineage_presence.tsv"
    presence.to_csv(report_inputs["tables"]["lineage_presence"], sep="\t", index=False)
    out = tmp_path / "report.html"
    write_report(out, **report_inputs)
    text = out.read_text()
    assert "hsc identity definitive fraction: <b>0.31</b>" in text
    assert '<span class="chip absent" title="absent">Lymphoid</span>' in text
    assert '<span class="chip absent" title="undetermined">Mk?</span>' in text
    assert '<span class="chip" style="background:' in text


def test_cards_show_the_reference_stage_beside_the_maturity_call_and_the_identity_classes(
    tmp_path, report_inputs
):
    """Issue #13: the reference's closest stage is the primary answer, the score stage's maturity call from
    stage programmes is shown beside it, and the identity classes say why cells are or are not HSC-like."""
    sc = _scorecard().assign(closest_stage=["AGM", ""], closest_stage_share=[0.63, np.nan])
    sc.to_csv(report_inputs["tables"]["scorecard"], sep="\t", index=False)
    prog = pd.read_csv(report_inputs["tables"]["hsc_programme"], sep="\t")
    prog = prog.assign(hsc_stage_call=["fetal-liver-like", "undetermined"], n_stage_cells=[121, 4])
    for slug, values in (("hsc_like", [0.40, 0.05]), ("endothelial_lookalike", [0.35, 0.004])):
        prog[f"frac_{slug}"] = values
    prog.to_csv(report_inputs["tables"]["hsc_programme"], sep="\t", index=False)
    out = tmp_path / "report.html"
    write_report(out, **report_inputs)
    cards = re.findall(r'<ul class="identity">(.*?)</ul>', out.read_text())
    engineered, organoid = cards
    assert engineered.index("Closest in vivo stage (reference stages): AGM (63% of its mapped cells)") < (
        engineered.index("HSC maturity from stage programmes (AGM / fetal liver / adult): fetal-liver-like")
    )
    assert "Identity of its cells: HSC-like 40%, endothelial look-alike 35%" in engineered
    assert "Closest in vivo stage" not in organoid  # no reference stages for this sample
    assert "undetermined (4 HSC-like or pre-HSC cells)" in organoid
    assert "endothelial look-alike 0.4%" in organoid


def test_tables_are_collapsed_sortable_and_downloadable(tmp_path, report_inputs):
    out = tmp_path / "report.html"
    write_report(out, **report_inputs)
    text = out.read_text()
    m = re.search(r'download="composition.tsv" href="data:text/tab-separated-values;base64,([^"]+)"', text)
    downloaded = pd.read_csv(pd.io.common.StringIO(base64.b64decode(m.group(1)).decode()), sep="\t")
    expected = pd.read_csv(report_inputs["tables"]["composition"], sep="\t")
    pd.testing.assert_frame_equal(downloaded, expected)
    assert '<details class="table" data-table="composition">' in text
    assert 'class="dataframe sortable"' in text


def test_report_failure_leaves_no_half_written_file(tmp_path, report_inputs):
    out = tmp_path / "report.html"
    report_inputs["figures"] = [tmp_path / "missing.png"]
    with pytest.raises(FileNotFoundError):
        write_report(out, **report_inputs)
    assert list(tmp_path.glob("*report.html*")) == []


# -- the real browser -------------------------------------------------------------------------------------


def _browse(html: Path, screenshot: Path) -> dict:
    """Open ``html`` in headless Chromium; return what a reader would see (and save a screenshot)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    profile = tempfile.mkdtemp(prefix="chromium-profile-")
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        f"--user-data-dir={profile}",
        "--window-size=1400,1000",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    seen: dict = {}
    try:
        driver.get(html.as_uri())
        seen["title"] = driver.title
        images = driver.find_elements(By.TAG_NAME, "img")
        seen["images"] = [
            driver.execute_script("return arguments[0].complete && arguments[0].naturalWidth", img)
            for img in images
        ]
        seen["sections"] = [s.get_attribute("id") for s in driver.find_elements(By.TAG_NAME, "section")]
        canvas = driver.find_element(By.ID, "umap-canvas")
        driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", canvas)
        seen["drawn"] = int(canvas.get_attribute("data-drawn") or 0)
        # how many distinct colours the canvas really holds (points drawn, not a blank box)
        seen["colours"] = driver.execute_script(
            "var c=document.getElementById('umap-canvas'),d=c.getContext('2d').getImageData(0,0,c.width,"
            "c.height).data,s=new Set();for(var i=0;i<d.length;i+=4){if(d[i+3]>0)s.add(d[i]+','+d[i+1]+','+"
            "d[i+2]);}return s.size;"
        )
        x, y = driver.execute_script("return window.hscUmap.point(0)")
        size = canvas.size
        ActionChains(driver).move_to_element_with_offset(
            canvas, int(x - size["width"] / 2), int(y - size["height"] / 2)
        ).perform()
        tip = driver.find_element(By.ID, "umap-tip")
        seen["tip_visible"] = tip.is_displayed()
        seen["tip"] = tip.text
        seen["first_cell"] = driver.execute_script("return HSC_UMAP.id[0]")
        # sorting a table by clicking its header
        details = driver.find_element(By.CSS_SELECTOR, 'details[data-table="composition"]')
        driver.execute_script("arguments[0].open = true", details)
        headers = [h.text for h in details.find_elements(By.TAG_NAME, "th")]
        col_index = headers.index("fraction")
        header = details.find_elements(By.TAG_NAME, "th")[col_index]
        driver.execute_script("arguments[0].click()", header)
        rows = details.find_elements(By.CSS_SELECTOR, "tbody tr")
        col = [r.find_elements(By.TAG_NAME, "td")[col_index].text for r in rows]
        seen["sorted_column"] = col
        driver.execute_script("window.scrollTo(0, 0)")
        driver.save_screenshot(str(screenshot))
        seen["console_errors"] = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
        subprocess.run(["pkill", "-f", profile], check=False)
    return seen


def _assert_reader_sees_everything(seen: dict, screenshot: Path) -> None:
    assert seen["console_errors"] == []
    assert seen["images"] and all(w and w > 50 for w in seen["images"]), seen["images"]
    for section in SECTIONS:
        assert section in seen["sections"], section
    assert seen["drawn"] > 100
    assert seen["colours"] > 5, "the UMAP canvas holds coloured points"
    assert seen["tip_visible"] and seen["first_cell"] in seen["tip"] and "HSC score" in seen["tip"]
    values = [float(v) for v in seen["sorted_column"] if v]
    assert values == sorted(values), "clicking a header sorts the table"
    assert screenshot.stat().st_size > 20_000


@pytest.mark.browser
@needs_browser
def test_report_renders_in_headless_chromium(tmp_path, report_inputs):
    out = tmp_path / "report.html"
    write_report(out, **report_inputs)
    shot = tmp_path / "screenshot.png"
    seen = _browse(out, shot)
    assert seen["title"] == "hscseq fidelity report"
    _assert_reader_sees_everything(seen, shot)


@pytest.mark.browser
@pytest.mark.workflow
@needs_browser
def test_workflow_report_renders_in_headless_chromium(workflow_run, tmp_path):
    """The report of the workflow test's small run, as a reader opens it."""
    html = workflow_run.directory / "results" / "report.html"
    assert html.stat().st_size < 20e6
    shot = tmp_path / "workflow_report.png"
    seen = _browse(html, shot)
    _assert_reader_sees_everything(seen, shot)


@pytest.mark.workflow
def test_snakemake_report_holds_the_results_with_their_captions(workflow_run, tmp_path):
    """`snakemake --report` on the finished small run: a zip whose report carries our .rst captions."""
    import zipfile

    out = tmp_path / "snakemake_report.zip"
    proc = subprocess.run(
        [*workflow_run.command, "--report", str(out)],
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    with zipfile.ZipFile(out) as archive:
        names = archive.namelist()
        text = "".join(
            archive.read(n).decode("utf-8", "replace") for n in names if n.endswith((".html", ".js", ".json"))
        )
    for result in ("report.html", "fidelity.png", "umap.png", "integration_metrics.tsv"):
        assert any(n.endswith(result) for n in names), (result, names[:20])
    # captions from workflow/report/*.rst, rendered (the qc one with its sample wildcard filled in)
    assert "held-out real" in text and "Integration quality measured with scib-metrics" in text
    assert "Quality control of sample" in text and "{{ snakemake.wildcards.sample }}" not in text


def test_card_shares_are_percentages_that_do_not_round_to_zero():
    """A card showed "HSC-like: 0.00 [0.00, 0.00]" beside "HSC-like 0.1%": shares are percentages."""
    from hscseq.report.verdict import _kv

    assert "<b>0.1%</b> [0.0%, 0.3%]" in _kv("HSC-like", 0.001, 0.0, 0.003, share=True)
    assert "<b>36%</b> [27%, 45%]" in _kv("novel share", 0.36, 0.27, 0.45, share=True)
    assert "<b>0.61</b> [0.58, 0.64]" in _kv("identity", 0.61, 0.58, 0.64)


def test_many_types_keep_a_colour_each_and_a_lineage_one_hue():
    """Beyond the 16 colour-blind-safe colours, types are shaded within their lineage instead of repeating."""
    import colorsys

    from hscseq.fidelity.profiles import hematomap_lineages
    from hscseq.report import figures as F

    lineages = hematomap_lineages()  # the shipped profiles' 43 types
    types = sorted({*lineages, *lineages.values()} - set(lineages.values()))
    assert len(types) > 16
    colours = F.palette([*types, "novel"], lineages)
    assert len({colours[t] for t in types}) == len(types)  # every type its own colour
    assert colours["novel"] == F.NOVEL_COLOUR

    def hue(colour: str) -> float:
        return colorsys.rgb_to_hsv(*(int(colour[i : i + 2], 16) / 255 for i in (1, 3, 5)))[0]

    by_lineage: dict[str, list[float]] = {}
    for t in types:
        by_lineage.setdefault(lineages.get(t, t), []).append(hue(colours[t]))
    spread = {k: max(h) - min(h) for k, h in by_lineage.items()}
    assert max(spread.values()) < 0.02, spread  # one hue per lineage (up to 8-bit rounding)
    # without lineages every type is its own group: still no repeats
    flat = F.palette(types)
    assert len({flat[t] for t in types}) == len(types)
    # up to 16 types: the plain colour-blind-safe colours, as before
    few = F.palette(types[:16], lineages)
    assert {few[t] for t in types[:16]} == set(F.OKABE_ITO[:7] + F.TOL_MUTED)
