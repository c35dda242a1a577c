"""The ``swapline`` command line, a package of commands: one module per command (``register`` adds
its parser, ``run`` carries it out), the options they share (:mod:`.options`) and the entry point
with its stop signals and exit codes (:mod:`.entry`).

This module only names what callers use: ``swapline.cli:main`` is the console script; the tests
also reach the stop-signal handler, the progress rule and ``os`` (to patch ``os.access``) here.
"""

from __future__ import annotations

import os  # noqa: F401 - re-exported, see above

from .entry import EXIT_BROKEN_PIPE, EXIT_INTERNAL, EXIT_INTERRUPTED, build_parser, main
from .entry import _StopSignals as _StopSignals
from .options import runtime_from_args, usable_cores
from .options import show_progress as _show_progress  # noqa: F401 - re-exported, see above

__all__ = ["EXIT_BROKEN_PIPE", "EXIT_INTERNAL", "EXIT_INTERRUPTED", "build_parser", "main", "runtime_from_args",
           "usable_cores"]
