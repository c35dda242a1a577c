"""Blend masks on a face crop: polygons, feathered boxes, mesh areas, feathering.

Every mask is ``(H, W) float32`` in ``0..1`` over the face crop (never the whole frame). Point
coordinates put pixel centres at integers (OpenCV's convention, as for warps). Polygons are drawn
with OpenCV's anti-aliased fill at 1/16 px precision, which runs about 0.5 px generous along the
outline (it includes the boundary pixels); feathering is an erosion by a
distance transform followed by a Gaussian blur whose kernel is truncated so that the soft edge
ends exactly at the (eroded) mask boundary.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from swapline.config import MASK_AREAS
from swapline.errors import ConfigError
from swapline.face import mesh_topology as topo

_SHIFT = 4  # fixed-point bits for cv2 polygon drawing (1/16 px)
_SCALE = float(1 << _SHIFT)


def disc(radius: float) -> np.ndarray:
    """An elliptic structuring element of about ``radius`` pixels: ``(2k+1, 2k+1) uint8``."""
    k = max(1, int(round(radius)))
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * k + 1, 2 * k + 1))


def _fixed(points: np.ndarray) -> np.ndarray:
    """``(K, 2)`` float pixel coordinates -> ``(K, 1, 2) int32`` fixed-point for cv2 drawing."""
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    return np.round(pts * _SCALE).astype(np.int32).reshape(-1, 1, 2)


def _draw_polygons(shape: tuple[int, int], polygons: Sequence[np.ndarray], dilate_px: float = 0.0) -> np.ndarray:
    """Fill polygons (optionally grown by a disc of ``dilate_px``) into a ``(H, W) uint8`` 0/255 canvas."""
    canvas = np.zeros((int(shape[0]), int(shape[1])), dtype=np.uint8)
    fixed = [_fixed(p) for p in polygons if len(p) >= 3]
    if not fixed:
        return canvas
    cv2.fillPoly(canvas, fixed, 255, lineType=cv2.LINE_AA, shift=_SHIFT)
    if dilate_px > 0.5:
        # A thick closed outline is the polygon's Minkowski sum with a disc (round joins).
        thickness = max(1, int(round(2.0 * dilate_px)))
        cv2.polylines(canvas, fixed, True, 255, thickness=thickness, lineType=cv2.LINE_AA, shift=_SHIFT)
    return canvas


def _to_float(canvas: np.ndarray) -> np.ndarray:
    return canvas.astype(np.float32) * np.float32(1.0 / 255.0)


def polygon_mask(shape: tuple[int, int], points: np.ndarray) -> np.ndarray:
    """Filled polygon.

    ``shape``: ``(H, W)``; ``points``: ``(K, 2)`` float ``x, y`` pixel coordinates of an ordered
    loop. Returns ``(H, W) float32`` in ``0..1`` (1 inside, 0 outside, anti-aliased edge).
    """
    return _to_float(_draw_polygons(shape, [np.asarray(points, dtype=np.float64)]))


def hull_mask(shape: tuple[int, int], points: np.ndarray) -> np.ndarray:
    """Filled convex hull of ``points`` ``(K, 2)`` float -> ``(H, W) float32`` in ``0..1``."""
    pts = np.asarray(points, dtype=np.float32).reshape(-1, 2)
    if len(pts) < 3:
        return np.zeros((int(shape[0]), int(shape[1])), dtype=np.float32)
    hull = cv2.convexHull(pts).reshape(-1, 2)
    return polygon_mask(shape, hull)


def box_mask(
    shape: tuple[int, int],
    box: Sequence[float],
    padding: Sequence[float] = (0.0, 0.0, 0.0, 0.0),
    blur: float = 0.0,
) -> np.ndarray:
    """Feathered box (FaceFusion-style static box mask), in crop coordinates.

    ``box``: ``(4,)`` ``x1, y1, x2, y2`` in box convention (the box covers pixels ``x1 .. x2-1``
    when the values are integers; fractional values give partial coverage). ``padding``: ``(top, right, bottom, left)`` fractions
    of the box height/width cut off each side (the box shrinks inward). ``blur``: feather width as
    a fraction of the box width; the box is eroded by the blur first, so the feather lies inside
    the (padded) box and reaches 0 at its edge. Returns ``(H, W) float32`` in ``0..1``.
    """
    h, w = int(shape[0]), int(shape[1])
    x1, y1, x2, y2 = (float(v) for v in box)
    bw, bh = max(x2 - x1, 0.0), max(y2 - y1, 0.0)
    top, right, bottom, left = (float(p) for p in padding)
    x1p, x2p = x1 + left * bw, x2 - right * bw
    y1p, y2p = y1 + top * bh, y2 - bottom * bh
    # Coverage of each pixel column/row by the interval (exact area anti-aliasing, separable).
    xs = np.arange(w, dtype=np.float32)
    ys = np.arange(h, dtype=np.float32)
    cx = np.clip(np.minimum(xs + 1, x2p) - np.maximum(xs, x1p), 0.0, 1.0)
    cy = np.clip(np.minimum(ys + 1, y2p) - np.maximum(ys, y1p), 0.0, 1.0)
    mask = (cy[:, None] * cx[None, :]).astype(np.float32)
    blur_px = float(blur) * bw
    if blur_px <= 0.5:
        return mask
    return feather(mask, 0.0, blur_px)


def feather(mask: np.ndarray, erode_px: float, blur_px: float) -> np.ndarray:
    """Erode, then soften the edge so that it ends at the eroded boundary.

    ``mask``: ``(H, W)`` float (0..1, thresholded at 0.5), bool or uint8 (0/255 or 0/1).
    ``erode_px``: the edge moves inward by this many pixels. ``blur_px``: width of the soft ramp
    (0 at the eroded edge, 1 at ``blur_px`` inside it). Implemented as an erosion by
    ``erode_px + blur_px / 2`` (distance transform) and a Gaussian blur with sigma ``blur_px / 4``
    whose kernel is cut at radius ``blur_px / 2``, so nothing leaks outside the eroded mask.
    Large blurs run at reduced resolution. Returns ``(H, W) float32`` in ``0..1``.
    """
    m = np.asarray(mask)
    if m.dtype == np.bool_:
        binary = m.view(np.uint8)
    elif m.dtype == np.uint8:
        binary = (m > (127 if m.max(initial=0) > 1 else 0)).view(np.uint8)
    else:
        binary = (m > 0.5).view(np.uint8)
    erode_px = max(float(erode_px), 0.0)
    blur_px = max(float(blur_px), 0.0)
    radius = blur_px / 2.0
    total = erode_px + radius
    if total > 0.0:
        # Euclidean distance to the nearest outside pixel (pad so the crop border counts as inside
        # only if the mask touches it: outside the crop is treated as outside the mask).
        padded = cv2.copyMakeBorder(binary, 1, 1, 1, 1, cv2.BORDER_CONSTANT, value=0)
        dist = cv2.distanceTransform(padded, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)[1:-1, 1:-1]
        core = (dist > total).view(np.uint8)
    else:
        core = binary.copy()
    if radius < 0.5:
        return core.astype(np.float32)
    # Downscale so the kernel radius stays <= ~6 px: cost independent of the blur size.
    factor = max(1, int(radius // 6))
    h, w = core.shape
    if factor > 1:
        small = cv2.resize(core * np.uint8(255), (max(1, w // factor), max(1, h // factor)), interpolation=cv2.INTER_AREA)
        r_small = radius / factor
        k = 2 * int(np.floor(r_small)) + 1
        soft = cv2.GaussianBlur(small.astype(np.float32) * np.float32(1 / 255), (k, k), r_small / 2.0,
                                borderType=cv2.BORDER_CONSTANT)
        soft = cv2.resize(soft, (w, h), interpolation=cv2.INTER_LINEAR)
    else:
        k = 2 * int(np.floor(radius)) + 1
        soft = cv2.GaussianBlur(core.astype(np.float32), (k, k), radius / 2.0, borderType=cv2.BORDER_CONSTANT)
    # The square kernel's corners (and resampling) reach a little further than the radius: cut the
    # (tiny, < 0.05) tail so that the result is exactly zero outside the mask eroded by erode_px.
    inner = (dist > erode_px) if erode_px > 0.0 else binary.astype(bool)
    soft *= inner
    np.clip(soft, 0.0, 1.0, out=soft)
    return soft


def combine_min(masks: Sequence[np.ndarray]) -> np.ndarray:
    """Pixel-wise minimum of ``(H, W) float32`` masks (all the same shape) -> ``(H, W) float32``."""
    if len(masks) == 0:
        raise ValueError("combine_min needs at least one mask")
    out = np.array(masks[0], dtype=np.float32, copy=True)
    for m in masks[1:]:
        np.minimum(out, np.asarray(m, dtype=np.float32), out=out)
    return out


# --- mesh areas -------------------------------------------------------------------------------

def _split_plane(shape: tuple[int, int], mesh: np.ndarray) -> np.ndarray:
    """``(H, W) float32``: 1 on the forehead side of the nose-base line, 0 on the chin side.

    The line passes through landmark 2 (bottom of the nose, between the nostrils) parallel to the
    line joining the outer eye corners (33 -> 263), so it follows head roll. Anti-aliased over 1 px.
    """
    p = mesh[2]
    d = mesh[263] - mesh[33]
    n = np.array([d[1], -d[0]], dtype=np.float64)  # perpendicular to the eye line
    norm = float(np.hypot(*n))
    if norm < 1e-6:
        n = np.array([0.0, -1.0])
    else:
        n /= norm
    if np.dot(mesh[10] - p, n) < 0:  # point n towards the forehead (landmark 10)
        n = -n
    h, w = int(shape[0]), int(shape[1])
    xs = (np.arange(w, dtype=np.float32) - np.float32(p[0])) * np.float32(n[0])
    ys = (np.arange(h, dtype=np.float32) - np.float32(p[1])) * np.float32(n[1])
    s = ys[:, None] + xs[None, :]
    return np.clip(s + 0.5, 0.0, 1.0, out=s)


def area_mask(shape: tuple[int, int], mesh: np.ndarray, areas: Sequence[str]) -> np.ndarray:
    """Union of named mesh areas (``swapline.config.MASK_AREAS``) -> ``(H, W) float32`` 0..1.

    ``mesh``: ``(468, 2)`` float FaceMesh points in crop pixels. Areas:

    - ``face``: the FACE_OVAL polygon.
    - ``upper-face`` / ``lower-face``: the face oval split by the line through landmark 2 (base of
      the nose) parallel to the outer-eye-corner line; upper holds forehead, eyes, brows and the
      nose, lower holds the mouth and chin. The two add up to ``face`` exactly.
    - ``eyes``: both eye loops, grown by 15 % of each eye's width (lids and lashes).
    - ``brows``: convex hull of each brow's points, grown by 10 % of the brow's width.
    - ``nose``: convex hull of the nose points.
    - ``mouth``: the LIPS_OUTER polygon.
    """
    mesh = np.asarray(mesh, dtype=np.float64).reshape(-1, 2)
    if mesh.shape[0] < topo.N_POINTS:
        raise ValueError(f"area_mask needs a (468, 2) mesh, got {mesh.shape}")
    h, w = int(shape[0]), int(shape[1])
    out = np.zeros((h, w), dtype=np.float32)
    oval = None
    for area in dict.fromkeys(areas):
        if area not in MASK_AREAS:
            raise ConfigError(f"unknown mask area {area!r}: use one of " + ", ".join(MASK_AREAS))
        if area in ("face", "upper-face", "lower-face"):
            if oval is None:
                oval = polygon_mask(shape, mesh[topo.as_array(topo.FACE_OVAL)])
            if area == "face":
                m = oval
            else:
                plane = _split_plane(shape, mesh)
                m = oval * plane if area == "upper-face" else oval * (1.0 - plane)
        elif area == "eyes":
            canvas = np.zeros((h, w), dtype=np.uint8)
            for loop in (topo.LEFT_EYE, topo.RIGHT_EYE):
                pts = mesh[topo.as_array(loop)]
                width = float(np.ptp(pts[:, 0]))
                np.maximum(canvas, _draw_polygons(shape, [pts], dilate_px=0.15 * width), out=canvas)
            m = _to_float(canvas)
        elif area == "brows":
            canvas = np.zeros((h, w), dtype=np.uint8)
            for group in (topo.LEFT_BROW, topo.RIGHT_BROW):
                pts = mesh[topo.as_array(group)].astype(np.float32)
                hull = cv2.convexHull(pts).reshape(-1, 2)
                width = float(np.ptp(pts[:, 0]))
                np.maximum(canvas, _draw_polygons(shape, [hull], dilate_px=0.10 * width), out=canvas)
            m = _to_float(canvas)
        elif area == "nose":
            m = hull_mask(shape, mesh[topo.as_array(topo.NOSE)])
        else:  # mouth
            m = polygon_mask(shape, mesh[topo.as_array(topo.LIPS_OUTER)])
        np.maximum(out, m, out=out)
    return out
