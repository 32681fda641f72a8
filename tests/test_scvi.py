"""The shared scvi-tools training helper (hscseq._scvi): seeds, torch threads, batch-size rule.

Real scVI training on a small simulated sample (few epochs).
"""

from __future__ import annotations

import os
import subprocess
import sys
import warnings

import anndata as ad
import numpy as np
import pytest
import torch

from hscseq import _scvi, datasets

pytestmark = [
    pytest.mark.filterwarnings("ignore:The `srun` command is available:UserWarning"),
    pytest.mark.filterwarnings(
        "ignore:The number of training batches .* is smaller than the logging interval:UserWarning"
    ),
]


@pytest.fixture(scope="module")
def counts() -> ad.AnnData:
    spec = datasets.reference_specs(400, n_donors=1)[0]
    a = datasets.simulate([spec], n_genes=300, seed=3)[spec.sample]
    return ad.AnnData(X=a.X.astype(np.float32), obs=a.obs[["batch"]].copy(), var=a.var[[]].copy())


def _latent(adata: ad.AnnData, *, seed: int, threads: int | None = None) -> tuple[np.ndarray, dict]:
    import scvi

    a = adata.copy()
    scvi.settings.seed = seed
    scvi.model.SCVI.setup_anndata(a)
    model = scvi.model.SCVI(a, n_latent=5)
    record = _scvi.train(model, max_epochs=3, seed=seed, threads=threads, accelerator="cpu")
    return model.get_latent_representation(), record


def test_threads_are_set_for_training_and_restored(counts):
    before = torch.get_num_threads()
    target = 1 if before != 1 else 2
    _, record = _latent(counts, seed=0, threads=target)
    assert record["threads"] == target
    assert torch.get_num_threads() == before


def test_trainings_do_not_warn_about_srun_outside_slurm(counts, tmp_path, monkeypatch):
    """On a machine with SLURM's srun (a login node, a local run beside a cluster) Lightning warns at every
    training that srun is not used: noise in every QC, integration and mapping log. The helper silences it."""
    fake = tmp_path / "srun"
    fake.write_text("#!/bin/sh\nexit 0\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    for var in [v for v in os.environ if v.startswith("SLURM_")]:
        monkeypatch.delenv(var)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        _latent(counts, seed=0)
    assert not [w for w in seen if "srun" in str(w.message)]


def test_threads_are_restored_when_training_fails(counts):
    import scvi

    before = torch.get_num_threads()
    a = counts.copy()
    scvi.model.SCVI.setup_anndata(a)
    model = scvi.model.SCVI(a, n_latent=5)
    with pytest.raises(TypeError):
        _scvi.train(model, max_epochs=1, seed=0, threads=1 if before != 1 else 2, no_such_option=True)
    assert torch.get_num_threads() == before


def test_same_seed_same_model_other_seed_other_model(counts):
    a, rec = _latent(counts, seed=7)
    b, _ = _latent(counts, seed=7)
    c, _ = _latent(counts, seed=8)
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - c).max() > 1e-3
    assert rec["epochs_trained"] == 3
    assert rec["device"].startswith("cpu")


def test_batch_size_rule_avoids_a_last_batch_of_one_or_two_cells():
    for n in range(20, 3000):
        size = _scvi.batch_size(n)
        n_train = int(np.ceil(0.9 * n))
        assert 16 <= size <= 128
        assert n_train % size not in (1, 2) or size == 16
    assert _scvi.batch_size(427) != 128  # 385 training cells = 3 x 128 + 1
    assert _scvi.batch_size(10_000) == 128
    assert _scvi.batch_size(10_000, base=1024) == 1024


def test_solo_classifier_trains_through_the_helper(counts):
    """SOLO's classifier module has no ``device`` attribute (the helper reads it from the parameters)."""
    import scvi

    a = counts.copy()
    scvi.model.SCVI.setup_anndata(a)
    vae = scvi.model.SCVI(a, n_latent=5)
    _scvi.train(vae, max_epochs=2, seed=0, accelerator="cpu")
    solo = scvi.external.SOLO.from_scvi_model(vae)
    before = torch.get_num_threads()
    record = _scvi.train(solo, max_epochs=2, seed=0, threads=1, early_stopping=True, accelerator="cpu")
    assert record["device"].startswith("cpu") and record["epochs_trained"] >= 1
    assert torch.get_num_threads() == before


def test_a_step_budget_caps_epochs_so_that_the_steps_stay_constant_as_cells_grow():
    assert _scvi.epochs_for_steps(50_000, 100, max_steps=None) == 100
    for n in (1_000, 5_000, 20_000, 100_000, 300_000):
        epochs = _scvi.epochs_for_steps(n, 400, max_steps=4_000, batch_size=128)
        steps_per_epoch = int(np.ceil(0.9 * n / 128))
        assert epochs <= 400
        # the fewest epochs that reach the budget, unless max_epochs stops first
        assert epochs == 400 or (epochs * steps_per_epoch >= 4_000 > (epochs - 1) * steps_per_epoch)
    assert _scvi.epochs_for_steps(300_000, 400, max_steps=4_000) == 2


def test_solo_capped_by_a_step_budget_trains_fewer_epochs(counts):
    from hscseq.qc.solo import _run_solo

    proba, _, meta = _run_solo(counts, max_epochs=50, max_steps=100, seed=0, threads=1)
    n_train = int(np.ceil(0.9 * counts.n_obs))
    assert meta["epochs"]["scvi"] == int(np.ceil(100 / np.ceil(n_train / _scvi.batch_size(counts.n_obs))))
    assert meta["epochs"]["scvi"] < 50 and meta["epochs"]["classifier"] < meta["epochs"]["scvi"]
    assert meta["max_steps"] == 100 and np.isfinite(proba).all()


def test_numba_uses_the_workqueue_layer_so_that_its_threads_leave_torch_alone():
    # in a fresh process, as a user's notebook: scanpy first, then hscseq, then a numba-parallel scanpy step
    code = (
        "import scanpy as sc, numpy as np, scipy.sparse as sp, anndata as ad, hscseq, numba\n"
        "a = ad.AnnData(sp.random(500, 300, density=0.1, format='csr', dtype=np.float32, random_state=0))\n"
        "sc.pp.normalize_total(a)\n"
        "print(numba.threading_layer())\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_THREADING_LAYER"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "workqueue"


def test_a_threading_layer_the_user_chose_is_kept(monkeypatch):
    from hscseq._threads import prefer_workqueue

    monkeypatch.setenv("NUMBA_THREADING_LAYER", "omp")
    prefer_workqueue()
    assert os.environ["NUMBA_THREADING_LAYER"] == "omp"
