"""Pre-run validation (hscseq.validate): a matrix of bad inputs, each refused with a message naming the
sample (or config key), the file and what to do; every problem collected; nothing opened that could block.

The in-process cases call :func:`hscseq.validate.validate_run`; ``test_validate_dag.py`` runs a handful
through the real DAG.
"""

from __future__ import annotations

import gzip
import os
import shutil
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import yaml
from snakemake.utils import update_config

from hscseq import datasets, score
from hscseq.validate import MIN_CELLS, check_config_file, validate_run

from .conftest import DATA, REPO

HEADER = "sample\tpath\tspecies\tcondition\tbatch\tformat\tlabel_column\n"


@pytest.fixture(scope="module")
def good(tmp_path_factory, demo_small) -> dict[str, Path]:
    """One valid input per format (mouse): labelled h5ad, 10x h5, 10x MTX folder, dense TSV."""
    d = tmp_path_factory.mktemp("good")
    invivo = demo_small["invivo_donor1"]
    eng = demo_small["engineered_7TF"]
    paths = {
        "h5ad": d / "invivo.h5ad",
        "h5": d / "eng.h5",
        "mtx": d / "eng_mtx",
        "tsv": d / "eng.tsv.gz",
        "h5ad2": d / "invivo2.h5ad",
    }
    datasets.write_h5ad_sample(invivo.copy(), paths["h5ad"], keep_obs=["true_cell_type"])
    datasets.write_h5ad_sample(
        demo_small["invivo_donor2"].copy(), paths["h5ad2"], keep_obs=["true_cell_type"]
    )
    datasets.write_10x_h5(eng, paths["h5"])
    datasets.write_10x_mtx(eng, paths["mtx"])
    datasets.write_dense_table(eng[:80].copy(), paths["tsv"])
    return paths


def _config(tmp_path: Path, rows: list[str], **sections) -> dict:
    """The merged config a user would run: config.yaml + the test overlay + a sample sheet of ``rows``."""
    cfg = yaml.safe_load((REPO / "config/config.yaml").read_text())
    for section, values in yaml.safe_load((DATA / "workflow_config.yaml").read_text()).items():
        cfg[section].update(values)
    for section, values in sections.items():
        cfg.setdefault(section, {}).update(values)
    sheet = tmp_path / "samples.tsv"
    sheet.write_text(HEADER + "".join(r + "\n" for r in rows))
    cfg["samples"] = str(sheet)
    return cfg


def _row(sample, path, *, species="mouse", condition="engineered", fmt="", label=""):
    return f"{sample}\t{path}\t{species}\t{condition}\tb_{sample}\t{fmt}\t{label}"


def _ref(good) -> str:
    return _row("ref1", good["h5ad"], condition="in_vivo", label="true_cell_type")


def _validate(tmp_path, rows, **sections):
    return validate_run(_config(tmp_path, rows, **sections), base_dir=REPO)


def _problem(result, *needles: str, fix: str) -> str:
    """The one problem line holding every needle; it names what to do (``fix``)."""
    assert not result.ok
    hits = [p for p in result.problems if all(n in p for n in needles)]
    assert len(hits) == 1, f"{needles} not in exactly one of:\n" + "\n".join(result.problems)
    line = hits[0]
    assert "\n" not in line
    assert "What to do:" in line and fix in line.split("What to do:", 1)[1], line
    return line


# --------------------------------------------------------------------------------------------------------
# the valid baseline


def test_valid_inputs_pass_and_are_described(tmp_path, good):
    rows = [
        _ref(good),
        _row("eng_h5", good["h5"]),
        _row("eng_mtx", good["mtx"]),
        _row("eng_tsv", good["tsv"]),
    ]
    result = _validate(tmp_path, rows)
    assert result.ok, result.problems
    s = result.samples.set_index("sample")
    assert list(result.samples.columns) == [
        "sample",
        "format",
        "species",
        "technology",
        "cells",
        "genes",
        "condition",
    ]
    assert s.loc["ref1", "format"] == "h5ad" and s.loc["eng_h5", "format"] == "10x_h5"
    assert s.loc["eng_mtx", "format"] == "10x_mtx" and s.loc["eng_tsv", "format"] == "tsv"
    assert s.loc["eng_h5", "cells"] == s.loc["eng_mtx", "cells"] > MIN_CELLS
    assert s.loc["eng_tsv", "cells"] == 80 and s.loc["eng_tsv", "genes"] == s.loc["eng_h5", "genes"]


@pytest.mark.parametrize("overlay", ["demo.yaml", "demo_organoid.yaml"])
def test_the_shipped_demo_configs_pass(overlay):
    cfg = yaml.safe_load((REPO / "config/config.yaml").read_text())
    update_config(cfg, yaml.safe_load((REPO / "config" / overlay).read_text()))  # as snakemake merges it
    result = validate_run(cfg, base_dir=REPO)
    assert result.ok, result.problems
    sheet = pd.read_csv(REPO / cfg["samples"], sep="\t", comment="#")
    assert list(result.samples["sample"]) == list(sheet["sample"])
    assert (result.samples["cells"] > 0).all()


# --------------------------------------------------------------------------------------------------------
# non-regular files: refused without being opened (opening a FIFO for reading blocks)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("fmt", ["", "h5ad", "tsv"])
def test_fifo_is_refused_without_blocking(tmp_path, good, fmt):
    fifo = tmp_path / "counts.h5ad"
    os.mkfifo(fifo)
    result = _validate(tmp_path, [_ref(good), _row("piped", fifo, fmt=fmt)])
    _problem(result, "'piped'", str(fifo), "FIFO", fix="copy streamed data to a file")


@pytest.mark.timeout(60)
def test_fifo_inside_an_mtx_folder_is_refused(tmp_path, good):
    folder = tmp_path / "mtx"
    shutil.copytree(good["mtx"], folder)
    (folder / "matrix.mtx.gz").unlink()
    os.mkfifo(folder / "matrix.mtx.gz")
    result = _validate(tmp_path, [_ref(good), _row("piped", folder)])
    _problem(result, "'piped'", "matrix.mtx.gz", "FIFO", fix="copy the real matrix files")


def test_character_device_is_refused(tmp_path, good):
    result = _validate(tmp_path, [_ref(good), _row("dev", "/dev/null")])
    _problem(result, "'dev'", "/dev/null", "character device", fix="copy streamed data")


def test_directory_where_a_file_format_is_forced(tmp_path, good):
    empty = tmp_path / "folder.h5ad"
    empty.mkdir()
    result = _validate(tmp_path, [_ref(good), _row("dir", empty, fmt="h5ad")])
    _problem(result, "'dir'", str(empty), "is a directory", fix="'format' column")


# --------------------------------------------------------------------------------------------------------
# wrong forced formats: the message says what the file looks like


@pytest.mark.parametrize(
    ("source", "forced", "looks"),
    [("h5ad", "10x_mtx", "h5ad"), ("h5", "h5ad", "10x_h5"), ("mtx", "10x_h5", "10x_mtx")],
)
def test_wrong_forced_format_names_what_the_file_looks_like(tmp_path, good, source, forced, looks):
    result = _validate(tmp_path, [_ref(good), _row("forced", good[source], fmt=forced)])
    line = _problem(result, "'forced'", f"forces format '{forced}'", fix=f"'format' column to '{looks}'")
    assert f"looks like {looks}" in line


def test_wrong_forced_format_hint_from_ingest_too(tmp_path, good):
    """Library use without validation: the reader's error also says what the file looks like."""
    from hscseq import HscseqInputError
    from hscseq.ingest import read_sample

    with pytest.raises(HscseqInputError, match=r"h5ad input .* looks like a gzip-compressed tab-separated"):
        read_sample(good["tsv"], sample="s", species="mouse", fmt="h5ad")


def test_tab_table_forced_as_csv(tmp_path, good):
    result = _validate(tmp_path, [_ref(good), _row("tab", good["tsv"], fmt="csv")])
    _problem(result, "'tab'", "tab-separated", fix="'format' to tsv")


def test_unrecognised_name_forced_to_the_wrong_format_gets_a_hint(tmp_path, good):
    odd = tmp_path / "counts.dat"
    odd.write_bytes(gzip.decompress(good["tsv"].read_bytes()))
    result = _validate(tmp_path, [_ref(good), _row("odd", odd, fmt="h5ad")])
    _problem(result, "'odd'", str(odd), "looks like a tab-separated text table", fix="'format' column")
    assert _validate(tmp_path, [_ref(good), _row("odd", odd, fmt="tsv")]).ok


# --------------------------------------------------------------------------------------------------------
# lying headers and dimension mismatches


def test_10x_h5_shape_lying_about_the_cells(tmp_path, good):
    bad = tmp_path / "lying.h5"
    shutil.copy(good["h5"], bad)
    with h5py.File(bad, "r+") as f:
        shape = f["matrix/shape"][()]
        f["matrix/shape"][1] = shape[1] + 50
    result = _validate(tmp_path, [_ref(good), _row("liar", bad)])
    _problem(result, "'liar'", str(bad), f"{shape[1] + 50} cells but it holds", fix="export or copy it again")


def _mtx_copy(good, tmp_path, name="mtx") -> Path:
    folder = tmp_path / name
    shutil.copytree(good["mtx"], folder)
    return folder


def _rewrite_gz(path: Path, edit) -> None:
    text = gzip.decompress(path.read_bytes()).decode()
    path.write_bytes(gzip.compress(edit(text).encode()))


def test_mtx_dimension_mismatch_with_barcodes(tmp_path, good):
    folder = _mtx_copy(good, tmp_path)
    _rewrite_gz(folder / "barcodes.tsv.gz", lambda t: "".join(t.splitlines(keepends=True)[:-5]))
    result = _validate(tmp_path, [_ref(good), _row("mism", folder)])
    _problem(result, "'mism'", "barcodes.tsv.gz lists", fix="copy the whole folder again")


def test_mtx_header_announcing_an_absurd_entry_count(tmp_path, good):
    folder = _mtx_copy(good, tmp_path)

    def edit(text):
        lines = text.splitlines(keepends=True)
        n_rows, n_cols, _ = lines[2].split()
        lines[2] = f"{n_rows} {n_cols} 999999999999999\n"
        return "".join(lines)

    _rewrite_gz(folder / "matrix.mtx.gz", edit)
    result = _validate(tmp_path, [_ref(good), _row("absurd", folder)])
    _problem(
        result, "'absurd'", "matrix.mtx.gz", "999999999999999 entries", "nothing was allocated", fix="corrupt"
    )


def test_absurd_mtx_header_is_refused_by_ingest_too(tmp_path, good):
    """The ingest job itself (library use, no validation) refuses it instead of a raw MemoryError."""
    from hscseq import HscseqInputError
    from hscseq.ingest import read_sample

    folder = _mtx_copy(good, tmp_path)
    _rewrite_gz(
        folder / "matrix.mtx.gz",
        lambda t: t.replace(
            t.splitlines()[2], " ".join([*t.splitlines()[2].split()[:2], "10000000000000"]), 1
        ),
    )
    with pytest.raises(HscseqInputError, match="announces 10000000000000 entries"):
        read_sample(folder, sample="absurd", species="mouse")


def test_mtx_truncated_far_below_its_header(tmp_path, good):
    folder = _mtx_copy(good, tmp_path, "trunc")
    _rewrite_gz(folder / "matrix.mtx.gz", lambda t: "".join(t.splitlines(keepends=True)[:40]))
    result = _validate(tmp_path, [_ref(good), _row("trunc", folder)])
    _problem(
        result, "'trunc'", "matrix.mtx.gz", "-byte file can hold", fix="copy the whole matrix folder again"
    )


def test_mtx_entry_lines_shorter_than_announced(tmp_path, good):
    folder = _mtx_copy(good, tmp_path, "short")

    def edit(text):
        lines = text.splitlines(keepends=True)
        lines[2] = " ".join([*lines[2].split()[:2], "50"]) + "\n"
        return "".join(lines[:3] + ["1 1\n"] * 60)

    _rewrite_gz(folder / "matrix.mtx.gz", edit)
    result = _validate(tmp_path, [_ref(good), _row("short", folder)])
    _problem(result, "'short'", "has 2 fields instead of 3", fix="export or copy it again")


def test_mtx_entry_outside_the_dimensions(tmp_path, good):
    folder = _mtx_copy(good, tmp_path)

    def edit(text):
        lines = text.splitlines(keepends=True)
        lines[3] = "999999 1 3\n"
        return "".join(lines)

    _rewrite_gz(folder / "matrix.mtx.gz", edit)
    result = _validate(tmp_path, [_ref(good), _row("outside", folder)])
    _problem(result, "'outside'", "outside the matrix dimensions", fix="export or copy it again")


# --------------------------------------------------------------------------------------------------------
# content: empty, not counts, duplicated barcodes, too few cells


def _table(tmp_path, good, name, edit) -> Path:
    path = tmp_path / name
    lines = gzip.decompress(good["tsv"].read_bytes()).decode().splitlines()
    path.write_text("\n".join(edit(lines)) + "\n")
    return path


def test_table_with_a_header_and_no_rows_is_empty(tmp_path, good):
    path = _table(tmp_path, good, "empty.tsv", lambda lines: lines[:1])
    _problem(
        _validate(tmp_path, [_ref(good), _row("empty", path)]),
        "'empty'",
        "no data rows",
        fix="export finished",
    )


def test_all_zero_h5ad_is_empty(tmp_path, demo_small, good):
    import anndata as ad

    a = demo_small["engineered_7TF"]
    zero = ad.AnnData(X=sp.csr_matrix(a.shape, dtype=np.float32), var=a.var[[]].copy(), obs=a.obs[[]].copy())
    path = tmp_path / "zero.h5ad"
    zero.write_h5ad(path)
    result = _validate(tmp_path, [_ref(good), _row("zero", path)])
    _problem(result, "'zero'", "the count matrix is empty", fix="filtered matrix")


@pytest.mark.parametrize(
    ("value", "what"), [("-3", "negative values"), ("nan", "NaN or infinite"), ("2.5", "non-integer values")]
)
def test_values_that_are_not_counts(tmp_path, good, value, what):
    def edit(lines):
        fields = lines[3].split("\t")
        fields[5] = value
        return [*lines[:3], "\t".join(fields), *lines[4:]]

    path = _table(tmp_path, good, "bad.tsv", edit)
    _problem(
        _validate(tmp_path, [_ref(good), _row("notcounts", path)]), "'notcounts'", what, fix="raw UMI counts"
    )


def test_plate_expected_counts_pass_where_ingest_rounds_them(tmp_path, good):
    """RSEM/Salmon expected counts: accepted in a plate sample's table (ingest rounds them); refused as
    droplet data (pointing at technology: plate), in an h5ad (its counts slot is found by the integer rule)
    and, plate or not, when negative."""
    plate = datasets.plate_sample(40, n_genes=3_000, seed=4)
    table = pd.DataFrame(plate.X.toarray().T, index=plate.var_names, columns=plate.obs_names)
    table.to_csv(tmp_path / "rsem.tsv", sep="\t", float_format="%.2f")
    table.iloc[5, 3] = -3.0
    table.to_csv(tmp_path / "negative.tsv", sep="\t", float_format="%.2f")
    datasets.write_h5ad_sample(plate, tmp_path / "rsem.h5ad")
    rows = [
        (_ref(good), ""),
        (_row("rsem_plate", tmp_path / "rsem.tsv"), "plate"),
        (_row("rsem_droplet", tmp_path / "rsem.tsv"), "droplet"),
        (_row("rsem_h5ad", tmp_path / "rsem.h5ad"), "plate"),
        (_row("negative_plate", tmp_path / "negative.tsv"), "plate"),
    ]
    cfg = _config(tmp_path, [])
    Path(cfg["samples"]).write_text(
        HEADER.rstrip("\n") + "\ttechnology\n" + "".join(f"{r}\t{t}\n" for r, t in rows)
    )
    result = validate_run(cfg, base_dir=REPO)
    assert not any("'rsem_plate'" in p for p in result.problems), result.problems
    assert result.samples.set_index("sample").loc["rsem_plate", "technology"] == "plate"
    _problem(result, "'rsem_droplet'", "non-integer values", fix="technology to plate")
    _problem(result, "'rsem_h5ad'", "no raw counts found", "non-integer", fix="raw UMI counts")
    _problem(result, "'negative_plate'", "negative values", fix="raw UMI counts")
    assert len(result.problems) == 3, result.problems


def test_normalised_h5ad_without_a_counts_slot(tmp_path, demo_small, good):
    import scanpy as sc

    a = demo_small["engineered_7TF"].copy()
    sc.pp.normalize_total(a)
    sc.pp.log1p(a)
    a.obs = a.obs[[]]
    path = tmp_path / "norm.h5ad"
    a.write_h5ad(path)
    result = _validate(tmp_path, [_ref(good), _row("norm", path)])
    _problem(result, "'norm'", "no raw counts found", "non-integer", fix="raw UMI counts")


def test_duplicated_barcodes(tmp_path, good):
    folder = _mtx_copy(good, tmp_path)
    _rewrite_gz(folder / "barcodes.tsv.gz", lambda t: t.replace(t.splitlines()[1], t.splitlines()[0], 1))
    result = _validate(tmp_path, [_ref(good), _row("dups", folder)])
    _problem(result, "'dups'", "1 duplicated cell barcodes", fix="its own row in the sample sheet")


def test_too_few_cells_before_qc(tmp_path, good):
    path = _table(tmp_path, good, "few.tsv", lambda lines: [lines[0], *lines[1:]])
    df = pd.read_csv(path, sep="\t", index_col=0).iloc[:, :5]
    df.to_csv(path, sep="\t")
    result = _validate(tmp_path, [_ref(good), _row("tiny", path)])
    _problem(result, "'tiny'", "only 5 cells", fix="drop the sample")


def test_too_few_cells_after_qc_is_refused_by_qc(demo_small):
    """Cells lost in QC are only known after QC: the QC step refuses, naming the sample and the fix."""
    from hscseq import HscseqInputError
    from hscseq.qc import adaptive_thresholds, filter_cells, qc_metrics

    a = demo_small["engineered_7TF"].copy()
    qc_metrics(a, species="mouse")
    adaptive_thresholds(a, min_counts=float(a.obs["total_counts"].quantile(0.9)))
    with pytest.raises(HscseqInputError) as err:
        filter_cells(a, sample="eng_x", remove_doublets=False)
    msg = str(err.value)
    assert "sample 'eng_x'" in msg and "more than the allowed 50%" in msg
    assert "qc.per_sample.eng_x" in msg.split("What to do:")[1]


# --------------------------------------------------------------------------------------------------------
# the sample sheet


def test_comma_separated_sheet(tmp_path, good):
    cfg = _config(tmp_path, [])
    Path(cfg["samples"]).write_text(
        f"sample,path,species,condition,batch\nx,{good['h5']},mouse,engineered,b\n"
    )
    result = validate_run(cfg, base_dir=REPO)
    _problem(result, cfg["samples"], "comma-separated", fix="tabs, not commas")


def test_missing_required_column(tmp_path, good):
    cfg = _config(tmp_path, [])
    Path(cfg["samples"]).write_text(f"sample\tpath\tspecies\tcondition\nx\t{good['h5']}\tmouse\tengineered\n")
    _problem(validate_run(cfg, base_dir=REPO), "lacks the column(s) ['batch']", fix="give the columns")


def test_a_misnamed_column_is_reported_once_with_a_hint(tmp_path, good):
    """A user wrote ``labels`` for ``label_column``: one line (not one more per row from the row schema),
    with the column meant."""
    cfg = _config(tmp_path, [])
    Path(cfg["samples"]).write_text(
        "sample\tpath\tspecies\tcondition\tbatch\tlabels\n"
        f"ref\t{good['h5ad']}\tmouse\tin_vivo\tb1\ttrue_cell_type\n"
        f"e\t{good['h5']}\tmouse\tengineered\tb2\t\n"
    )
    result = validate_run(cfg, base_dir=REPO)
    _problem(result, "unknown column(s) ['labels']", "(did you mean 'label_column'?)", fix="use only")
    assert sum("labels" in p for p in result.problems) == 1, result.problems


def test_duplicated_sample_names_and_every_problem_at_once(tmp_path, good):
    rows = [
        _ref(good),
        _row("twice", good["h5"]),
        _row("twice", good["mtx"]),
        _row("gone", "/no/such/file.h5"),
    ]
    result = _validate(tmp_path, rows)
    _problem(result, "['twice'] appear more than once", fix="unique name")
    _problem(result, "'gone'", "/no/such/file.h5", "does not exist", fix="'path' column")


@pytest.mark.parametrize(
    ("column", "value", "hint"),
    [("species", "mose", "did you mean 'mouse'"), ("condition", "invivo", "did you mean 'in_vivo'")],
)
def test_species_and_condition_typos(tmp_path, good, column, value, hint):
    kwargs = {column: value}
    result = _validate(tmp_path, [_ref(good), _row("typo", good["h5"], **kwargs)])
    _problem(result, "'typo'", f"column '{column}'", hint, fix="correct the sample sheet")


def test_declared_species_contradicts_the_gene_names(tmp_path, good):
    result = _validate(tmp_path, [_ref(good), _row("wrongsp", good["h5"], species="human")])
    _problem(result, "'wrongsp'", "declares species 'human' but the gene names are mouse", fix="'mouse'")


def test_label_column_on_a_query_sample(tmp_path, good):
    result = _validate(tmp_path, [_ref(good), _row("eng", good["h5"], label="true_cell_type")])
    _problem(result, "'eng'", "label_column is only used for in vivo", fix="leave label_column empty")


def test_label_column_absent_from_the_file(tmp_path, good):
    row = _row("ref2", good["h5ad"], condition="in_vivo", label="celltype")
    result = _validate(tmp_path, [row, _row("eng", good["h5"])])
    _problem(result, "'ref2'", "'celltype' is not an obs column", "true_cell_type", fix="label_column")


def test_single_class_label_column(tmp_path, demo_small, good):
    a = demo_small["invivo_donor1"]
    one = a[a.obs["true_cell_type"] == a.obs["true_cell_type"].iloc[0]].copy()
    path = tmp_path / "one_type.h5ad"
    datasets.write_h5ad_sample(one, path, keep_obs=["true_cell_type"])
    row = _row("ref_one", path, condition="in_vivo", label="true_cell_type")
    result = _validate(tmp_path, [row, _row("eng", good["h5"])])
    _problem(result, "['ref_one']", "single class", fix="at least two")


def test_mouse_run_without_any_labelled_reference(tmp_path, good):
    result = _validate(tmp_path, [_row("ref", good["h5ad"], condition="in_vivo"), _row("eng", good["h5"])])
    _problem(result, "'fidelity.reference'", "human only", fix="label_column")


def test_sample_name_that_would_escape_the_results_folder(tmp_path, good):
    result = _validate(tmp_path, [_ref(good), _row("../../etc", good["h5"])])
    _problem(result, "'../../etc'", "column 'sample'", "does not match", fix="correct the sample sheet")


def test_unknown_forced_format(tmp_path, good):
    result = _validate(tmp_path, [_ref(good), _row("xl", good["h5"], fmt="xlsx")])
    _problem(result, "'xl'", "column 'format'", "'xlsx' is not one of", fix="correct the sample sheet")


# --------------------------------------------------------------------------------------------------------
# the config and the files it names


def test_config_strings_are_typed_as_the_schema_says():
    from hscseq.validate import coerce_config_strings, load_schema

    schema = load_schema("config.schema.yaml")
    cfg = {
        "fidelity": {"n_bootstrap": "500", "negative_control_type": "B"},
        "cluster": {"resolutions": ["1"]},
    }
    cfg["score"] = {"min_coverage": "0.3", "method": "control"}
    typed = coerce_config_strings(cfg, schema)
    assert typed["fidelity"] == {"n_bootstrap": 500, "negative_control_type": "B"}  # a string stays one
    assert typed["score"] == {"min_coverage": 0.3, "method": "control"}
    assert typed["cluster"]["resolutions"] == [1.0]
    assert (
        coerce_config_strings({"fidelity": {"n_bootstrap": "many"}}, schema)["fidelity"]["n_bootstrap"]
        == "many"
    )
    assert cfg["fidelity"]["n_bootstrap"] == "500"  # the caller's config is left alone


def test_unknown_and_mistyped_config_keys(tmp_path, good):
    result = _validate(
        tmp_path, [_ref(good), _row("e", good["h5"])], qc={"n_madz": 3, "mito_max_pct": "twenty"}
    )
    _problem(result, "'qc'", "'n_madz' was unexpected", "did you mean 'n_mads'", fix="config.schema.yaml")
    _problem(result, "'qc.mito_max_pct'", "'twenty' is not of type 'number'", fix="config.schema.yaml")


def test_config_and_input_problems_are_reported_together(tmp_path, good):
    rows = [_ref(good), _row("e", good["h5"], species="human")]
    result = _validate(tmp_path, rows, qc={"n_madz": 3}, score={"min_coverage": 2})
    _problem(result, "'qc'", "'n_madz' was unexpected", fix="config.schema.yaml")
    _problem(result, "'score.min_coverage'", "greater than the maximum", fix="config.schema.yaml")
    _problem(result, "sample 'e'", "declares species 'human'", fix="'mouse'")


def test_per_sample_override_of_an_unknown_sample(tmp_path, good):
    result = _validate(
        tmp_path, [_ref(good), _row("e", good["h5"])], qc={"per_sample": {"e2": {"n_mads": 3}}}
    )
    _problem(result, "'qc.per_sample.e2'", "names no sample", fix="['e', 'ref1']")


def _sig(tmp_path, name, text) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_missing_user_signature_file(tmp_path, good):
    result = _validate(
        tmp_path, [_ref(good), _row("e", good["h5"])], score={"user_signatures": ["/no/sig.gmt"]}
    )
    _problem(
        result,
        "'score.user_signatures[0]'",
        "/no/sig.gmt",
        "does not exist",
        fix="correct score.user_signatures",
    )


def test_malformed_gmt_signature(tmp_path, good):
    sig = _sig(tmp_path, "bad.gmt", "mysig\tdescription-only\n")
    result = _validate(tmp_path, [_ref(good), _row("e", good["h5"])], score={"user_signatures": [sig]})
    _problem(result, "'score.user_signatures[0]'", sig, "fewer than 3 tab-separated fields", fix="GMT lines")


def test_signature_yaml_with_a_python_tag_is_refused_not_executed(tmp_path, good):
    marker = tmp_path / "executed"
    sig = _sig(tmp_path, "evil.yaml", f"mysig: !!python/object/apply:os.system ['touch {marker}']\n")
    result = _validate(tmp_path, [_ref(good), _row("e", good["h5"])], score={"user_signatures": [sig]})
    _problem(result, "'score.user_signatures[0]'", "not valid YAML", fix="YAML syntax")
    assert not marker.exists()


def test_user_signature_with_no_measured_gene(tmp_path, good):
    sig = _sig(tmp_path, "absent.gmt", "absent_sig\td\tNotAGene1\tNotAGene2\tNotAGene3\n")
    result = _validate(tmp_path, [_ref(good), _row("e", good["h5"])], score={"user_signatures": [sig]})
    _problem(result, "'absent_sig'", "none of its genes is measured in any sample", sig, fix="species")


def test_user_signature_with_low_coverage_is_a_warning(tmp_path, good, demo_small):
    genes = list(demo_small["engineered_7TF"].var_names[:1])
    sig = _sig(
        tmp_path,
        "low.gmt",
        "low_sig\td\t" + "\t".join([*genes, "NotAGene1", "NotAGene2", "NotAGene3"]) + "\n",
    )
    result = _validate(tmp_path, [_ref(good), _row("e", good["h5"])], score={"user_signatures": [sig]})
    assert result.ok, result.problems
    assert any("'low_sig'" in w and "25%" in w and "NaN" in w for w in result.warnings), result.warnings


def test_unknown_hsc_signature_name(tmp_path, good):
    result = _validate(tmp_path, [_ref(good), _row("e", good["h5"])], score={"hsc_signature": "hsc_nativ"})
    _problem(
        result, "'score.hsc_signature'", "['hsc_nativ']", "did you mean 'hsc_native'", fix="choose among"
    )


def test_hsc_signature_not_scorable_on_a_gene_panel_is_refused_before_the_run(tmp_path, good):
    """paul15 ships 3,451 genes: 6 of the 19 mouse HSC genes, below the default min_coverage 0.5. The score
    stage would stop the run after QC and integration; the pre-run check names the sample, the file and the
    way out. (The test overlay sets 0.3.)"""
    rows = [_ref(good), _row("paul15", DATA / "paul15.h5ad", condition="in_vivo", label="cell_type")]
    result = _validate(tmp_path, rows, score={"min_coverage": 0.5})
    line = _problem(
        result,
        "sample 'paul15'",
        "paul15.h5ad",
        "'hsc_native' (mouse, 19 genes) has only 6 (32%)",
        fix="lower score.min_coverage",
    )
    assert "Procr" in line  # a missing gene is named
    assert not any("'ref1'" in p for p in result.problems)  # the simulator's full gene list: fine
    assert _validate(tmp_path, rows, score={"min_coverage": 0.3}).ok


def test_signature_genes_given_as_ensembl_ids_count_as_measured(tmp_path, demo_small):
    """Ingest looks Ensembl IDs up; the pre-run coverage checks (HSC and user signatures) read them the same
    way."""
    from hscseq import genes

    adata = demo_small["engineered_7TF"].copy()
    ids = genes.symbols_to_ensembl(list(adata.var_names), "mouse")
    keep = [i for i, e in enumerate(ids) if e]
    adata = adata[:, keep].copy()
    adata.var_names = [ids[i] for i in keep]
    path = tmp_path / "ids.h5ad"
    datasets.write_h5ad_sample(adata, path)
    default = {"min_coverage": 0.5}
    problems = _validate(tmp_path, [_row("ids", path)], score=default).problems
    assert not any("HSC signature" in p for p in problems), problems
    measured = genes.ensembl_to_symbols(list(adata.var_names[:4]), "mouse")
    sig = _sig(tmp_path, "mine.gmt", "mine\td\t" + "\t".join(measured) + "\n")  # symbols; the file has IDs
    result = _validate(tmp_path, [_row("ids", path)], score={**default, "user_signatures": [sig]})
    assert not any("'mine'" in p for p in result.problems), result.problems
    assert not any("'mine'" in w for w in result.warnings), result.warnings
    hsc = set(score.load_signatures(species="mouse")["hsc_native"].up)
    adata = adata[:, [g not in hsc for g in genes.ensembl_to_symbols(adata.var_names, "mouse")]].copy()
    datasets.write_h5ad_sample(adata, tmp_path / "no_hsc.h5ad")  # the same IDs without the HSC genes
    problems = _validate(tmp_path, [_row("n", tmp_path / "no_hsc.h5ad")], score=default).problems
    assert any("'hsc_native'" in p and "has only 0 (0%)" in p for p in problems), problems


def test_a_single_labelled_in_vivo_donor_is_warned_about(tmp_path, good):
    """With one labelled in vivo donor the positive control can only hold out part of it: said beforehand."""
    one = _validate(tmp_path, [_ref(good), _row("e", good["h5"])])
    assert any("one labelled in vivo donor (['ref1'])" in w for w in one.warnings), one.warnings
    ref2 = _row("ref2", good["h5ad2"], condition="in_vivo", label="true_cell_type")
    two = _validate(tmp_path, [_ref(good), ref2, _row("e", good["h5"])])
    assert not any("one labelled in vivo donor" in w for w in two.warnings), two.warnings


def test_reference_h5ad_missing_and_label_key_absent(tmp_path, good):
    rows = [_row("ref", good["h5ad"], condition="in_vivo"), _row("e", good["h5"])]
    result = _validate(tmp_path, rows, fidelity={"reference": str(tmp_path / "nope.h5ad")})
    _problem(result, "'fidelity.reference'", "nope.h5ad", "does not exist", fix="correct fidelity.reference")
    result = _validate(
        tmp_path, rows, fidelity={"reference": str(good["h5ad2"]), "reference_label_key": "ct"}
    )
    _problem(result, "'fidelity.reference_label_key'", "'ct' is not an obs column", fix="['true_cell_type']")
    ok = _validate(
        tmp_path, rows, fidelity={"reference": str(good["h5ad2"]), "reference_label_key": "true_cell_type"}
    )
    assert ok.ok, ok.problems


def test_config_file_with_python_tags_or_templating_is_refused(tmp_path):
    marker = tmp_path / "executed"
    evil = tmp_path / "evil.yaml"
    evil.write_text(f"qc:\n  n_mads: !!python/object/apply:os.system ['touch {marker}']\n")
    (line,) = check_config_file(evil)
    assert str(evil) in line and "Python tag" in line and "What to do" in line
    templ = tmp_path / "yte.yaml"
    templ.write_text("__use_yte__: true\nqc:\n  n_mads: ?3+2\n")
    (line,) = check_config_file(templ)
    assert "__use_yte__" in line and str(templ) in line
    assert not marker.exists()
    assert check_config_file(REPO / "config/config.yaml") == []


def test_python_object_in_a_config_dict_is_refused(tmp_path, good):
    cfg = _config(tmp_path, [_ref(good), _row("e", good["h5"])])
    cfg["report"]["title"] = os.system
    result = validate_run(cfg, base_dir=REPO)
    _problem(result, "'report.title'", "not plain data", fix="never evaluated")


@pytest.mark.parametrize(
    ("text", "what"),
    [
        ("child\tparent\nLT-HSC\tHSC\nHSC\tLT-HSC\n", "cycle"),
        ("LT-HSC\tHSC\tstem\n", "3 tab-separated fields"),
        ("LT-HSC\tHSC\nLT-HSC\tMPP\n", "two parents"),
    ],
)
def test_label_hierarchy_file_is_parsed(tmp_path, text, what):
    """A config key naming a hierarchy TSV (the mapping stage's) is parsed: malformed or cyclic is refused."""
    from hscseq.validate._config import check_hierarchy

    path = tmp_path / "hierarchy.tsv"
    path.write_text(text)
    (line,) = check_hierarchy({"fidelity": {"label_hierarchy": str(path)}}, REPO, [])
    assert "'fidelity.label_hierarchy'" in line and str(path) in line and what in line
    assert "child<TAB>parent" in line.split("What to do:")[1]
    path.write_text("child\tparent\nLT-HSC\tHSC\nHSC\tHSPC\n")
    assert check_hierarchy({"fidelity": {"label_hierarchy": str(path)}}, REPO, []) == []
