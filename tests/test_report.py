"""The report is one self-contained file that a real headless browser renders completely."""

import shutil
import subprocess
import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd
import pytest

from hscseq.report import write_report

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")


def _png(path: Path, title: str) -> Path:
    fig, ax = plt.subplots(figsize=(3, 2))
    ax.plot([0, 1], [0, 1])
    ax.set_title(title)
    fig.savefig(path, dpi=60)
    plt.close(fig)
    return path


@pytest.fixture
def report_inputs(tmp_path):
    samples = [
        {
            "sample": "engineered_A",
            "condition": "engineered",
            "species": "mouse",
            "batch": "b1",
            "path": "/x",
        },
        {"sample": "organoid_w2", "condition": "organoid", "species": "human", "batch": "b2", "path": "/y"},
    ]
    scorecard = pd.DataFrame(
        {
            "sample": ["engineered_A", "organoid_w2"],
            "fidelity_index": [0.41, 0.77],
            "warning": ["condition and batch are confounded", ""],
        }
    )
    qc = pd.DataFrame(
        {"sample": ["engineered_A", "organoid_w2"], "cells_in": [100, 120], "cells_out": [90, 110]}
    )
    tables = {}
    for name, df in {"scorecard": scorecard, "qc_summary": qc}.items():
        tables[name] = tmp_path / f"{name}.tsv"
        df.to_csv(tables[name], sep="\t", index=False)
    figures = [_png(tmp_path / "umap.png", "umap"), _png(tmp_path / "fidelity.png", "fidelity")]
    qc_figures = [_png(tmp_path / "engineered_A.png", "qc A"), _png(tmp_path / "organoid_w2.png", "qc B")]
    return {"tables": tables, "figures": figures, "qc_figures": qc_figures, "samples": samples}


def test_report_is_self_contained(tmp_path, report_inputs):
    out = tmp_path / "report.html"
    write_report(out, **report_inputs)
    text = out.read_text()
    assert "http://" not in text.replace("http://www.informatics", "")  # no external resources
    assert "<script src" not in text and "<link " not in text
    assert text.count("data:image/png;base64,") == 4
    for sample in ("engineered_A", "organoid_w2"):
        assert sample in text
    assert "condition and batch are confounded" in text  # stage warnings surface at the top
    assert text.index('id="warnings"') < text.index('id="scorecard"') < text.index('id="qc_summary"')


def test_boolean_warning_columns_flag_only_true_rows(tmp_path, report_inputs):
    metrics = pd.DataFrame(
        {"metric": ["ilisi", "ari"], "value": [0.05, 0.9], "bar": [0.2, 0.3], "warning": [True, False]}
    )
    report_inputs["tables"]["integration_metrics"] = tmp_path / "integration_metrics.tsv"
    metrics.to_csv(report_inputs["tables"]["integration_metrics"], sep="\t", index=False)
    out = tmp_path / "report.html"
    write_report(out, **report_inputs)
    text = out.read_text()
    assert "integration_metrics: ilisi flagged (0.05 below the bar 0.2)" in text
    assert "ari flagged" not in text


def test_report_failure_leaves_no_half_written_file(tmp_path, report_inputs):
    out = tmp_path / "report.html"
    report_inputs["figures"] = [tmp_path / "missing.png"]
    with pytest.raises(FileNotFoundError):
        write_report(out, **report_inputs)
    assert list(tmp_path.glob("*report.html*")) == []


@pytest.mark.browser
@pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER),
    reason="headless Chromium/chromedriver not installed (apt-get install chromium chromium-driver)",
)
def test_report_renders_in_headless_chromium(tmp_path, report_inputs):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By

    out = tmp_path / "report.html"
    write_report(out, **report_inputs)
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
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
    try:
        driver.get(out.as_uri())
        assert driver.title == "hscseq fidelity report"
        images = driver.find_elements(By.TAG_NAME, "img")
        assert len(images) == 4
        # every embedded figure decoded and has real pixels
        widths = [driver.execute_script("return arguments[0].naturalWidth", img) for img in images]
        assert all(w > 50 for w in widths), widths
        nav = [a.text for a in driver.find_elements(By.CSS_SELECTOR, "nav a")]
        assert nav[:3] == ["Warnings", "Fidelity scorecard", "Quality control"]
        rows = driver.find_elements(By.CSS_SELECTOR, "#scorecard table tbody tr")
        assert [r.find_elements(By.TAG_NAME, "td")[0].text for r in rows] == ["engineered_A", "organoid_w2"]
        png = tmp_path / "screenshot.png"
        driver.save_screenshot(str(png))
        assert png.stat().st_size > 10_000
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
        subprocess.run(["pkill", "-f", profile], check=False)
