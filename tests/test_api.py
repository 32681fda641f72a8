"""The public API follows the scanpy conventions the house style promises."""

import inspect
import re

import pytest

import hscseq
from hscseq import fidelity, pl, pp, tl

PLOTS = [(pl.__name__, name, getattr(pl, name)) for name in pl.__all__]
#: every public function that takes an AnnData: the namespaces and the stage packages' public API
PUBLIC = [(ns.__name__, name, getattr(ns, name)) for ns in (pp, tl) for name in ns.__all__] + PLOTS
PUBLIC += [
    (fidelity.__name__, name, getattr(fidelity, name))
    for name in fidelity.__all__
    if inspect.isfunction(getattr(fidelity, name))
    and next(iter(inspect.signature(getattr(fidelity, name)).parameters), "") == "adata"
]
#: public functions that return a table and write nothing into adata (no key_added, no copy)
RETURNS_TABLE = {"controls", "pseudobulk_de"}


@pytest.mark.parametrize(("namespace", "name", "func"), PUBLIC, ids=[f"{n}.{f}" for n, f, _ in PUBLIC])
def test_scanpy_style_signature(namespace, name, func):
    params = list(inspect.signature(func).parameters.values())
    assert params[0].name in ("adata", "adatas"), f"{namespace}.{name}: first argument must be adata"
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    assert len(positional) <= 2, f"{namespace}.{name}: options after adata must be keyword-only"
    for p in params[1:]:
        if p.kind is p.KEYWORD_ONLY:
            continue
        assert p.default is inspect.Parameter.empty, f"{namespace}.{name}: {p.name} has a default: make it *"
    if "copy" in inspect.signature(func).parameters:
        assert inspect.signature(func).parameters["copy"].default is False
    # like scanpy's normalize_total / highly_variable_genes, functions that only rewrite X or var have no key
    writes_x_or_var = ("normalize", "select_features")
    names = inspect.signature(func).parameters
    if namespace == pl.__name__ or func is getattr(pl, name.removeprefix("plot_"), None):
        assert "show" in names and "save" in names, f"{namespace}.{name}: scanpy-style show/save"
        assert "copy" not in names and "key_added" not in names, f"{namespace}.{name}: plots write nothing"
    elif params[0].name == "adata" and name not in (*writes_x_or_var, *RETURNS_TABLE):
        assert "key_added" in inspect.signature(func).parameters, f"{namespace}.{name}: no key_added"


@pytest.mark.parametrize(("namespace", "name", "func"), PUBLIC, ids=[f"{n}.{f}" for n, f, _ in PUBLIC])
def test_numpydoc_docstring_without_types(namespace, name, func):
    doc = inspect.getdoc(func) or ""
    assert "Parameters\n----------" in doc, f"{namespace}.{name}: numpydoc Parameters section"
    params = [p for p in inspect.signature(func).parameters if p not in ("copy",)]
    for p in params:
        assert re.search(rf"^{p}\b", doc, re.M), f"{namespace}.{name}: parameter {p} undocumented"
        assert not re.search(rf"^{p} : ", doc, re.M), f"{namespace}.{name}: types go in the signature only"


def test_copy_false_returns_none_and_copy_true_returns_a_new_object(demo_small):
    adata = demo_small["invivo_donor1"].copy()
    assert pp.qc_metrics(adata, species="mouse") is None
    assert "total_counts" in adata.obs
    fresh = demo_small["invivo_donor1"].copy()
    out = pp.qc_metrics(fresh, species="mouse", copy=True)
    assert out is not fresh
    assert "total_counts" in out.obs
    assert "total_counts" not in fresh.obs


def test_lazy_namespaces():
    assert hscseq.tl is tl
    assert hscseq.pl is pl
    assert callable(hscseq.read_sample)
    with pytest.raises(AttributeError):
        _ = hscseq.not_a_module


@pytest.mark.filterwarnings("ignore:.*:UserWarning")
def test_readme_notebook_flow_runs_and_means_something(demo_small, tmp_path):
    """The README's Python walk-through, on simulated samples (harmony instead of scVI for speed)."""
    adatas = []
    for name in ("invivo_donor1", "invivo_donor2", "engineered_7TF"):
        a = demo_small[name].copy()
        a.obs_names = [f"{name}:{b}" for b in a.obs_names]
        a.obs["sample"] = name
        if a.obs["condition"].iloc[0] == "in_vivo":
            a.obs["reference_label"] = a.obs["true_cell_type"].to_numpy()
        pp.qc_metrics(a, species="mouse")
        pp.adaptive_thresholds(a)
        pp.detect_doublets(a, methods=("scrublet",))
        pp.score_cell_cycle(a, species="mouse")
        adatas.append(pp.filter_cells(a, sample=name, copy=True))
    adata = pp.merge_samples(adatas, min_shared_genes=500)
    pp.normalize(adata)
    pp.select_features(adata, n_top_genes=1000)
    tl.integrate(adata, method="harmony")
    tl.cluster(adata)
    tl.score_signatures(adata, hscseq.score.load_signatures(species="mouse"), n_null=20)
    tl.hsc_likeness(adata, score_key="score_hsc_native", pval_key="score_hsc_native_p", n_bootstrap=50)
    tl.map_to_reference(adata)
    tl.scorecard(adata, n_bootstrap=20)
    table = adata.uns["scorecard"]["table"]
    assert list(table["sample"]) == ["engineered_7TF"]
    assert 0 < float(table["fidelity_index"].iloc[0]) < 0.95
    obs = adata.obs
    ref_hsc = obs[(obs["condition"] == "in_vivo") & (obs["true_cell_type"] == "HSC")]
    off = obs[obs["is_offtarget"].astype(bool)]
    assert off["score_hsc_native"].median() < ref_hsc["score_hsc_native"].median()
    assert ref_hsc["hsc_like"].mean() > 0.6
    assert off["novel"].mean() > 0.8
    _plots_return_figures_without_switching_backend(adata, tmp_path)


def _plots_return_figures_without_switching_backend(adata, tmp_path):
    import matplotlib
    import matplotlib.pyplot as plt
    from matplotlib.figure import Figure

    tl.marker_genes(adata)
    # pl.scores shows the score stage's programme table: missing programme and ontogeny calls
    tl.missing_programme(adata, adata.uns["signatures"]["genes"]["hsc_native"]["up"])
    tl.primitive_vs_definitive(adata)
    markers = hscseq.cluster.markers_table(adata)
    backend = matplotlib.get_backend()
    calls = {
        "umap": lambda **kw: pl.umap(adata, **kw),
        "dotplot": lambda **kw: pl.dotplot(adata, markers=markers, **kw),
        "scores": lambda **kw: pl.scores(adata, **kw),
        "scorecard": lambda **kw: pl.scorecard(adata, **kw),
    }
    assert set(calls) == set(pl.__all__)
    for name, call in calls.items():
        fig = call(save=tmp_path / f"{name}.png")
        assert isinstance(fig, Figure), name
        assert (tmp_path / f"{name}.png").stat().st_size > 1000, name
        assert matplotlib.get_backend() == backend, f"pl.{name} switched the matplotlib backend"
        plt.close(fig)
