"""Bad inputs through the real DAG: refused before any job, every problem listed, nothing written, inputs
untouched (sha256 before and after)."""

from __future__ import annotations

import gzip
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from hscseq import datasets

from .conftest import snakemake_command

HEADER = "sample\tpath\tspecies\tcondition\tbatch\tformat\tlabel_column\n"


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, demo_small) -> Path:
    d = tmp_path_factory.mktemp("dag_inputs")
    datasets.write_h5ad_sample(
        demo_small["invivo_donor1"].copy(), d / "ref.h5ad", keep_obs=["true_cell_type"]
    )
    datasets.write_10x_h5(demo_small["engineered_7TF"], d / "eng.h5")
    datasets.write_10x_mtx(demo_small["engineered_7TF"], d / "eng_mtx")
    return d


def _run(tmp_path: Path, inputs: Path, rows: list[str], *extra: str, sheet_text: str | None = None):
    data = tmp_path / "data"
    shutil.copytree(inputs, data, symlinks=True)
    sheet = tmp_path / "samples.tsv"
    ref = f"ref\t{data / 'ref.h5ad'}\tmouse\tin_vivo\tb0\t\ttrue_cell_type\n"
    sheet.write_text(sheet_text or HEADER + ref + "".join(r.format(data=data) + "\n" for r in rows))
    return data, sheet


def _refused(tmp_path, data, sheet, *extra, fifo: Path | None = None) -> str:
    if fifo is not None:
        os.mkfifo(fifo)
    before = datasets.sha256sums(data)
    workdir = tmp_path / "run"
    cmd = snakemake_command(workdir, sheet, *extra)
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300, check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out
    assert "problem(s) found before the run started" in out, out[-3000:]
    assert not (workdir / "results").exists(), "no job may run (nothing under results/)"
    assert not list(workdir.glob("logs/**/*.log")), "no job may start"
    assert datasets.sha256sums(data) == before, "inputs are never modified"
    return out


def test_fifo_and_wrong_forced_format_are_both_listed(tmp_path, inputs):
    rows = [
        "piped\t{data}/pipe.h5\tmouse\tengineered\tb1\t\t",
        "forced\t{data}/eng.h5\tmouse\tengineered\tb2\th5ad\t",
    ]
    data, sheet = _run(tmp_path, inputs, rows)
    out = _refused(tmp_path, data, sheet, fifo=data / "pipe.h5")
    assert "2 problem(s)" in out
    assert f"sample 'piped', file '{data}/pipe.h5': the count matrix is a FIFO" in out
    assert (
        "sample 'forced'" in out
        and "looks like 10x_h5" in out
        and "set the 'format' column to '10x_h5'" in out
    )


def test_absurd_mtx_header(tmp_path, inputs):
    data, sheet = _run(tmp_path, inputs, ["absurd\t{data}/eng_mtx\tmouse\tengineered\tb1\t\t"])
    mtx = data / "eng_mtx" / "matrix.mtx.gz"
    lines = gzip.decompress(mtx.read_bytes()).decode().splitlines(keepends=True)
    lines[2] = " ".join([*lines[2].split()[:2], "123456789012345"]) + "\n"
    mtx.write_bytes(gzip.compress("".join(lines).encode()))
    out = _refused(tmp_path, data, sheet)
    assert f"sample 'absurd', file '{mtx}'" in out and "123456789012345 entries" in out
    assert "MemoryError" not in out and "copy the whole matrix folder again" in out


def test_user_signature_with_no_measured_gene(tmp_path, inputs):
    data, sheet = _run(tmp_path, inputs, ["eng\t{data}/eng.h5\tmouse\tengineered\tb1\t\t"])
    gmt = data / "mine.gmt"
    gmt.write_text("my_sig\tmine\tNotAGene1\tNotAGene2\n")
    overlay = tmp_path / "overlay.yaml"
    overlay.write_text(f"score:\n  user_signatures: [{gmt}]\n")
    out = _refused(tmp_path, data, sheet, "--configfile", str(overlay))
    assert "config key 'score.user_signatures'" in out and str(gmt) in out
    assert "none of its genes is measured in any sample" in out and "score.user_species" in out


def test_comma_separated_sheet(tmp_path, inputs):
    text = "sample,path,species,condition,batch\neng,{data}/eng.h5,mouse,engineered,b1\n"
    data, sheet = _run(tmp_path, inputs, [])
    sheet.write_text(text.format(data=data))
    out = _refused(tmp_path, data, sheet)
    assert f"file '{sheet}'" in out and "comma-separated" in out and "separate the columns with tabs" in out


def test_species_mistake_and_duplicated_barcodes_together(tmp_path, inputs):
    rows = [
        "human_typo\t{data}/eng.h5\thuman\tengineered\tb1\t\t",
        "dups\t{data}/eng_mtx\tmouse\tengineered\tb2\t\t",
    ]
    data, sheet = _run(tmp_path, inputs, rows)
    barcodes = data / "eng_mtx" / "barcodes.tsv.gz"
    lines = gzip.decompress(barcodes.read_bytes()).decode().splitlines(keepends=True)
    barcodes.write_bytes(gzip.compress("".join([lines[0], *lines[:-1]]).encode()))
    out = _refused(tmp_path, data, sheet)
    assert "sample 'human_typo'" in out and "declares species 'human' but the gene names are mouse" in out
    assert "sample 'dups'" in out and "duplicated cell barcodes" in out


def test_config_overlay_with_python_tags_is_refused_not_executed(tmp_path, inputs):
    data, sheet = _run(tmp_path, inputs, ["eng\t{data}/eng.h5\tmouse\tengineered\tb1\t\t"])
    marker = tmp_path / "executed"
    overlay = tmp_path / "evil.yaml"
    overlay.write_text("report:\n  title: !!python/name:os.system\n")
    out = _refused(tmp_path, data, sheet, "--configfile", str(overlay))
    assert f"file '{overlay}'" in out and "Python tag" in out and "What to do" in out
    apply = tmp_path / "apply.yaml"
    apply.write_text(f"report:\n  title: !!python/object/apply:os.system ['touch {marker}']\n")
    proc = subprocess.run(
        snakemake_command(tmp_path / "run", sheet, "--configfile", str(apply)),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode != 0 and not marker.exists(), "the tag is refused, never executed"
    assert not (tmp_path / "run" / "results").exists()
