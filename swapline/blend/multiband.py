"""Multi-band (Laplacian pyramid) blending of the face into the target crop.

Each band of the face-target difference crosses the seam over a width matched to its scale:
the colour and lighting difference (coarsest band) over about ``band * face_width`` pixels, fine
detail over the mask's own feather, so there is neither a visible edge nor a ghost of the face's
texture outside the mask. The pyramid is built once, on the difference ``D = face - target``
(zero where ``mask == 0``, so the face's pixels outside the mask never count): the Laplacian is
linear, so ``out = target + collapse_l(G_l(mask) * L_l(D))`` is the classic two-pyramid blend of
``face`` (taken as ``target`` outside the mask) over ``target``.

Guarantees (tested): ``face == target`` gives ``target`` bit for bit; pixels farther than
:func:`multiband_reach` from every ``mask > 0`` pixel are ``target`` bit for bit (the spread is cut
there; what is cut is below 1e-3 of the difference); where the mask is 1 and no ``mask < 1`` pixel
is within the reach the result is ``face`` within 1 grey level.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

WIDTH_PER_SCALE = 1.75  # 10-90 % width of a step's coarsest transition / 2**levels (measured)
MAX_LEVELS = 6
FINE_LEVELS = 1  # the finest octaves cross with the mask itself (their bands are below its ramp)
STRIP_ROWS = 64  # full-size rows per band of the last step (its temporaries stay in cache)
SOLID = 1.0 - 1.0 / 1024.0  # a mask this high gives the face after rounding: counts as 1
LIVE = 0.49  # a coarse cell below this (in grey levels) cannot change a rounded non-ramp pixel


def multiband_levels(face_width: float, band: float = 0.08) -> int:
    """Pyramid levels whose coarsest transition is about ``band * face_width`` pixels wide.

    The coarsest band of ``n`` levels blends a colour step over ``~WIDTH_PER_SCALE * 2**n``
    pixels (10-90 %); ``n`` is the nearest in log scale, clipped to ``1..MAX_LEVELS``.
    """
    scale = max(float(band) * float(face_width) / WIDTH_PER_SCALE, 1.0)
    return int(min(max(round(math.log2(scale)), 1), MAX_LEVELS))


def _first_level(levels: int) -> int:
    """The pyramid level the coarse correction lives on: ``1..FINE_LEVELS``, below ``levels``."""
    return max(1, min(FINE_LEVELS, levels - 1))


def multiband_reach(face_width: float, band: float = 0.08, levels: int | None = None) -> int:
    """How far, in pixels, :func:`multiband_blend` can change the target beyond ``mask > 0``.

    Distances are chessboard distances (``max(|dx|, |dy|)``): a pixel farther than this from every
    ``mask > 0`` pixel is left bit-identical to the target (and one farther than this from every
    ``mask < 1`` pixel is the face). The coarse correction, on pyramid level ``s``
    (:func:`_first_level`), is cut at ``2 ** (levels + 1) - 1`` pixels; the bilinear upsampling by
    ``2 ** s`` spreads it by ``2 ** s + (2 ** s - 1) // 2`` more. ``levels``: as passed to
    :func:`multiband_blend` (``None``: :func:`multiband_levels`).
    """
    n = multiband_levels(face_width, band) if levels is None else max(int(levels), 1)
    step = 2 ** _first_level(n)
    return 2 ** (n + 1) - 1 + step + (step - 1) // 2


def _near(binary: np.ndarray, step: int, cells: int) -> np.ndarray:
    """``(ceil(h/step), ceil(w/step)) uint8`` 0/1: the ``step`` x ``step`` blocks of ``binary``
    ``(h, w) uint8`` within ``cells`` blocks (chessboard) of a block that holds a 1.

    Block ``j`` starts at pixel ``step * j``, so a 1 here is within ``step * (cells + 1) - 1``
    pixels of a 1 of ``binary``.
    """
    any_block = cv2.dilate(binary, np.ones((step, step), np.uint8), anchor=(0, 0))
    blocks = np.ascontiguousarray(any_block[::step, ::step])
    return cv2.dilate(blocks, cv2.getStructuringElement(cv2.MORPH_RECT, (2 * cells + 1, 2 * cells + 1)))


def _gaussian_pyramid(image: np.ndarray, levels: int) -> list[np.ndarray]:
    """``[image, pyrDown(image), ...]``: ``levels + 1`` arrays of ``image``'s type and channels."""
    pyramid = [image]
    for _ in range(levels):
        pyramid.append(cv2.pyrDown(pyramid[-1]))
    return pyramid


def _coarse_correction(diff: np.ndarray, weight: np.ndarray, levels: int) -> np.ndarray:
    """Multi-band minus alpha blend of ``diff`` on one pyramid level, from ``levels`` levels below.

    ``diff``: ``(h, w, 3) float32``; ``weight``: ``(h, w) float32`` (the mask on the same level).
    Returns ``collapse_l(G_l(weight) * L_l(diff)) - weight * diff`` ``(h, w, 3) float32``, which is
    ``pyrUp(R_1) - weight * pyrUp(G_1(diff))`` with ``R_1`` the blend collapsed down to level 1.
    Zero where ``diff`` is 0 far enough around; about 0 where ``weight`` is 1 far enough around.
    """
    if levels < 1:
        return np.zeros_like(diff)
    gauss = _gaussian_pyramid(diff, levels)
    weights = [cv2.cvtColor(m, cv2.COLOR_GRAY2BGR) for m in _gaussian_pyramid(weight, levels)]
    acc = cv2.multiply(gauss[levels], weights[levels])
    for lev in range(levels - 1, 0, -1):
        size = gauss[lev].shape[1::-1]
        band = cv2.pyrUp(gauss[lev + 1], dstsize=size)
        cv2.subtract(gauss[lev], band, dst=band)  # Laplacian band ``lev``
        cv2.multiply(band, weights[lev], dst=band)
        acc = cv2.add(band, cv2.pyrUp(acc, dstsize=size), dst=band)
    size = diff.shape[1::-1]
    smooth = cv2.pyrUp(gauss[1], dstsize=size)
    cv2.multiply(smooth, weights[0], dst=smooth)
    return cv2.subtract(cv2.pyrUp(acc, dstsize=size), smooth)


def _snap(mask: np.ndarray) -> np.ndarray:
    """``mask`` ``(h, w) float32`` with the values above :data:`SOLID` set to 1 (new array)."""
    return cv2.max(mask, cv2.threshold(mask, SOLID, 1.0, cv2.THRESH_BINARY)[1])


def _finish(face: np.ndarray, target: np.ndarray, mask: np.ndarray, coarse: np.ndarray,
            need: np.ndarray, out: np.ndarray) -> None:
    """``out = blend(face, target, snap(mask)) + upsample(coarse)``, rounded, where it can differ
    from what ``out`` holds.

    ``face``, ``target``, ``out``: ``(h, w, 3) uint8``; ``mask``: ``(h, w) float32``; ``coarse``:
    ``(hs, ws, 3) float32`` on the pyramid level of ``step = 2 ** s`` (``hs = ceil(h / step)``).
    ``out`` holds ``face`` where ``mask > 0`` and ``target`` elsewhere, which is already the
    answer where the snapped mask (:func:`_snap`) is 0 or 1 and ``upsample(coarse)`` is below
    :data:`LIVE`; ``need``: ``(hs, ws) uint8``, the cells where it may not be. Computed in bands of
    :data:`STRIP_ROWS` rows (their temporaries stay in cache), each from its first to its last
    needed cell. ``upsample``: bilinear by exactly ``step``, on a window of ``coarse`` with one
    cell of context on each side, which gives the same pixels as upsampling all of it.
    """
    h, w = mask.shape
    hs, ws = coarse.shape[:2]
    step = -(-h // hs)
    cells = max(STRIP_ROWS // step, 1)
    for c0 in range(0, hs, cells):
        c1 = min(c0 + cells, hs)
        columns = np.flatnonzero(cv2.reduce(need[c0:c1], 0, cv2.REDUCE_MAX))
        if columns.size == 0:
            continue
        ia, ib = int(columns[0]), int(columns[-1]) + 1
        ja, jb, wa, wb = max(c0 - 1, 0), min(c1 + 1, hs), max(ia - 1, 0), min(ib + 1, ws)
        up = cv2.resize(coarse[ja:jb, wa:wb], None, fx=step, fy=step, interpolation=cv2.INTER_LINEAR)
        y0, y1, x0, x1 = c0 * step, min(c1 * step, h), ia * step, min(ib * step, w)
        up = up[y0 - ja * step:y1 - ja * step, x0 - wa * step:x1 - wa * step]
        sub = (slice(y0, y1), slice(x0, x1))
        m = _snap(mask[sub])
        blend = cv2.blendLinear(face[sub].astype(np.float32), target[sub].astype(np.float32), m, 1.0 - m)
        cv2.add(blend, up, dst=out[sub], dtype=cv2.CV_8U)  # rounds, saturates


def multiband_blend(
    face: np.ndarray,
    target: np.ndarray,
    mask: np.ndarray,
    face_width: float,
    band: float = 0.08,
    levels: int | None = None,
) -> np.ndarray:
    """Laplacian-pyramid blend of ``face`` over ``target`` with ``mask``.

    ``face``, ``target``: ``(h, w, 3) uint8`` BGR crops of the same shape (``face`` is used only
    where ``mask > 0``); ``mask``: ``(h, w) float32`` 0..1, feathered: its ramp is the transition
    of the finest detail. ``face_width``: the face's width in pixels; ``band``: width of the
    widest (lowest-frequency) transition as a fraction of ``face_width``; ``levels``: pyramid
    levels (``None``: :func:`multiband_levels`; fewer when the region is too small; 1 is the
    plain alpha blend).

    The colour difference spreads up to :func:`multiband_reach` pixels *outside* ``mask > 0``:
    give a crop with that margin around the mask, and count the margin as changed when pasting.
    Only the bounding box of ``mask > 0`` grown by the reach is computed. Returns a new
    ``(h, w, 3) uint8``: ``target`` bit for bit beyond the reach and wherever ``face == target``;
    ``face`` within 1 where the mask is 1 with no ``mask < 1`` pixel within the reach.
    """
    mask = np.asarray(mask, dtype=np.float32)
    out = target.copy()
    support = (mask > 0).view(np.uint8)
    x, y, bw, bh = cv2.boundingRect(support)
    if bw == 0 or bh == 0:
        return out
    n = multiband_levels(face_width, band) if levels is None else max(int(levels), 1)
    reach = multiband_reach(face_width, band, n)
    H, W = mask.shape
    x0, y0 = max(x - reach, 0), max(y - reach, 0)
    x1, y1 = min(x + bw + reach, W), min(y + bh + reach, H)
    region = (slice(y0, y1), slice(x0, x1))
    f8, t8, m = face[region], target[region], mask[region]
    o8 = out[region]
    sup = np.ascontiguousarray(support[region])
    cv2.copyTo(f8, sup, o8)  # the face where mask > 0: D = face - target is 0 outside
    n = min(n, max(int(math.log2(min(y1 - y0, x1 - x0))), 1))
    s = _first_level(n)
    step = 2 ** s
    need = _near(cv2.bitwise_and(sup, (m <= SOLID).view(np.uint8)), step, 0)  # the ramp
    if n > s:
        # D on level s, from the 8-bit halves (their rounding cancels where face == target).
        fs, ts, ms = o8, t8, m
        for _ in range(s):
            fs, ts, ms = cv2.pyrDown(fs), cv2.pyrDown(ts), cv2.pyrDown(ms)
        coarse = _coarse_correction(cv2.subtract(fs, ts, dtype=cv2.CV_32F), ms, n - s)
        coarse = cv2.copyTo(coarse, _near(sup, step, 2 ** (n + 1 - s) - 1))  # cut at the reach
        # Pixels whose cells around are all below LIVE keep what ``out`` holds, once rounded.
        live = cv2.bitwise_not(cv2.inRange(coarse, (-LIVE,) * 3, (LIVE,) * 3))
        cv2.bitwise_or(need, cv2.dilate(live, np.ones((3, 3), np.uint8)), dst=need)
    else:
        coarse = np.zeros((*need.shape, 3), np.float32)
    _finish(f8, t8, m, coarse, need, o8)
    return out
