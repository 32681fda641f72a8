"""The one place that trains scvi-tools models (scVI and scANVI in integrate, SOLO in QC, scArches surgery in
fidelity).

:func:`train` sets the seed, sets torch's CPU threads for the training and restores them afterwards, lets
Lightning pick the accelerator (``"auto"``: a GPU when one is present, else the CPU), applies the batch-size
rule of :func:`batch_size` and switches the progress bar off. It returns the model's training history
length and device in a small record so that callers can store them in ``uns[...]["params"]``.
"""

from __future__ import annotations

import logging
import warnings
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

#: scvi-tools' default mini-batch size.
DEFAULT_BATCH_SIZE = 128


def batch_size(n_obs: int, *, base: int = DEFAULT_BATCH_SIZE, train_size: float = 0.9) -> int:
    """Mini-batch size: ``base`` (capped by the training cells), lowered until no last batch has 1-2 cells.

    scvi-tools otherwise moves those cells to the validation set with a warning (a batch of one cell
    breaks batch normalisation); which data sizes trigger it is arbitrary (e.g. 427 cells).

    Parameters
    ----------
    n_obs
        Cells in the model's AnnData.
    base
        Preferred batch size.
    train_size
        Share of cells used for training (scvi-tools' default 0.9).

    Returns
    -------
    The batch size.
    """
    n_train = max(1, int(np.ceil(train_size * n_obs)))
    size = int(max(16, min(base, n_train)))
    while size > 16 and n_train % size in (1, 2):
        size -= 1
    return size


def epochs_for_steps(
    n_obs: int,
    max_epochs: int,
    *,
    max_steps: int | None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    train_size: float = 0.9,
) -> int:
    """``max_epochs`` capped at the fewest epochs that reach ``max_steps`` optimiser steps.

    An epoch over ``n_obs`` cells takes ``ceil(train_size * n_obs / batch_size)`` steps, so a fixed number
    of epochs costs time in proportion to the cells; a step budget keeps the cost of a training constant
    as the data grow (the last epoch may overshoot the budget by less than one epoch's steps).
    ``max_steps=None`` returns ``max_epochs`` unchanged.
    """
    if max_steps is None:
        return int(max_epochs)
    steps_per_epoch = max(1, int(np.ceil(train_size * max(n_obs, 1) / batch_size)))
    return int(min(max_epochs, max(1, int(np.ceil(max_steps / steps_per_epoch)))))


def train(
    model: Any,
    *,
    max_epochs: int,
    seed: int,
    batch_size: int | None = None,
    early_stopping: bool = False,
    threads: int | None = None,
    accelerator: str = "auto",
    **kw: Any,
) -> dict[str, Any]:
    """Train an scvi-tools model reproducibly.

    Parameters
    ----------
    model
        An scvi-tools model (``SCVI``, ``SCANVI``, ``SOLO``, a query model from ``load_query_data``...).
    max_epochs
        Upper bound on epochs.
    seed
        Seed of scvi-tools (torch, numpy and Python's ``random`` through Lightning).
    batch_size
        Mini-batch size; ``None`` applies :func:`batch_size` (scvi-tools' 128 with the last-batch rule).
    early_stopping
        Stop when the validation loss stops improving (scvi-tools' patience).
    threads
        torch CPU threads during training (restored afterwards); ``None`` leaves them as they are.
    accelerator
        Lightning accelerator: ``"auto"`` takes a GPU when present, ``"cpu"`` forces the CPU.
    **kw
        Passed on to ``model.train`` (e.g. ``plan_kwargs``, ``n_samples_per_label``, ``train_size``).

    Returns
    -------
    ``{"epochs_trained", "device", "batch_size", "threads", "seed"}``.
    """
    import scvi
    import torch

    train_size = float(kw.get("train_size") or 0.9)
    size = batch_size_rule(model, train_size) if batch_size is None else int(batch_size)
    before = torch.get_num_threads()
    scvi.settings.seed = int(seed)
    try:
        if threads:
            torch.set_num_threads(int(threads))
        logger.info(
            "training %s: up to %d epochs, batch size %d, %d torch threads, accelerator %s",
            type(model).__name__,
            max_epochs,
            size,
            torch.get_num_threads(),
            accelerator,
        )
        with warnings.catch_warnings():
            # Lightning warns at every training on a machine with SLURM's srun outside a SLURM job (a login
            # node, a local run beside a cluster install): noise in every log, nothing to act on
            warnings.filterwarnings("ignore", message="The `srun` command is available on your system")
            model.train(
                max_epochs=int(max_epochs),
                batch_size=size,
                early_stopping=bool(early_stopping),
                accelerator=accelerator,
                enable_progress_bar=False,
                **kw,
            )
        used = torch.get_num_threads()
    finally:
        torch.set_num_threads(before)
    history = getattr(model, "history", None) or {}
    key = next((k for k in ("elbo_train", "train_loss_epoch", "train_loss") if k in history), None)
    return {
        "epochs_trained": int(history[key].shape[0]) if key else int(max_epochs),
        "device": _device(model),
        "batch_size": size,
        "threads": int(used),
        "seed": int(seed),
    }


def _device(model: Any) -> str:
    """Device of a trained model (SOLO's classifier module has no ``device`` attribute)."""
    try:
        return str(model.device)
    except AttributeError:
        return str(next(model.module.parameters()).device)


def batch_size_rule(model: Any, train_size: float = 0.9) -> int:
    """:func:`batch_size` for the cells registered with ``model``."""
    return batch_size(int(model.adata.n_obs), train_size=train_size)
