"""numba's threading layer: its thread pool must not compete with torch's for the cores.

With numba's default choice (the OpenMP layer where it loads), a numba-parallel scanpy step run before scVI in
the same process (``sc.pp.normalize_total`` in :func:`hscseq.integrate.normalize`) made every later scVI
epoch 2.2-2.5x slower on 2 cores (9,171 cells, 2,000 genes: 3.4 s instead of 1.5 s per epoch; README
Performance). numba's own ``workqueue`` layer has no such effect. It is chosen here unless the user set
``NUMBA_THREADING_LAYER``; it takes effect only before numba's first parallel launch in the process.
"""

from __future__ import annotations

import os
import sys

LAYER = "workqueue"


def prefer_workqueue() -> None:
    """Choose numba's ``workqueue`` threading layer unless ``NUMBA_THREADING_LAYER`` is set."""
    if "NUMBA_THREADING_LAYER" in os.environ:
        return
    os.environ["NUMBA_THREADING_LAYER"] = LAYER  # read when numba is first imported
    numba = sys.modules.get("numba")
    if numba is not None:  # imported already (e.g. scanpy first): the layer is picked at the first launch
        numba.config.THREADING_LAYER = LAYER
