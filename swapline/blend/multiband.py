"""Multi-band (Laplacian pyramid) blending of the face into the target crop.

Each band of the face-target difference crosses the seam over a width matched to its scale: the
colour and lighting difference (the coarsest band) over about ``band * face_width`` pixels, fine
detail over the mask's own feather, so there is neither a visible edge nor a ghost of the face's
texture outside the mask. One pyramid is built, of the difference ``D = face - target`` (the
Laplacian is linear, so ``target + collapse_l(G_l(mask) * L_l(D))`` is the classic two-pyramid
blend). ``D`` is known only where ``mask > 0`` (the face's pixels outside are never used); below
full size it is extended past the mask by push-pull (each pyramid level averages ``D`` over the
known part of its footprint and takes the rest from the level below), so that a colour step
between face and target has no edge of its own at the mask border: it crosses with the coarse
mask ``G_n(mask)`` only.

At full size, ``out = target + mask * (D - up(G_1)) + up(R_1)`` with ``G_1`` the extended ``D``
on pyramid level 1 (half size), ``R_1`` the blend collapsed down to level 1 and ``up`` a bilinear
upsampling: the textbook collapse but for that upsampling. The full-size work is one pass over
the rows and columns where the mask ramps or the correction ``R_1 - mask * G_1`` reaches half a
grey level; elsewhere the result is the face or the target as they stand.

Guarantees (tested): ``face == target`` gives ``target`` bit for bit; pixels farther than
:func:`multiband_reach` from every ``mask > 0`` pixel are ``target`` bit for bit (the blend's far
tail, about 1 % of the difference there, is tapered to 0); where the mask is 1 with no
``mask < 1`` pixel within the reach the result is the face within 1 grey level.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

WIDTH_PER_SCALE = 2.1  # 10-90 % width of a colour step's transition / 2**levels (measured)
MAX_LEVELS = 6
STRIP_ROWS = 64  # full-size rows per band of the last pass (its temporaries stay in cache)
SOLID = 1.0 - 1.0 / 1024.0  # a mask above this gives the face after rounding: snapped to 1
LIVE = 0.48  # a correction below this (grey levels, with float slack) leaves a rounded pixel as is
_MIXED = 1.0 - (1.0 - SOLID) / 32.0  # level-1 mask above this: its 2x2 block is all above SOLID
_TINY = float(np.finfo(np.float32).smallest_subnormal)  # inRange's lower bound for "> 0"


def multiband_levels(face_width: float, band: float = 0.08) -> int:
    """Pyramid levels whose coarsest transition is about ``band * face_width`` pixels wide.

    ``n`` levels blend a colour step over ``~WIDTH_PER_SCALE * 2**n`` pixels (10-90 %); ``n`` is
    the nearest in log scale, clipped to ``1..MAX_LEVELS`` (1 is the plain alpha blend).
    """
    scale = max(float(band) * float(face_width) / WIDTH_PER_SCALE, 1.0)
    return int(min(max(round(math.log2(scale)), 1), MAX_LEVELS))


def multiband_reach(face_width: float, band: float = 0.08, levels: int | None = None) -> int:
    """How far, in pixels, :func:`multiband_blend` can change the target beyond ``mask > 0``.

    A pixel farther than this (chessboard distance, ``max(|dx|, |dy|)``) from every ``mask > 0``
    pixel is left bit-identical to the target. It is ``2 ** (levels + 1) + 2`` (0 for one level):
    the blend is tapered to 0 at the level-1 pixels ``2 ** levels - 1`` away from one whose 5x5
    ``pyrDown`` footprint holds a ``mask > 0`` pixel (``2 ** (levels + 1)`` full-size pixels at
    most), and the bilinear upsampling spreads it by 2 more. ``levels``: as passed to
    :func:`multiband_blend` (``None``: :func:`multiband_levels`).
    """
    n = multiband_levels(face_width, band) if levels is None else int(levels)
    return 2 ** (n + 1) + 2 if n >= 2 else 0


def _snap(mask: np.ndarray) -> np.ndarray:
    """``mask`` ``(h, w) float32`` with the values above :data:`SOLID` set to 1 (a new array)."""
    return cv2.max(mask, cv2.threshold(mask, SOLID, 1.0, cv2.THRESH_BINARY)[1])


def _gaussian_pyramid(image: np.ndarray, levels: int) -> list[np.ndarray]:
    """``[image, pyrDown(image), ...]``: ``levels + 1`` arrays of ``image``'s type and channels."""
    pyramid = [image]
    for _ in range(levels):
        pyramid.append(cv2.pyrDown(pyramid[-1]))
    return pyramid


def _gray3(image: np.ndarray) -> np.ndarray:
    """``(h, w) float32`` -> ``(h, w, 3) float32``, the channel repeated."""
    return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)


def _blend_pyramid(diff: np.ndarray, cover: np.ndarray, weight: np.ndarray,
                   levels: int) -> tuple[np.ndarray, np.ndarray]:
    """Push-pull extension and multi-band blend of ``diff`` on one pyramid level.

    ``diff``: ``(h, w, 3) float32``, the difference weighted by ``cover`` ``(h, w) float32`` (the
    share of the pixel's footprint where it is known; 0 elsewhere); ``weight``: ``(h, w)
    float32``, the mask on this level. Over ``levels`` levels below: the coarsest extended level
    is ``G(diff) / G(cover)`` and each finer one ``G(diff) + (1 - G(cover)) * pyrUp(coarser)``
    (its known part, the rest from the level below); its Laplacian bands are blended with the
    mask's Gaussian pyramid. Returns ``(extended, blended)``, both ``(h, w, 3) float32``: where
    ``cover`` and ``weight`` are 1 far enough around, both are ``diff`` (up to float rounding).
    """
    known = _gaussian_pyramid(diff, levels)
    covers = _gaussian_pyramid(cover, levels)
    weights = _gaussian_pyramid(weight, levels)
    filled = cv2.divide(known[levels], _gray3(cv2.max(covers[levels], 1e-20)))
    filled = cv2.max(cv2.min(filled, (255.0,) * 3), (-255.0,) * 3)  # a mean of differences
    blended = cv2.multiply(filled, _gray3(weights[levels]))
    for lev in range(levels - 1, -1, -1):
        size = known[lev].shape[1::-1]
        up = cv2.pyrUp(filled, dstsize=size)
        band = cv2.subtract(known[lev], cv2.multiply(up, _gray3(covers[lev])))
        filled = cv2.add(up, band)  # known part + uncovered part from below
        cv2.multiply(band, _gray3(weights[lev]), dst=band)
        blended = cv2.add(band, cv2.pyrUp(blended, dstsize=size), dst=band)
    return filled, blended


def _taper(seed: np.ndarray, cells: int) -> np.ndarray:
    """``(h, w) float32``: 1 within ``cells - 2 r`` pixels (chessboard) of a non-zero pixel of
    ``seed`` ``(h, w) uint8``, 0 beyond ``cells``, a ramp between (``r = (cells + 1) // 8``).

    Cuts the blend's far tail (about 1 % of the difference at ``cells`` level-1 pixels, with
    ``cells = 2 ** levels - 1``) without leaving a step of its own.
    """
    r = (cells + 1) // 8
    core = cv2.dilate(seed, cv2.getStructuringElement(cv2.MORPH_RECT, (2 * (cells - r) + 1,) * 2))
    if r == 0:
        return core.astype(np.float32)
    ramp = cv2.boxFilter(core, cv2.CV_32F, (2 * r + 1, 2 * r + 1), borderType=cv2.BORDER_REPLICATE)
    return cv2.min(ramp * np.float32(1.0 + 1e-6), 1.0)  # exactly 1 on the core


def _finish(target: np.ndarray, mask: np.ndarray, extended: np.ndarray, blended: np.ndarray,
            need: np.ndarray, out: np.ndarray) -> None:
    """``out = target + snap(mask) * (out - target - up(extended)) + up(blended)``, rounded, where
    that can differ from what ``out`` holds.

    ``target``: ``(h, w, 3) uint8``; ``out``: ``(h, w, 3) uint8``, holding the face where
    ``mask > 0`` and the target elsewhere (read, then written in place); ``mask``: ``(h, w)
    float32``; ``extended``, ``blended``: ``(ceil(h/2), ceil(w/2), 3) float32`` on pyramid level
    1; ``need``: ``(ceil(h/2), ceil(w/2)) uint8``, non-zero at the 2x2 cells where ``out`` may
    not be the answer already. Done in bands of :data:`STRIP_ROWS` rows (their temporaries stay
    in cache), each from its first to its last needed cell. ``up``: bilinear by exactly 2, on a
    window with one cell of context on each side, which gives the same pixels as upsampling all.
    """
    h, w = mask.shape
    hs, ws = need.shape
    cells = max(STRIP_ROWS // 2, 1)
    for c0 in range(0, hs, cells):
        c1 = min(c0 + cells, hs)
        columns = np.flatnonzero(cv2.reduce(need[c0:c1], 0, cv2.REDUCE_MAX))
        if columns.size == 0:
            continue
        ia, ib = int(columns[0]), int(columns[-1]) + 1
        ja, jb, wa, wb = max(c0 - 1, 0), min(c1 + 1, hs), max(ia - 1, 0), min(ib + 1, ws)
        y0, y1, x0, x1 = 2 * c0, min(2 * c1, h), 2 * ia, min(2 * ib, w)
        crop = (slice(y0 - 2 * ja, y1 - 2 * ja), slice(x0 - 2 * wa, x1 - 2 * wa))
        up_ext = cv2.resize(extended[ja:jb, wa:wb], None, fx=2, fy=2, interpolation=cv2.INTER_LINEAR)[crop]
        up_blend = cv2.resize(blended[ja:jb, wa:wb], None, fx=2, fy=2, interpolation=cv2.INTER_LINEAR)[crop]
        sub = (slice(y0, y1), slice(x0, x1))
        t32 = target[sub].astype(np.float32)
        acc = out[sub].astype(np.float32)
        cv2.subtract(acc, t32, dst=acc)
        cv2.subtract(acc, up_ext, dst=acc)  # the finest band
        cv2.multiply(acc, _gray3(_snap(mask[sub])), dst=acc)
        cv2.add(acc, up_blend, dst=acc)
        cv2.add(acc, t32, dst=out[sub], dtype=cv2.CV_8U)  # rounds, saturates


def multiband_blend(
    face: np.ndarray,
    target: np.ndarray,
    mask: np.ndarray,
    face_width: float,
    band: float = 0.08,
    levels: int | None = None,
) -> np.ndarray:
    """Laplacian-pyramid blend of ``face`` over ``target`` with ``mask``.

    ``face``, ``target``: ``(h, w, 3) uint8`` BGR crops of the same shape (``face`` is read only
    where ``mask > 0``); ``mask``: ``(h, w) float32`` 0..1, feathered: its ramp is the transition
    of the finest detail. ``face_width``: the face's width in pixels; ``band``: width of the
    widest (lowest-frequency) transition as a fraction of ``face_width``; ``levels``: pyramid
    levels (``None``: :func:`multiband_levels`; fewer when the crop is too small for them; 1 is
    the plain alpha blend).

    The colour difference spreads up to :func:`multiband_reach` pixels *outside* ``mask > 0``:
    give a crop with that margin around the mask and count the margin as changed when pasting.
    Only the bounding box of ``mask > 0`` grown by the reach is computed. Returns a new
    ``(h, w, 3) uint8``: ``target`` bit for bit beyond the reach and wherever ``face == target``,
    ``face`` within 1 where the mask is 1 with no ``mask < 1`` pixel within the reach.
    """
    mask = np.asarray(mask, dtype=np.float32)
    if face.shape != target.shape or mask.shape != target.shape[:2]:
        raise ValueError(f"face {face.shape}, target {target.shape} and mask {mask.shape} do not match")
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
    t8, m, o8 = target[region], mask[region], out[region]
    cv2.copyTo(face[region], support[region], o8)  # the face where mask > 0
    n = min(n, max(int(math.log2(min(y1 - y0, x1 - x0))), 1))
    m1 = cv2.pyrDown(m)
    # Level-1 cells whose 2x2 block may hold a mask value strictly between 0 and SOLID.
    need = cv2.inRange(m1, _TINY, _MIXED)
    if n >= 2:
        # D on level 1 (0 where mask == 0), from the 8-bit halves: their rounding cancels where
        # face == target. ``cover``: the share of each footprint where D is known.
        diff1 = cv2.subtract(cv2.pyrDown(o8), cv2.pyrDown(t8), dtype=cv2.CV_32F)
        cover1 = cv2.pyrDown(cv2.threshold(m, 0.0, 1.0, cv2.THRESH_BINARY)[1])
        extended, blended = _blend_pyramid(diff1, cover1, m1, n - 1)
        cv2.multiply(blended, _gray3(_taper((m1 > 0).view(np.uint8), 2 ** n - 1)), dst=blended)
        # Where the correction over alpha stays below LIVE all around (its sum over channels
        # bounds each one), the rounded result is what ``out`` holds already.
        excess = cv2.subtract(blended, cv2.multiply(extended, _gray3(m1)))
        live = cv2.compare(cv2.transform(np.abs(excess), np.ones((1, 3), np.float32)), LIVE, cv2.CMP_GE)
        cv2.bitwise_or(need, live, dst=need)
    else:
        extended = blended = np.zeros((*m1.shape, 3), np.float32)
    need = cv2.dilate(need, np.ones((3, 3), np.uint8))  # a cell's bilinear footprint
    _finish(t8, m, extended, blended, need, o8)
    return out
