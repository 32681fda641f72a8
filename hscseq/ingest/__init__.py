"""Ingest: read one sample's count matrix in any common format into the per-sample AnnData of the contract.

Supported formats (auto-detected, or forced with the sample sheet's ``format`` column):

- ``10x_h5``: Cell Ranger HDF5, v3 (``matrix/features``; feature-barcoding files keep Gene Expression and set
  the other feature types aside) and v2 (one group per genome).
- ``10x_mtx``: Cell Ranger MTX directories, v3 (``features.tsv.gz``) and v2 (``genes.tsv``), gzipped or not;
  the matrix directory itself or a Cell Ranger output folder above it (``outs/filtered_feature_bc_matrix``,
  ``filtered_gene_bc_matrices/<genome>``).
- ``starsolo``: STARsolo ``Solo.out/Gene/filtered`` (or the STAR output folder holding ``Solo.out``).
- ``h5ad``: counts in X, ``layers["counts"]`` (or ``raw_counts``/``umi_counts``) or ``.raw`` (the first
  that holds counts is used and reported).
- ``loom``: main matrix (or ``layers/counts``), genes in rows.
- ``csv``/``tsv`` (optionally ``.gz``): dense tables, genes x cells or cells x genes (detected from which
  axis carries gene names, or declared with ``table_orientation``).

The output (docs/architecture.md): raw integer counts as CSR float32 in X, obs_names ``{sample}:{barcode}``,
var_names unique gene symbols, var ``gene_symbol``/``gene_id``, provenance in ``uns["hscseq"]["ingest"]``.
Reading stays sparse end to end (dense inputs are converted block by block).

Layout: ``read.py`` (:func:`read_sample`: format, reader, checks, genes, provenance), ``detect.py``
(:func:`detect_format`, matrix-folder lookup), one reader per format family (``tenx_h5.py``, ``mtx.py`` for
Cell Ranger MTX and STARsolo, ``h5ad.py``, ``loom.py``, ``table.py`` for csv/tsv), ``checks.py`` (the
raw-count rule and the checks every reader's result passes), ``plate.py`` (ERCC spike-ins, expected counts),
``gene_ids.py`` (Ensembl IDs, species, symbols), ``_raw.py`` (constants, the reader record, file helpers),
``settings.py`` (:class:`IngestSettings`) and ``stage.py`` (:func:`run_ingest`, the rule's entry).
"""

from hscseq.ingest._raw import FORMATS, TECHNOLOGIES
from hscseq.ingest.detect import detect_format
from hscseq.ingest.read import read_sample
from hscseq.ingest.settings import IngestSettings
from hscseq.ingest.stage import run_ingest

__all__ = ["FORMATS", "TECHNOLOGIES", "IngestSettings", "detect_format", "read_sample", "run_ingest"]
