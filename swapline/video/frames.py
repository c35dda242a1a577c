"""Exact conversions between libav frames and BGR arrays.

libswscale's default YUV ↔ RGB path (what ``to_ndarray(format="bgr24")`` and encoding a
``bgr24`` frame use) is biased: a round trip darkens every pixel by 1–4 levels, and each
re-encode of a video would add the shift again. For 4:2:0 8-bit video with even sizes (nearly
all H.264/HEVC), OpenCV's I420 conversions (BT.601, limited range, rounded) are used instead:
their round trip has no bias. Other formats fall back to libswscale.
"""

from __future__ import annotations

import av
import cv2
import numpy as np


def frame_to_bgr(frame: av.VideoFrame) -> np.ndarray:
    """``(H, W, 3) uint8`` BGR pixels of a decoded frame."""
    if frame.format.name == "yuv420p" and frame.width % 2 == 0 and frame.height % 2 == 0:
        return cv2.cvtColor(frame.to_ndarray(), cv2.COLOR_YUV2BGR_I420)
    return frame.to_ndarray(format="bgr24")


def bgr_to_frame(image: np.ndarray) -> av.VideoFrame:
    """A ``yuv420p`` frame (``bgr24`` for odd sizes) of ``(H, W, 3) uint8`` BGR pixels, ready to
    encode."""
    h, w = image.shape[:2]
    if h % 2 == 0 and w % 2 == 0:
        return av.VideoFrame.from_ndarray(cv2.cvtColor(image, cv2.COLOR_BGR2YUV_I420), format="yuv420p")
    return av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="bgr24")
