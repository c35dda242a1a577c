"""Cut the face box out of a frame and put the blended box back, only touching that rectangle.

Boxes may stick out of the frame on any side (faces at the border, partly outside the picture):
``crop_with_padding`` replicates the edge pixels, ``paste_back`` clips.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np


def quantize_alpha(alpha: np.ndarray) -> np.ndarray:
    """``(h, w) float`` 0..1 -> ``(h, w) uint8`` 0..255, rounded; exactly 0 stays 0, 1 stays 255."""
    return cv2.convertScaleAbs(cv2.max(np.asarray(alpha, dtype=np.float32), 0.0), alpha=255.0)


def blend_u8(background: np.ndarray, patch: np.ndarray, alpha8: np.ndarray) -> np.ndarray:
    """``round((patch * a + background * (255 - a)) / 255)`` in integer arithmetic.

    ``background``, ``patch``: ``(h, w, 3) uint8``; ``alpha8``: ``(h, w) uint8``. Exact: ``a == 0``
    gives ``background``, ``a == 255`` gives ``patch`` bit for bit; rounding is to nearest (the
    division by 255 uses ``(x + 128 + ((x + 128) >> 8)) >> 8``, exact for ``0 <= x <= 255 * 255``).
    Returns ``(h, w, 3) uint8``.
    """
    a = alpha8.astype(np.uint16)[..., None]
    x = patch.astype(np.uint16) * a
    x += background.astype(np.uint16) * (np.uint16(255) - a)
    x += np.uint16(128)
    x += x >> 8
    x >>= 8
    return x.astype(np.uint8)


def paste_back(
    frame: np.ndarray,
    patch: np.ndarray,
    alpha: np.ndarray,
    origin: Sequence[int],
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Alpha-blend ``patch`` into ``frame`` at ``origin``.

    ``frame``: ``(H, W, 3) uint8``; ``patch``: ``(h, w, 3) uint8``; ``alpha``: ``(h, w) float32``
    0..1 (quantised to 0..255, endpoints exact); ``origin``: ``(x0, y0)`` of the patch's top-left
    corner in frame pixels, may be negative or put the patch partly (or wholly) outside the frame:
    the part outside is dropped. Returns a new ``(H, W, 3) uint8`` frame (``frame`` untouched)
    unless ``out`` is given (``(H, W, 3) uint8``, may be ``frame`` itself), which is written and
    returned. Only ``frame[y0:y0+h, x0:x0+w]`` can change; where ``alpha == 0`` pixels are
    bit-identical to ``frame``, where ``alpha == 1`` they equal ``patch``.
    """
    if out is None:
        out = frame.copy()
    elif out is not frame:
        np.copyto(out, frame)
    H, W = frame.shape[:2]
    h, w = patch.shape[:2]
    x0, y0 = int(origin[0]), int(origin[1])
    fx0, fy0 = max(x0, 0), max(y0, 0)
    fx1, fy1 = min(x0 + w, W), min(y0 + h, H)
    if fx1 <= fx0 or fy1 <= fy0:
        return out
    px0, py0 = fx0 - x0, fy0 - y0
    px1, py1 = px0 + (fx1 - fx0), py0 + (fy1 - fy0)
    a8 = quantize_alpha(alpha[py0:py1, px0:px1])
    # Restrict the arithmetic to the bounding box of alpha > 0.
    bx, by, bw, bh = cv2.boundingRect((a8 > 0).view(np.uint8))
    if bw == 0 or bh == 0:
        return out
    region = (slice(fy0 + by, fy0 + by + bh), slice(fx0 + bx, fx0 + bx + bw))
    sub = (slice(py0 + by, py0 + by + bh), slice(px0 + bx, px0 + bx + bw))
    a_sub = a8[by:by + bh, bx:bx + bw]
    out[region] = blend_u8(frame[region], patch[sub], a_sub)
    return out


def paste_where(out: np.ndarray, patch: np.ndarray, where: np.ndarray, origin: Sequence[int]) -> None:
    """Copy ``patch`` into ``out`` in place at ``origin`` where ``where`` is true (clipped).

    ``out``: ``(H, W, 3) uint8`` written in place; ``patch``: ``(h, w, 3) uint8``; ``where``:
    ``(h, w) bool``. The binary counterpart of :func:`paste_back`, for patches that are already
    blended (a straight copy, no arithmetic).
    """
    H, W = out.shape[:2]
    h, w = patch.shape[:2]
    x0, y0 = int(origin[0]), int(origin[1])
    fx0, fy0, fx1, fy1 = max(x0, 0), max(y0, 0), min(x0 + w, W), min(y0 + h, H)
    if fx1 <= fx0 or fy1 <= fy0:
        return
    sub = (slice(fy0 - y0, fy1 - y0), slice(fx0 - x0, fx1 - x0))
    mask = np.ascontiguousarray(where[sub]).view(np.uint8)
    # OpenCV's masked copy writes into the numpy view in place, ~50x faster than np.copyto(where=)
    dst = out[fy0:fy1, fx0:fx1]
    if dst.strides[1:] == (3, 1):  # rows may be strided, pixels must be packed for cv::Mat
        cv2.copyTo(np.ascontiguousarray(patch[sub]), mask, dst)
    else:
        np.copyto(dst, patch[sub], where=where[sub][..., None])


def crop_with_padding(frame: np.ndarray, box: Sequence[int]) -> tuple[np.ndarray, tuple[int, int]]:
    """Cut ``box`` = ``(x0, y0, x1, y1)`` (ints, end exclusive) out of ``frame`` ``(H, W, 3) uint8``.

    Where the box sticks out of the frame the edge pixels are replicated (also when it lies wholly
    outside). Returns ``(crop (y1-y0, x1-x0, 3) uint8, origin (x0, y0))``; the crop is a copy.
    """
    H, W = frame.shape[:2]
    x0, y0, x1, y1 = (int(v) for v in box)
    if x1 <= x0 or y1 <= y0:
        raise ValueError(f"empty crop box {tuple(box)}")
    if x0 >= 0 and y0 >= 0 and x1 <= W and y1 <= H:
        return frame[y0:y1, x0:x1].copy(), (x0, y0)
    cx0, cy0 = min(max(x0, 0), W - 1), min(max(y0, 0), H - 1)
    cx1, cy1 = max(min(x1, W), cx0 + 1), max(min(y1, H), cy0 + 1)
    inner = frame[cy0:cy1, cx0:cx1]
    # Offsets of the wanted box relative to the clamped inner box: pad or trim each side.
    top, left = cy0 - y0, cx0 - x0
    bottom, right = y1 - cy1, x1 - cx1
    padded = cv2.copyMakeBorder(inner, max(top, 0), max(bottom, 0), max(left, 0), max(right, 0),
                                cv2.BORDER_REPLICATE)
    ty, tx = max(-top, 0), max(-left, 0)
    crop = padded[ty:ty + (y1 - y0), tx:tx + (x1 - x0)]
    return np.ascontiguousarray(crop), (x0, y0)
