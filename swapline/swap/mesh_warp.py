"""Piecewise-affine warping of a triangle mesh as one dense remap.

Instead of warping triangle by triangle, the triangles of the *destination* mesh are drawn as
ids into an index map (far to near, so the nearest surface wins), every triangle's affine is
solved at once, and each pixel looks up its triangle's affine to get its source coordinates.
One ``cv2.remap`` then moves all the pixels.
"""

from __future__ import annotations

import cv2
import numpy as np

_SHIFT = 4  # sub-pixel bits for drawing triangles


def fit_similarity_3d(src: np.ndarray, dst: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Least-squares 3-D similarity (Umeyama) taking ``src`` onto ``dst``.

    Args:
        src: ``(N, 3)`` points.
        dst: ``(N, 3)`` points.
    Returns:
        ``(scale, R (3, 3), t (3,))`` with ``dst ≈ scale · R @ p + t`` (a proper rotation).
    """
    src = np.asarray(src, np.float64)
    dst = np.asarray(dst, np.float64)
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s, d = src - mu_s, dst - mu_d
    cov = d.T @ s / len(src)
    u, sig, vt = np.linalg.svd(cov)
    sign = np.ones(3)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[2] = -1.0
    rot = u @ np.diag(sign) @ vt
    var = (s**2).sum() / len(src)
    scale = float((sig * sign).sum() / var) if var > 1e-12 else 1.0
    t = mu_d - scale * rot @ mu_s
    return scale, rot, t


def triangle_affines(dst_tris: np.ndarray, src_tris: np.ndarray) -> np.ndarray:
    """The affine of every triangle pair, solved at once (closed-form 3 × 3 inverse).

    Args:
        dst_tris: ``(T, 3, 2)`` triangle corners where pixels will be written.
        src_tris: ``(T, 3, 2K)`` matching corners where they are read from (K ≥ 1 point sets
            side by side share one solve).
    Returns:
        ``(T, 3, 2K) float32`` ``A`` such that ``[x, y, 1] @ A[t]`` is the source point of the
        destination pixel (x, y) in triangle t. Degenerate triangles get the shift of their
        first corner (a safe constant map).
    """
    d = np.asarray(dst_tris, np.float64)
    s = np.asarray(src_tris, np.float64)
    x0, y0 = d[:, 0, 0], d[:, 0, 1]
    x1, y1 = d[:, 1, 0], d[:, 1, 1]
    x2, y2 = d[:, 2, 0], d[:, 2, 1]
    det = x0 * (y1 - y2) + x1 * (y2 - y0) + x2 * (y0 - y1)
    ok = np.abs(det) > 1e-6
    safe = np.where(ok, det, 1.0)
    # inverse of [[x0, y0, 1], [x1, y1, 1], [x2, y2, 1]] by cofactors
    inv = np.empty((len(d), 3, 3))
    inv[:, 0] = np.stack([y1 - y2, y2 - y0, y0 - y1], 1)
    inv[:, 1] = np.stack([x2 - x1, x0 - x2, x1 - x0], 1)
    inv[:, 2] = np.stack([x1 * y2 - x2 * y1, x2 * y0 - x0 * y2, x0 * y1 - x1 * y0], 1)
    inv /= safe[:, None, None]
    out = inv @ s
    if not ok.all():
        bad = ~ok
        out[bad] = 0.0
        out[bad, 2, :] = s[bad, 0, :] - np.tile(d[bad, 0, :], s.shape[2] // 2)
        out[bad, 0, 0::2] = 1.0
        out[bad, 1, 1::2] = 1.0
    return out.astype(np.float32)


def rasterize_ids(tris: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Draw triangles into an index map, later triangles over earlier ones.

    Args:
        tris: ``(T, 3, 2)`` corners in pixel coordinates of the map, in drawing order.
        shape: ``(H, W)`` of the map.
    Returns:
        ``(H, W) int32``: 0 where no triangle is, else 1 + the index of the last triangle drawn.
    """
    ids = np.zeros(shape, np.int32)
    fixed = np.round(np.asarray(tris, np.float64) * (1 << _SHIFT)).astype(np.int32)
    for i, tri in enumerate(fixed):
        cv2.fillConvexPoly(ids, tri, i + 1, cv2.LINE_8, _SHIFT)
    return ids


def dense_maps(ids: np.ndarray, affines: np.ndarray, scale: float | tuple[float, float] = 1.0) -> np.ndarray:
    """Source coordinates of every pixel of an index map, for one or more affine sets.

    Args:
        ids: ``(H, W) int32`` from :func:`rasterize_ids` (0 = no triangle).
        affines: ``(T, 3, 2K) float32``: K affine sets side by side (from
            :func:`triangle_affines`, concatenated on the last axis), in output pixel units.
        scale: the map's pixels per output pixel, one number or ``(x, y)``; coordinates are in
            output pixels, sampled at the map's pixel centres, so the maps can be resized to
            the output size (give the exact per-axis ratios of that resize).
    Returns:
        ``(2K, H, W) float32``: map_x, map_y of the first set, then of the second, ... Pixels
        with no triangle keep their own position (the identity map).
    """
    h, w = ids.shape
    k2 = affines.shape[2]
    # one table row per triangle id (row 0: the identity), one column per coefficient
    table = np.zeros((3, k2, len(affines) + 1), np.float32)
    table[0, 0::2, 0] = 1.0
    table[1, 1::2, 0] = 1.0
    table[:, :, 1:] = np.asarray(affines, np.float32).transpose(1, 2, 0)
    sx, sy = (scale, scale) if np.isscalar(scale) else scale
    xs = (np.arange(w, dtype=np.float32) + 0.5) * np.float32(1.0 / sx) - 0.5
    ys = (np.arange(h, dtype=np.float32) + 0.5) * np.float32(1.0 / sy) - 0.5
    out = np.empty((k2, h, w), np.float32)
    term = np.empty((h, w), np.float32)
    rows = ys[:, None]
    # np.take on 1-D tables is several times faster than fancy indexing; written into buffers
    # ('clip' lets it write straight into them: the ids are always in the table)
    for k in range(k2):
        o = out[k]
        np.take(table[0, k], ids, out=o, mode="clip")
        o *= xs
        np.take(table[1, k], ids, out=term, mode="clip")
        term *= rows
        o += term
        np.take(table[2, k], ids, out=term, mode="clip")
        o += term
    return out


def ring_strip(k: int) -> np.ndarray:
    """Triangles ``(2K, 3) int32`` joining a closed loop of K points (indices 0..K-1) to an outer
    loop of K points (indices K..2K-1) that follows it one to one."""
    i = np.arange(k)
    j = (i + 1) % k
    a = np.stack([i, j, j + k], 1)
    b = np.stack([i, j + k, i + k], 1)
    return np.concatenate([a, b]).astype(np.int32)


def expand_loop(loop: np.ndarray, factor: float) -> np.ndarray:
    """Push a closed loop ``(K, 2)`` away from its centroid by ``factor`` (1.3 = 30 % larger)."""
    c = loop.mean(0)
    return (loop - c) * factor + c
