"""Make a short clip from a still: a slow zoom and pan (the demo's video target)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

from .frames import bgr_to_frame


def zoom_pan_frames(image: np.ndarray, count: int, size: tuple[int, int], zoom: float = 1.25,
                    center: tuple[float, float] | None = None) -> Iterator[np.ndarray]:
    """``count`` frames ``(h, w, 3) uint8`` of ``image`` slowly zooming in by ``zoom`` while the
    view drifts towards ``center`` (image pixels; default the image centre).

    Args:
        size: ``(w, h)`` of the frames.
    """
    h, w = image.shape[:2]
    out_w, out_h = size
    cx0, cy0 = w / 2, h / 2
    cx1, cy1 = center if center is not None else (cx0, cy0)
    base = min(out_w / w, out_h / h)
    for i in range(count):
        t = i / max(1, count - 1)
        ease = 0.5 - 0.5 * np.cos(np.pi * t)
        s = base * (1.0 + (zoom - 1.0) * ease)
        cx, cy = cx0 + (cx1 - cx0) * ease, cy0 + (cy1 - cy0) * ease
        m = np.array([[s, 0.0, out_w / 2 - s * cx], [0.0, s, out_h / 2 - s * cy]])
        yield cv2.warpAffine(image, m, (out_w, out_h), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)


def write_clip(frames: Iterator[np.ndarray], path: Path, fps: int | Fraction = 25, crf: int = 18) -> int:
    """Encode BGR frames to an H.264 file at ``path`` (written to a temporary name, then renamed).
    The frames' size is kept exactly (odd sizes are coded 4:4:4, see :func:`pixel_format`).
    Returns the number of frames."""
    from .writer import pixel_format

    tmp = path.with_name(f".{path.name}.{os.getpid()}.part{path.suffix}")
    n = 0
    try:
        with av.open(str(tmp), "w") as out:
            stream = out.add_stream("libx264", rate=Fraction(fps))
            stream.options = {"crf": str(crf), "preset": "veryfast"}
            for frame in frames:
                if n == 0:
                    stream.width, stream.height = frame.shape[1], frame.shape[0]
                    stream.pix_fmt = pixel_format("libx264", frame.shape[1], frame.shape[0])
                vf = bgr_to_frame(frame)
                out.mux(stream.encode(vf))
                n += 1
            out.mux(stream.encode(None))
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return n
