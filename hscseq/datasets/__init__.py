"""Seeded simulator of mission-shaped haematopoiesis data with ground truth.

One generator feeds the bundled demo, every unit test and the benchmarks (tiny to 250k+ cells). It makes:

- an in vivo mouse bone-marrow reference (HSC, MPP, LMPP, GMP, MEP, MkP, erythroid, monocyte, neutrophil,
  B, T/NK) from several donors, each its own batch with a batch effect;
- engineered (ESC-derived) HSC precursors: HSC-like cells whose native HSC programme is incomplete (planted
  missing genes), plus off-target states absent from the reference (hemogenic-endothelium-like, primitive /
  yolk-sac-like erythroid expressing embryonic globins);
- organoid output at several timepoints with a known, skewed lineage composition;

with real gene symbols (mouse MGI; human through MGI one-to-one orthologs), cell-type programmes built from
curated marker genes, negative-binomial counts, mitochondrial genes, low-quality cells and doublets.
The truth lives in ``obs``: ``true_cell_type``, ``is_doublet``, ``is_low_quality``, ``is_offtarget``,
``true_phase``; the programmes in ``uns["simulation"]``.

Run ``python -m hscseq.datasets demo resources/demo`` to regenerate the bundled demo bit-identically.

Modules: ``programmes`` (curated marker programmes, cell types as programme mixtures), ``genes`` (gene
universe, orthologs, Ensembl IDs), ``model`` (:class:`SampleSpec` and the generative model), ``simulator``
(:func:`simulate`), ``scenarios`` (reference, engineered and organoid specs, :func:`demo`), ``identity``
(look-alike scenario, :func:`simulate_identity`), ``plate`` (plate-based samples at whole-transcriptome gene
counts, :func:`plate_sample`, :func:`plate_samples`), ``organoid_plan`` and ``organoid`` (human organoids
from the HematoMap profiles, :func:`simulate_organoids`), ``writers`` (input formats), ``demo_files``
(:func:`write_demo`, :func:`write_organoid_demo`) and ``cli`` (:func:`main`).
"""

from hscseq.datasets.cli import main
from hscseq.datasets.demo_files import DEMO_FORMATS, ENGINEERED_DEMO_SAMPLES, write_demo, write_organoid_demo
from hscseq.datasets.genes import gene_universe, mouse_to_human_one2one
from hscseq.datasets.identity import (
    IDENTITY_CELL_TYPES,
    IDENTITY_COMPOSITION,
    IDENTITY_PROGRAMMES,
    LOOKALIKE_TYPES,
    SHARED_HSC_ENDOTHELIAL,
    identity_specs,
    simulate_identity,
)
from hscseq.datasets.model import SampleSpec
from hscseq.datasets.organoid import ENDOTHELIAL_GENES, NOVEL_STROMAL_SHARE, simulate_organoids
from hscseq.datasets.organoid_plan import (
    ORGANOID_LINEAGE_PLAN,
    ORGANOID_LINEAGE_TYPES,
    ORGANOID_REPLICATES,
    OrganoidSpec,
    organoid_specs_from_profiles,
    organoid_type_composition,
)
from hscseq.datasets.plate import PLATE_COMPOSITION, plate_sample, plate_samples, plate_spec
from hscseq.datasets.programmes import CELL_TYPES, OFFTARGET_TYPES, PROGRAMMES
from hscseq.datasets.scenarios import (
    DEFAULT_MISSING_HSC_GENES,
    ENGINEERED_COMPOSITION,
    ORGANOID_COMPOSITIONS,
    REFERENCE_COMPOSITION,
    demo,
    engineered_spec,
    organoid_specs,
    reference_specs,
)
from hscseq.datasets.simulator import simulate
from hscseq.datasets.writers import (
    sha256sums,
    write_10x_h5,
    write_10x_mtx,
    write_dense_table,
    write_h5ad_sample,
)

__all__ = [
    "CELL_TYPES",
    "DEFAULT_MISSING_HSC_GENES",
    "DEMO_FORMATS",
    "ENDOTHELIAL_GENES",
    "ENGINEERED_COMPOSITION",
    "ENGINEERED_DEMO_SAMPLES",
    "IDENTITY_CELL_TYPES",
    "IDENTITY_COMPOSITION",
    "IDENTITY_PROGRAMMES",
    "LOOKALIKE_TYPES",
    "NOVEL_STROMAL_SHARE",
    "OFFTARGET_TYPES",
    "ORGANOID_COMPOSITIONS",
    "ORGANOID_LINEAGE_PLAN",
    "ORGANOID_LINEAGE_TYPES",
    "ORGANOID_REPLICATES",
    "PLATE_COMPOSITION",
    "PROGRAMMES",
    "REFERENCE_COMPOSITION",
    "SHARED_HSC_ENDOTHELIAL",
    "OrganoidSpec",
    "SampleSpec",
    "demo",
    "engineered_spec",
    "gene_universe",
    "identity_specs",
    "main",
    "mouse_to_human_one2one",
    "organoid_specs",
    "organoid_specs_from_profiles",
    "organoid_type_composition",
    "plate_sample",
    "plate_samples",
    "plate_spec",
    "reference_specs",
    "sha256sums",
    "simulate",
    "simulate_identity",
    "simulate_organoids",
    "write_10x_h5",
    "write_10x_mtx",
    "write_demo",
    "write_dense_table",
    "write_h5ad_sample",
    "write_organoid_demo",
]
