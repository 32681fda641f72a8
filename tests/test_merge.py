import anndata as ad
import numpy as np
import pytest
import scipy.sparse as sp

from hscseq import HscseqInputError
from hscseq.merge import analysis_species, merge_samples, run_merge


def _prepared(demo_small):
    out = []
    for name, adata in demo_small.items():
        a = adata.copy()
        a.obs_names = [f"{name}:{b}" for b in a.obs_names]
        if a.obs["condition"].iloc[0] == "in_vivo":
            a.obs["reference_label"] = a.obs["true_cell_type"].to_numpy()
        out.append(a)
    return out


def test_merge_maps_human_samples_onto_the_reference_species(demo_small):
    adatas = _prepared(demo_small)
    assert analysis_species(adatas) == "mouse"
    merged = merge_samples(adatas, min_shared_genes=100)
    assert merged.uns["hscseq"]["merge"]["species"] == "mouse"
    assert merged.n_obs == sum(a.n_obs for a in adatas)
    assert sp.issparse(merged.X)
    # human organoid genes came back as mouse symbols
    assert "Hlf" in merged.var_names and "HLF" not in merged.var_names
    # counts of a human sample are carried over gene by gene through the orthologs
    human = demo_small["organoid_week2"]
    cells = [f"organoid_week2:{b}" for b in human.obs_names[:20]]
    got = merged[cells, "Gata1"].X.toarray().ravel()
    want = human[:20, "GATA1"].X.toarray().ravel()
    np.testing.assert_array_equal(got, want)
    # labels only on in vivo cells
    ref = merged.obs["condition"] == "in_vivo"
    assert merged.obs.loc[ref, "reference_label"].notna().all()
    assert merged.obs.loc[~ref, "reference_label"].isna().all()


def test_merge_refuses_when_samples_share_too_few_genes(demo_small):
    adatas = _prepared(demo_small)
    adatas[2] = adatas[2][:, :50].copy()
    with pytest.raises(HscseqInputError, match=r"share only \d+ genes") as err:
        merge_samples(adatas, min_shared_genes=100)
    assert "engineered_7TF" in str(err.value)
    assert "What to do" in str(err.value)


def test_run_merge_writes_h5ad(tmp_path, demo_small):
    paths = []
    for a in _prepared(demo_small)[:3]:
        p = tmp_path / f"{a.obs['sample'].iloc[0]}.h5ad"
        a.write_h5ad(p)
        paths.append(str(p))
    out = tmp_path / "merged.h5ad"
    run_merge(h5ads=paths, merged=str(out), settings={"min_shared_genes": 100})
    merged = ad.read_h5ad(out)
    assert set(merged.obs["sample"]) == {"invivo_donor1", "invivo_donor2", "engineered_7TF"}
    assert not list(tmp_path.glob(".*part"))
