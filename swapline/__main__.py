"""``python -m swapline`` is the ``swapline`` command."""

import sys

from .cli import main

sys.exit(main())
