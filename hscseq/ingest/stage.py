"""The ingest stage's entry: read a sample-sheet row's counts, add its columns, write the h5ad atomically."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from hscseq._utils import write_h5ad
from hscseq.ingest.read import read_sample
from hscseq.ingest.settings import IngestSettings

#: Sample-sheet columns every cell carries in ``obs`` (``technology``: ``droplet`` unless the sheet says)
OBS_COLUMNS = ("sample", "species", "condition", "batch", "timepoint", "donor", "technology")

logger = logging.getLogger(__name__)


def run_ingest(
    *, counts: str, h5ad: str, sample: Mapping[str, Any], settings: IngestSettings | Mapping[str, Any] | None
) -> None:
    """Snakemake entry point: read ``counts``, add the sample-sheet columns, write ``h5ad`` atomically.

    Parameters
    ----------
    counts
        Count matrix path (the sample sheet's ``path``).
    h5ad
        Output per-sample h5ad.
    sample
        Sample-sheet row (sample, path, species, condition, batch, format, timepoint, donor, label_column,
        technology); :data:`OBS_COLUMNS` of it become ``obs`` columns.
    settings
        :class:`IngestSettings`, or the ``ingest`` config section (validated against the schema).
    """
    s = IngestSettings.coerce(settings)
    name = str(sample["sample"])
    adata = read_sample(
        counts,
        sample=name,
        species=str(sample["species"]),
        fmt=sample.get("format") or None,
        label_column=sample.get("label_column") or None,
        min_known_gene_fraction=float(s.min_known_gene_fraction),
        counts_layer=str(s.counts_layer),
        table_orientation=str(s.table_orientation),
        technology=str(sample.get("technology") or "droplet"),
    )
    for col in OBS_COLUMNS:
        value = sample.get(col, "")
        value = "" if value is None or (isinstance(value, float) and np.isnan(value)) else str(value)
        adata.obs[col] = pd.Categorical([value or ("droplet" if col == "technology" else "")] * adata.n_obs)
    write_h5ad(adata, h5ad)
    logger.info("sample %s: wrote %s", name, h5ad)
