"""The score stage (package): signature scoring, HSC-likeness, missing programme, ontogeny.

``hscseq.score.core`` holds the original single-module implementation; every name it defines (public and
private) is re-exported here so ``from hscseq.score import ...`` and ``hscseq.score.<name>`` keep working.
"""

from hscseq.score import core as _core
from hscseq.score.core import *  # noqa: F403

globals().update({k: v for k, v in vars(_core).items() if not k.startswith("__")})
