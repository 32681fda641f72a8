"""Ingest: every format reads to the same AnnData; every bad input is refused with a clear message."""

from __future__ import annotations

import dataclasses
import gzip
import shutil
import tracemalloc
from pathlib import Path

import anndata as ad
import h5py
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from hscseq import datasets
from hscseq._utils import HscseqInputError
from hscseq.ingest import FORMATS, detect_format, read_sample, run_ingest

SAMPLE = "s1"


@pytest.fixture(scope="module")
def counts() -> ad.AnnData:
    """A small simulated mouse sample (raw counts, Ensembl IDs in var['gene_ids'])."""
    spec = datasets.engineered_spec(150, sample=SAMPLE)
    adata = datasets.simulate([spec], n_genes=600, seed=3)[SAMPLE]
    return adata


# ---------------------------------------------------------------------------------------------------------
# fixture writers for formats hscseq.datasets does not write


def _write_10x_h5_v2(adata: ad.AnnData, path: Path, genome: str = "mm10") -> None:
    m = sp.csc_matrix(adata.X.T).astype(np.int32)
    with h5py.File(path, "w") as f:
        g = f.create_group(genome)
        g["barcodes"] = np.array(adata.obs_names, dtype="S")
        g["data"], g["indices"], g["indptr"] = m.data, m.indices.astype(np.int64), m.indptr.astype(np.int64)
        g["shape"] = np.array(m.shape, dtype=np.int32)
        g["genes"] = np.array(adata.var["gene_ids"], dtype="S")
        g["gene_names"] = np.array(adata.var_names, dtype="S")


def _write_10x_h5_with_antibodies(adata: ad.AnnData, path: Path, n_adt: int = 5) -> None:
    """A v3 feature-barcoding .h5: the genes plus Antibody Capture features (with their own counts)."""
    rng = np.random.default_rng(0)
    adt = sp.csr_matrix(rng.poisson(30, size=(adata.n_obs, n_adt)).astype(np.float32))
    both = ad.AnnData(
        X=sp.hstack([adata.X, adt], format="csr"),
        obs=pd.DataFrame(index=adata.obs_names),
        var=pd.DataFrame(
            {"gene_ids": [*adata.var["gene_ids"], *[f"ADT{i}" for i in range(n_adt)]]},
            index=[*adata.var_names, *[f"CD{i}_TotalSeqB" for i in range(n_adt)]],
        ),
    )
    datasets.write_10x_h5(both, path)
    with h5py.File(path, "r+") as f:
        types = ["Gene Expression"] * adata.n_vars + ["Antibody Capture"] * n_adt
        del f["matrix/features/feature_type"]
        f["matrix/features/feature_type"] = np.array(types, dtype="S")


def _write_starsolo(adata: ad.AnnData, root: Path) -> Path:
    """STAR output folder: Solo.out/Gene/filtered/{matrix.mtx, barcodes.tsv, features.tsv}, uncompressed."""
    tmp = root / "tmp_v3"
    datasets.write_10x_mtx(adata, tmp, version=3)
    target = root / "Solo.out" / "Gene" / "filtered"
    target.mkdir(parents=True)
    for name in ("matrix.mtx", "barcodes.tsv", "features.tsv"):
        (target / name).write_bytes(gzip.decompress((tmp / f"{name}.gz").read_bytes()))
    shutil.rmtree(tmp)
    return root


def _write_loom(adata: ad.AnnData, path: Path) -> None:
    """Loom 3 layout written with h5py: /matrix genes x cells, row_attrs/Gene+Accession, col_attrs/CellID."""
    with h5py.File(path, "w") as f:
        f.create_dataset("matrix", data=adata.X.T.toarray(), chunks=(64, 64), compression="gzip")
        f.create_group("layers")
        f["row_attrs/Gene"] = np.array(adata.var_names, dtype="S")
        f["row_attrs/Accession"] = np.array(adata.var["gene_ids"], dtype="S")
        f["col_attrs/CellID"] = np.array(adata.obs_names, dtype="S")
        f["col_attrs/true_cell_type"] = np.array(adata.obs["true_cell_type"], dtype="S")
        f.create_group("row_graphs")
        f.create_group("col_graphs")
        f.attrs["LOOM_SPEC_VERSION"] = "3.0.0"


def _write_h5ad_raw(adata: ad.AnnData, path: Path) -> None:
    """Counts only in .raw; X log-normalised on a gene subset (as after a typical scanpy session)."""
    out = ad.AnnData(
        X=adata.X.copy(), obs=adata.obs[["true_cell_type"]].copy(), var=adata.var[["gene_ids"]].copy()
    )
    out.raw = out.copy()
    out = out[:, : adata.n_vars // 2].copy()
    out.X = out.X.log1p()
    out.write_h5ad(path)


def _write_cells_x_genes_csv(adata: ad.AnnData, path: Path) -> None:
    pd.DataFrame(adata.X.toarray().astype(int), index=adata.obs_names, columns=adata.var_names).to_csv(path)


def _all_formats(adata: ad.AnnData, d: Path) -> dict[str, tuple[Path, str]]:
    """Write ``adata`` in every supported layout; name -> (path, expected detected format)."""
    out = {}
    datasets.write_10x_h5(adata, d / "v3.h5")
    out["10x_h5_v3"] = (d / "v3.h5", "10x_h5")
    _write_10x_h5_v2(adata, d / "v2.h5")
    out["10x_h5_v2"] = (d / "v2.h5", "10x_h5")
    _write_10x_h5_with_antibodies(adata, d / "fb.h5")
    out["10x_h5_feature_barcoding"] = (d / "fb.h5", "10x_h5")
    datasets.write_10x_mtx(adata, d / "mtx_v3", version=3)
    out["mtx_v3_gz"] = (d / "mtx_v3", "10x_mtx")
    datasets.write_10x_mtx(adata, d / "mtx_v2", version=2)
    out["mtx_v2_plain"] = (d / "mtx_v2", "10x_mtx")
    datasets.write_10x_mtx(adata, d / "cellranger" / "outs" / "filtered_feature_bc_matrix", version=3)
    out["cellranger_outs_folder"] = (d / "cellranger", "10x_mtx")
    datasets.write_10x_mtx(adata, d / "cr2" / "outs" / "filtered_gene_bc_matrices" / "mm10", version=2)
    out["cellranger_v2_outs_folder"] = (d / "cr2", "10x_mtx")
    out["starsolo"] = (_write_starsolo(adata, d / "star"), "starsolo")
    datasets.write_h5ad_sample(adata, d / "x.h5ad")
    out["h5ad_X"] = (d / "x.h5ad", "h5ad")
    datasets.write_h5ad_sample(adata, d / "layer.h5ad", counts_in="layers")
    out["h5ad_layers_counts"] = (d / "layer.h5ad", "h5ad")
    _write_h5ad_raw(adata, d / "raw.h5ad")
    out["h5ad_raw"] = (d / "raw.h5ad", "h5ad")
    _write_loom(adata, d / "x.loom")
    out["loom"] = (d / "x.loom", "loom")
    _write_cells_x_genes_csv(adata, d / "cells.csv")
    out["csv_cells_x_genes"] = (d / "cells.csv", "csv")
    datasets.write_dense_table(adata, d / "genes.tsv.gz")
    out["tsv_gz_genes_x_cells"] = (d / "genes.tsv.gz", "tsv")
    return out


# ---------------------------------------------------------------------------------------------------------
# every format -> the same AnnData


def test_every_format_reads_to_identical_anndata(counts, tmp_path):
    written = _all_formats(counts, tmp_path)
    expected_X = counts.X.toarray()
    reference = None
    for name, (path, fmt) in written.items():
        assert detect_format(path) == fmt, name
        adata = read_sample(path, sample=SAMPLE, species="mouse")
        assert sp.issparse(adata.X), name
        assert (adata.X.format, adata.X.dtype) == ("csr", np.float32), name
        # same counts, same cells, same genes, same identifiers as what was simulated
        np.testing.assert_array_equal(adata.X.toarray(), expected_X, err_msg=name)
        assert list(adata.obs_names) == [f"{SAMPLE}:{b}" for b in counts.obs_names], name
        assert list(adata.var_names) == list(counts.var_names), name
        assert list(adata.var["gene_id"]) == list(counts.var["gene_ids"]), name
        prov = adata.uns["hscseq"]["ingest"]
        assert (prov["format"], len(prov["sha256"]), prov["n_cells"]) == (fmt, 64, counts.n_obs), name
        if reference is None:
            reference = adata
        else:
            assert adata.var.equals(reference.var), name
    # where the counts came from is recorded
    src = {
        n: read_sample(p, sample=SAMPLE, species="mouse").uns["hscseq"]["ingest"]["counts_source"]
        for n, (p, _) in written.items()
        if n.startswith("h5ad")
    }
    assert src == {"h5ad_X": "X", "h5ad_layers_counts": "layers['counts']", "h5ad_raw": ".raw"}


def test_feature_barcoding_sets_antibodies_aside(counts, tmp_path, caplog):
    _write_10x_h5_with_antibodies(counts, tmp_path / "fb.h5", n_adt=5)
    with caplog.at_level("INFO", logger="hscseq.ingest"):
        adata = read_sample(tmp_path / "fb.h5", sample=SAMPLE, species="mouse")
    assert not any(v.endswith("_TotalSeqB") for v in adata.var_names)
    assert adata.uns["hscseq"]["ingest"]["set_aside_features"] == {"Antibody Capture": 5}
    assert "set aside 5 non-gene-expression features" in caplog.text


def test_forced_format_and_declared_orientation(counts, tmp_path):
    path = tmp_path / "counts.txt"
    pd.DataFrame(counts.X.toarray().astype(int), index=counts.obs_names, columns=counts.var_names).to_csv(
        path, sep="\t"
    )
    adata = read_sample(path, sample=SAMPLE, species="mouse", fmt="tsv", table_orientation="cells_x_genes")
    np.testing.assert_array_equal(adata.X.toarray(), counts.X.toarray())
    # declaring the wrong orientation makes barcodes into genes: refused as unknown gene names
    with pytest.raises(HscseqInputError, match="known mouse"):
        read_sample(path, sample=SAMPLE, species="mouse", fmt="tsv", table_orientation="genes_x_cells")


def test_demo_samples_read_with_labels(repo):
    sheet = pd.read_csv(repo / "config" / "samples.tsv", sep="\t", dtype=str, keep_default_na=False)
    truth = pd.read_csv(repo / "resources" / "demo" / "truth.tsv.gz", sep="\t")
    for row in sheet.itertuples():
        adata = read_sample(
            repo / "config" / row.path,
            sample=row.sample,
            species=row.species,
            label_column=row.label_column or None,
        )
        t = truth[truth["sample"] == row.sample].set_index("barcode")
        assert adata.n_obs == len(t)
        assert set(adata.obs_names.str.split(":").str[1]) == set(t.index)
        assert adata.uns["hscseq"]["ingest"]["known_gene_fraction"][row.species] > 0.95
        if row.label_column:
            barcodes = adata.obs_names.str.split(":").str[1]
            assert list(adata.obs["reference_label"].astype(str)) == list(t.loc[barcodes, "true_cell_type"])
    donor2 = read_sample(
        repo / "resources/demo/invivo_donor2_counts_layer.h5ad", sample="d2", species="mouse"
    )
    assert donor2.uns["hscseq"]["ingest"]["counts_source"] == "layers['counts']"


def test_run_ingest_writes_contract(counts, tmp_path):
    datasets.write_10x_h5(counts, tmp_path / "in.h5")
    row = {
        "sample": SAMPLE,
        "path": str(tmp_path / "in.h5"),
        "species": "mouse",
        "condition": "engineered",
        "batch": "b1",
        "format": "",
        "timepoint": "",
        "donor": "",
        "label_column": "",
    }
    out = tmp_path / "results" / "s1.h5ad"
    run_ingest(counts=row["path"], h5ad=str(out), sample=row, settings={"min_known_gene_fraction": 0.5})
    adata = ad.read_h5ad(out)
    for col in ("sample", "species", "condition", "batch", "timepoint", "donor", "technology"):
        assert isinstance(adata.obs[col].dtype, pd.CategoricalDtype), col
    assert set(adata.obs["condition"]) == {"engineered"}
    assert set(adata.obs["technology"]) == {"droplet"}  # the sheet's default, said per cell
    assert set(adata.obs["timepoint"]) == {""}
    assert adata.X.format == "csr"
    assert np.array_equal(adata.X.toarray(), counts.X.toarray())
    assert adata.uns["hscseq"]["ingest"]["source"] == str((tmp_path / "in.h5").resolve())
    assert list(tmp_path.joinpath("results").iterdir()) == [out]  # nothing half-written left beside it


# ---------------------------------------------------------------------------------------------------------
# gene identifiers


def test_human_aliases_ensembl_ids_and_duplicates(tmp_path):
    spec = datasets.organoid_specs(80)[0]
    human = datasets.simulate([spec], n_genes=600, seed=1)[spec.sample]
    names = list(human.var_names)
    i_cenpu = names.index("CENPU") if "CENPU" in names else None
    names[0] = "MLF1IP" if i_cenpu is None else names[0]
    if i_cenpu is not None:
        names[i_cenpu] = "MLF1IP"  # the old symbol of CENPU
    human.var_names = names
    human.var["gene_ids"] = [g + ".7" if g.startswith("ENSG") else g for g in human.var["gene_ids"]]
    datasets.write_10x_mtx(human, tmp_path / "m", version=3)
    features = tmp_path / "m" / "features.tsv.gz"
    rows = [line.split("\t") for line in gzip.decompress(features.read_bytes()).decode().splitlines()]
    rows[2][1] = rows[1][1]  # a duplicated symbol (as in Cell Ranger references)
    features.write_bytes(gzip.compress("".join("\t".join(r) + "\n" for r in rows).encode()))
    adata = read_sample(tmp_path / "m", sample="h", species="human")
    assert "MLF1IP" not in adata.var_names
    assert adata.uns["hscseq"]["ingest"]["renamed_symbols"]["MLF1IP"] == "CENPU"
    assert adata.var.loc[names[1] + "-1", "gene_symbol"] == names[1]  # second copy suffixed, first kept
    assert adata.var_names.is_unique
    assert not any("." in g for g in adata.var["gene_id"])  # Ensembl versions stripped
    # Ensembl IDs as the only gene names: symbols are looked up
    ids_only = human[:, human.var["gene_ids"].str.startswith("ENSG").to_numpy()].copy()
    ids_only.var_names = [g.split(".")[0] for g in ids_only.var["gene_ids"]]
    ids_only.var = ids_only.var.drop(columns=["gene_ids", "feature_types"])
    ids_only.write_h5ad(tmp_path / "ids.h5ad")
    by_id = read_sample(tmp_path / "ids.h5ad", sample="h", species="human")
    assert "GATA1" in by_id.var_names
    assert by_id.var.loc["GATA1", "gene_id"] == "ENSG00000102145"


# ---------------------------------------------------------------------------------------------------------
# refusals: each names the sample, the file, what is wrong and what to do


def _refused(path, match, **kwargs) -> str:
    kwargs = {"sample": "bad1", "species": "mouse", **kwargs}
    with pytest.raises(HscseqInputError, match=match) as info:
        read_sample(path, **kwargs)
    msg = str(info.value)
    assert "sample 'bad1'" in msg, msg
    assert str(Path(path).name) in msg, msg
    assert "What to do:" in msg, msg
    return msg


def test_refuses_missing_file(tmp_path):
    _refused(tmp_path / "nope.h5", "does not exist")


def test_refuses_unknown_format(tmp_path):
    (tmp_path / "x.rds").write_bytes(b"X\n\x00\x00\x00\x03")
    _refused(tmp_path / "x.rds", "unknown count-matrix format")
    (tmp_path / "empty_dir").mkdir()
    _refused(tmp_path / "empty_dir", "no matrix.mtx")
    with pytest.raises(HscseqInputError, match="unknown format 'rds'"):
        read_sample(tmp_path / "x.rds", sample="bad1", species="mouse", fmt="rds")


def test_refuses_corrupt_hdf5(counts, tmp_path):
    datasets.write_10x_h5(counts, tmp_path / "ok.h5")
    data = (tmp_path / "ok.h5").read_bytes()
    (tmp_path / "trunc.h5").write_bytes(data[: len(data) // 2])
    _refused(tmp_path / "trunc.h5", "corrupt or truncated")
    (tmp_path / "garbage.h5").write_bytes(b"not an hdf5 file at all")
    _refused(tmp_path / "garbage.h5", "not a valid HDF5")


def test_refuses_truncated_gzip(counts, tmp_path):
    datasets.write_dense_table(counts, tmp_path / "t.tsv.gz")
    data = (tmp_path / "t.tsv.gz").read_bytes()
    (tmp_path / "t.tsv.gz").write_bytes(data[: int(len(data) * 0.6)])
    _refused(tmp_path / "t.tsv.gz", "corrupt or truncated")
    datasets.write_10x_mtx(counts, tmp_path / "m", version=3)
    mtx = tmp_path / "m" / "matrix.mtx.gz"
    mtx.write_bytes(mtx.read_bytes()[: mtx.stat().st_size // 2])
    _refused(tmp_path / "m", "corrupt or truncated")


def test_refuses_mtx_dimension_mismatch(counts, tmp_path):
    datasets.write_10x_mtx(counts, tmp_path / "m", version=2)
    barcodes = (tmp_path / "m" / "barcodes.tsv").read_text().splitlines()
    (tmp_path / "m" / "barcodes.tsv").write_text("\n".join(barcodes[:-1]) + "\n")
    msg = _refused(tmp_path / "m", "matrix.mtx is 600 features x 150 cells")
    assert f"lists {len(barcodes) - 1} barcodes" in msg


def test_refuses_empty_matrix(counts, tmp_path):
    datasets.write_h5ad_sample(counts[:0].copy(), tmp_path / "zero_cells.h5ad")
    _refused(tmp_path / "zero_cells.h5ad", "empty")
    zeros = counts.copy()
    zeros.X = sp.csr_matrix(zeros.shape, dtype=np.float32)
    datasets.write_10x_h5(zeros, tmp_path / "zeros.h5")
    _refused(tmp_path / "zeros.h5", "empty")


def test_refuses_log_normalised_counts_and_points_to_counts(counts, tmp_path):
    datasets.write_h5ad_sample(counts, tmp_path / "layer.h5ad", counts_in="layers")
    msg = _refused(tmp_path / "layer.h5ad", "X holds non-integer values", counts_layer="X")
    assert "layers['counts'] hold(s) raw integer counts" in msg
    lognorm = ad.read_h5ad(tmp_path / "layer.h5ad")
    del lognorm.layers["counts"]
    lognorm.write_h5ad(tmp_path / "log_only.h5ad")
    msg = _refused(tmp_path / "log_only.h5ad", "no raw counts found")
    assert "normalised" in msg
    assert "layers['counts']" in msg


def test_refuses_negative_and_nan(counts, tmp_path):
    neg = counts.copy()
    neg.X = neg.X.copy()
    neg.X.data[0] = -3
    datasets.write_10x_h5(neg, tmp_path / "neg.h5")
    _refused(tmp_path / "neg.h5", "negative values")
    table = pd.DataFrame(counts.X.toarray(), index=counts.obs_names, columns=counts.var_names)
    table.iloc[4, 7] = np.nan
    table.to_csv(tmp_path / "nan.csv")
    _refused(tmp_path / "nan.csv", "NaN")


def test_refuses_duplicated_barcodes(counts, tmp_path):
    dup = counts.copy()
    dup.obs_names = [*dup.obs_names[:-1], dup.obs_names[0]]
    datasets.write_10x_mtx(dup, tmp_path / "m", version=3)
    msg = _refused(tmp_path / "m", "1 duplicated cell barcodes")
    assert dup.obs_names[0] in msg


def test_refuses_contradicted_species(counts, tmp_path):
    datasets.write_10x_h5(counts, tmp_path / "mouse.h5")
    msg = _refused(
        tmp_path / "mouse.h5", "declares species 'human' but the gene names are mouse", species="human"
    )
    assert "set species to 'mouse'" in msg


def test_refuses_missing_label_column(counts, tmp_path):
    datasets.write_h5ad_sample(counts, tmp_path / "x.h5ad", keep_obs=["true_cell_type"])
    _refused(tmp_path / "x.h5ad", "label_column 'celltype' is not an obs column", label_column="celltype")


def test_format_names_match_sample_sheet_schema(repo):
    import yaml

    schema = yaml.safe_load((repo / "workflow" / "schemas" / "samples.schema.yaml").read_text())
    assert set(schema["properties"]["format"]["enum"]) - {"", "auto"} == set(FORMATS)


# ---------------------------------------------------------------------------------------------------------
# real data and memory


def test_paul15_real_data(repo):
    path = repo / "tests" / "data" / "paul15.h5ad"
    adata = read_sample(path, sample="paul15", species="mouse", label_column="cell_type")
    assert adata.shape == (2730, 3451)
    assert adata.uns["hscseq"]["ingest"]["counts_source"] == "X"
    # 2015-era MGI symbols: most are current 10x mm10 symbols, a minority (old RIKEN names) is not
    assert 0.8 < adata.uns["hscseq"]["ingest"]["known_gene_fraction"]["mouse"] < 0.99
    assert adata.uns["hscseq"]["ingest"]["known_gene_fraction"]["human"] < 0.05
    assert {"Ery", "MEP", "GMP", "Mo", "Neu"} <= set(adata.obs["reference_label"].cat.categories)
    src = ad.read_h5ad(path)
    np.testing.assert_array_equal(adata.X.sum(axis=1).A1, np.asarray(src.X.sum(axis=1)).ravel())
    assert adata.var.loc["Gata1", "gene_id"] == "ENSMUSG00000031162"
    msg = _refused(path, "declares species 'human'", species="human")
    assert "paul15.h5ad" in msg


@pytest.mark.parametrize("writer", ["10x_h5", "10x_mtx"])
def test_peak_memory_stays_near_the_sparse_matrix(writer, tmp_path):
    spec = dataclasses.replace(datasets.reference_specs(1500, n_donors=1)[0], median_umis=1500)
    big = datasets.simulate([spec], n_genes=6000, seed=5)[spec.sample]
    if writer == "10x_h5":
        datasets.write_10x_h5(big, tmp_path / "x.h5")
        path = tmp_path / "x.h5"
    else:
        datasets.write_10x_mtx(big, tmp_path / "m", version=3)
        path = tmp_path / "m"
    read_sample(path, sample="m", species="mouse")  # warm caches (gene tables)
    tracemalloc.start()
    adata = read_sample(path, sample="m", species="mouse")
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    final = adata.X.data.nbytes + adata.X.indices.nbytes + adata.X.indptr.nbytes
    dense = adata.n_obs * adata.n_vars * 4
    assert 3 * final < dense  # sparse enough that densifying would break the bound below
    # peak: the final CSR + the MTX cell-index array + parser blocks; never a dense or COO float64 copy
    assert peak < 3 * final, (peak / final, final)


# ---------------------------------------------------------------------------------------------------------
# plate-based data (issue #13)


def test_plate_expected_counts_spike_ins_and_mixed_ids(tmp_path):
    """RSEM/Salmon-style table: 60 cells x 25k genes, Ensembl IDs mixed with symbols, ERCC, fractional."""
    plate = datasets.plate_sample(60, n_genes=25_000, seed=0)
    table = pd.DataFrame(plate.X.toarray().T, index=plate.var_names, columns=plate.obs_names)
    path = tmp_path / "plate_expected_counts.tsv"
    table.to_csv(path, sep="\t", float_format="%.3f")
    # droplet (UMI) data must be integers: the fractional values are refused with the way out
    with pytest.raises(HscseqInputError, match="non-integer"):
        read_sample(path, sample="plate", species="mouse")
    adata = read_sample(path, sample="plate", species="mouse", technology="plate")
    info = adata.uns["hscseq"]["ingest"]
    assert info["technology"] == "plate"
    assert info["set_aside_spike_ins"] == 92
    assert not adata.var_names.str.upper().str.startswith("ERCC-").any()
    ercc = table.loc[table.index.str.startswith("ERCC-")].sum(axis=0).to_numpy()
    assert np.allclose(adata.obs["spike_in_counts"].to_numpy(), ercc, rtol=1e-4)
    # counts rounded to the nearest integer: totals stay within rounding of the expected counts
    assert np.all(adata.X.data == np.round(adata.X.data))
    genes = table.loc[~table.index.str.startswith("ERCC-")].round(3)
    diff = np.asarray(adata.X.sum(axis=1)).ravel() - genes.sum(axis=0).to_numpy()
    assert np.all(np.abs(diff) <= 0.5 * (genes > 0).sum(axis=0).to_numpy())
    # Ensembl IDs resolved to symbols: the simulated HSC genes are found by symbol whatever the input used
    assert {"Procr", "Hlf", "Mecom", "Cdh5"} <= set(adata.var_names)
    assert adata.n_vars == 25_000
    assert not adata.var_names.str.startswith("ENSMUSG").all()
    assert adata.var["gene_id"].str.startswith("ENSMUSG").mean() > 0.95
