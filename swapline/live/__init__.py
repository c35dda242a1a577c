"""Live mode: a camera, a stream or a file in, swapped frames out in real time.

The engine (:class:`LiveEngine`) runs the video job's own stages and tracker one frame at a time
between two newest-frame slots (:class:`NewestSlot`), so a swap slower than the source drops
frames instead of adding delay. Inputs (:mod:`.inputs`: files in real time, streams, cameras)
and outputs (:mod:`.outputs`: streams, a virtual camera, a recording) are threads around it;
:func:`~swapline.live.runner.run_live` is one run of them, as ``swapline live`` does it.
"""

from __future__ import annotations

from .engine import LiveEngine, LiveFrame, LiveStats
from .slot import NewestSlot

__all__ = ["LiveEngine", "LiveFrame", "LiveStats", "NewestSlot"]
