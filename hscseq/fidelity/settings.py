"""Fidelity settings and shared constants."""

from __future__ import annotations

from typing import Any

NOVEL = "novel"
PARTS = ("identity", "similarity", "programme", "composition")
DEFAULT_SETTINGS: dict[str, Any] = {
    "novelty_space": "uncorrected",
    "method": "auto",
    "n_neighbors": 15,
    "n_bootstrap": 200,
    "seed": 0,
    "null_quantile": 0.99,
    "absent_quantile": 0.05,
    "min_confidence": 0.5,
    "min_cells": 10,
    "n_informative_genes": 2000,
    "index_weights": {"identity": 1.0, "similarity": 1.0, "programme": 1.0, "composition": 1.0},
    "reference": None,
    "reference_label_key": "cell_type",
    "reference_stage_key": None,
    "reference_donor_key": None,
    "hsc_label": None,
    "negative_control_type": None,
    "max_epochs": 50,
    "de_top_n": 25,
    "de_min_cells": 10,
    "de_max_genes": 1000,
}
