"""Provenance record (hscseq.provenance): what made the results, checksums that match, no timestamps."""

from __future__ import annotations

import hashlib
import json
import re
from importlib.metadata import version

import anndata as ad
import pandas as pd
import pytest
import yaml

from hscseq import _utils, datasets, provenance
from hscseq.ingest import run_ingest

from .conftest import REPO


@pytest.fixture(scope="module")
def ingested(tmp_path_factory, demo_small):
    d = tmp_path_factory.mktemp("prov")
    h5 = d / "eng.h5"
    datasets.write_10x_h5(demo_small["engineered_7TF"], h5)
    mtx = d / "eng_mtx"
    datasets.write_10x_mtx(demo_small["engineered_7TF"], mtx)
    out = []
    for name, path in (("eng_h5", h5), ("eng_mtx", mtx)):
        target = d / "ingest" / f"{name}.h5ad"
        row = {"sample": name, "species": "mouse", "condition": "engineered", "batch": name}
        run_ingest(counts=str(path), h5ad=str(target), sample=row, settings={})
        out.append(target)
    return {"h5": h5, "mtx": mtx, "ingested": out, "dir": d}


def _config():
    return yaml.safe_load((REPO / "config/config.yaml").read_text())


def test_record_holds_versions_config_hash_and_input_checksums(ingested, tmp_path):
    sig = tmp_path / "mine.gmt"
    sig.write_text("my_sig\td\tGata2\tMeis1\n")
    cfg = _config()
    cfg["score"]["user_signatures"] = [str(sig)]
    record = provenance.collect(cfg, ingested=ingested["ingested"], base_dir=REPO)
    assert record["packages"]["scanpy"] == version("scanpy")
    assert record["packages"]["scvi-tools"] == version("scvi-tools")
    assert record["hscseq_version"] == version("hscseq")
    h5_sha = hashlib.sha256(ingested["h5"].read_bytes()).hexdigest()
    assert record["inputs"]["eng_h5"]["sha256"] == h5_sha
    assert record["inputs"]["eng_h5"]["source"] == str(ingested["h5"].resolve())
    mtx_files = record["inputs"]["eng_mtx"]["files"]
    assert (
        mtx_files["matrix.mtx.gz"]
        == hashlib.sha256((ingested["mtx"] / "matrix.mtx.gz").read_bytes()).hexdigest()
    )
    assert set(mtx_files) == {"matrix.mtx.gz", "barcodes.tsv.gz", "features.tsv.gz"}
    assert (
        record["config_files"]["score.user_signatures[0]"]["sha256"]
        == hashlib.sha256(sig.read_bytes()).hexdigest()
    )
    text = json.dumps(record)
    assert not re.search(r"\d{4}-\d{2}-\d{2}|\d{2}:\d{2}:\d{2}", text), "no timestamps in the record"


def test_config_hash_follows_values_not_key_order():
    cfg = _config()
    reordered = dict(reversed(list(cfg.items())))
    assert provenance.config_hash(cfg) == provenance.config_hash(reordered)
    changed = _config()
    changed["qc"]["n_mads"] = 4
    assert provenance.config_hash(changed) != provenance.config_hash(cfg)


def test_same_inputs_same_record_and_methods_lines(ingested):
    a = provenance.collect(_config(), ingested=ingested["ingested"], base_dir=REPO)
    b = provenance.collect(_config(), ingested=ingested["ingested"], base_dir=REPO)
    assert a == b
    lines = provenance.methods_lines(a)
    assert any(a["config_sha256"] in line for line in lines)
    assert any("eng_h5" in line and a["inputs"]["eng_h5"]["sha256"] in line for line in lines)
    assert lines[0].startswith(f"hscseq {a['hscseq_version']}") and f"scanpy {version('scanpy')}" in lines[0]


def test_write_h5ad_stores_the_record_of_the_running_job(ingested, tmp_path, toy):
    record = provenance.collect(_config(), ingested=ingested["ingested"], base_dir=REPO)
    path = tmp_path / "prov.json"
    provenance.write(record, path)
    assert provenance.load(path) == record
    _utils.set_provenance(provenance.as_uns(record))
    try:
        _utils.write_h5ad(toy.copy(), tmp_path / "out.h5ad")
    finally:
        _utils.set_provenance(None)
    back = ad.read_h5ad(tmp_path / "out.h5ad")
    assert json.loads(back.uns["hscseq"]["provenance"]) == record
    _utils.write_h5ad(toy, tmp_path / "plain.h5ad")
    assert "provenance" not in ad.read_h5ad(tmp_path / "plain.h5ad").uns.get("hscseq", {})


def test_gzip_tables_are_byte_identical_and_readable(tmp_path):
    """Equal tables give equal files: the gzip header carries no time stamp and no (temporary) file name,
    so two runs' cells.tsv.gz compare byte for byte (README, Determinism)."""
    df = pd.DataFrame({"cell_id": ["a", "b"], "score": [0.5, float("nan")]})
    _utils.write_table(df, tmp_path / "one.tsv.gz", index=False)
    _utils.write_table(df, tmp_path / "two.tsv.gz", index=False)
    assert (tmp_path / "one.tsv.gz").read_bytes() == (tmp_path / "two.tsv.gz").read_bytes()
    back = pd.read_csv(tmp_path / "two.tsv.gz", sep="\t")
    pd.testing.assert_frame_equal(back, df)
