"""Integration: normalisation, batch-aware features, a batch-corrected latent space and its measured quality.

Stage ``integrate`` of the pipeline (``results/merge/merged.h5ad`` -> ``results/integrate/integrated.h5ad``).

- :func:`normalize` keeps raw counts in ``layers["counts"]`` and log-normalises X (sparse throughout).
- :func:`select_features` picks batch-aware ``seurat_v3`` highly variable genes on the counts and removes an
  exclusion list (e.g. the transcription factors used to program the cells, whose forced expression would
  make similarity circular) from them, marking those genes in ``var["hscseq_excluded"]`` so that the score
  stage drops them from signatures too.
- :func:`integrate` builds the latent space with scVI (default), scANVI (when reference labels exist),
  Harmony on PCA, or plain PCA (``none``), into ``obsm["X_integrated"]`` plus the method's own key. The
  integration key is the *technical* batch, never the condition, so states present only in engineered or
  organoid samples are not forced onto the reference.
- :func:`integration_metrics` measures batch mixing and label conservation with scib-metrics on the in vivo
  cells; :func:`metrics_table` gives the table written to ``results/tables/integration_metrics.tsv``.

scVI epoch rule: unless ``max_epochs`` is given, scvi-tools' own rule is used,
``min(400, round(20000 / n_cells * 400))`` (:func:`default_max_epochs`), with early stopping on the
validation ELBO (patience 45 epochs, scvi-tools' default). scANVI then trains
``min(20, max(2, round(scvi_epochs / 3)))`` epochs, also scvi-tools' rule. The accelerator is chosen by
Lightning (``"auto"``: a GPU when one is present, else CPU).

Known trade-off (measured on the simulator, see ``tests/test_integrate.py``): the longer scVI trains, the
better the donors mix, but an engineered-only state that resembles a reference type (primitive erythroid
vs adult erythroid) can end up merged with it, most easily when its distinguishing genes are lost at the
merge (the embryonic globins ``Hbb-y``/``Hbb-bh1`` have no one-to-one human ortholog, so they vanish when
human organoid samples are joined to a mouse reference). Harmony merges such states readily. Read the
UMAP and the off-target scores together with the integration metrics.

Layout: ``normalize.py``, ``features.py`` (HVGs and the exclusion list), ``pca.py`` and ``models.py`` (numeric
cores: PCA/Harmony, scVI/scANVI training; arrays out), ``methods.py`` (:func:`integrate`, the AnnData
wrapper), ``metrics.py`` (scib-metrics, bars, table), ``_common.py`` (method names, raw-count check, labels),
``settings.py`` (:class:`IntegrateSettings`) and ``stage.py`` (:func:`run_integrate`, the rule's entry).
"""

from hscseq.integrate._common import METHODS
from hscseq.integrate.features import cell_cycle_genes, excluded_mask, select_features
from hscseq.integrate.methods import integrate
from hscseq.integrate.metrics import (
    DEFAULT_METRIC_BARS,
    integration_metrics,
    integration_metrics_core,
    metrics_table,
    silhouette_subsample,
)
from hscseq.integrate.models import default_max_epochs, train_scanvi, train_scvi
from hscseq.integrate.normalize import normalize
from hscseq.integrate.pca import harmony, pca
from hscseq.integrate.settings import IntegrateSettings
from hscseq.integrate.stage import run_integrate

__all__ = [
    "DEFAULT_METRIC_BARS",
    "METHODS",
    "IntegrateSettings",
    "cell_cycle_genes",
    "default_max_epochs",
    "excluded_mask",
    "harmony",
    "integrate",
    "integration_metrics",
    "integration_metrics_core",
    "metrics_table",
    "normalize",
    "pca",
    "run_integrate",
    "select_features",
    "silhouette_subsample",
    "train_scanvi",
    "train_scvi",
]
