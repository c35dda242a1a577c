"""Swap the selected faces of one frame: mesh swap, blend chain, paste — per face, in order.

Shared by the image job and (later) the video pipeline's swap stage.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
import numpy as np

from ..blend.chain import blend_face
from ..blend.paste import paste_where
from ..config import SwapConfig
from ..face.types import Face
from ..runtime.timing import StageTimes

Steady = Callable[[np.ndarray], np.ndarray]
from ..swap.mesh import SourceFace, swap_mesh


def swap_faces(frame: np.ndarray, faces: Sequence[Face], source: SourceFace, config: SwapConfig,
               times: StageTimes | None = None,
               steady: Callable[[Face], tuple[Steady | None, Steady | None]] | None = None,
               ) -> tuple[np.ndarray, np.ndarray]:
    """Swap ``source`` into each of ``faces`` of ``frame``.

    Args:
        frame: ``(H, W, 3) uint8`` BGR; not modified.
        faces: target faces with meshes, already selected.
        steady: gives, per face, smoothers of its colour statistics and of its detail blur over
            time (video), or None.
    Returns:
        ``(out (H, W, 3) uint8, changed (H, W) bool)``: the new frame and the pixels that may
        differ from ``frame`` (every other pixel is bit-identical).
    """
    out = frame.copy()
    changed = np.zeros(frame.shape[:2], bool)
    h, w = frame.shape[:2]
    for face in faces:
        t0 = time.perf_counter()
        swap = swap_mesh(out, face, source, shape_weight=config.face_shape_weight,
                         keep_target_expression=config.expression == "target",
                         resolution=config.swap_resolution)
        t1 = time.perf_counter()
        colour, detail = steady(face) if steady is not None else (None, None)
        region, where = blend_face(swap, config, colour, detail)
        paste_where(out, region, where, swap.origin)
        t2 = time.perf_counter()
        x0, y0 = swap.origin
        rh, rw = where.shape
        ys, xs = slice(max(y0, 0), min(y0 + rh, h)), slice(max(x0, 0), min(x0 + rw, w))
        changed[ys, xs] |= where[ys.start - y0:ys.stop - y0, xs.start - x0:xs.stop - x0]
        if times is not None:
            times.add("swap", t1 - t0)
            times.add("blend", t2 - t1)
    return out, changed
