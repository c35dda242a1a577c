"""Poisson (gradient-domain) blending of the face into the target crop, solved at low resolution.

The Poisson solution with the face's gradients as guidance and the target on the boundary is
``face + c`` where the correction ``c`` is *harmonic* inside the region (``Laplace(c) = 0``) and
equals ``target - face`` on its boundary. ``c`` is smooth, so it is solved on a grid of at most
``max_side`` pixels (default 96) by a coarse-to-fine cascade of Jacobi sweeps (each level starts
from the upsampled solution of the level below), then upsampled bilinearly. The result is
alpha-composited with ``mask`` itself (pass a feathered mask), so the seam ends inside the
feather: ``out = target + mask * (face + c - target)``.
"""

from __future__ import annotations

import cv2
import numpy as np

_CROSS = np.array([[0.0, 0.25, 0.0], [0.25, 0.0, 0.25], [0.0, 0.25, 0.0]], dtype=np.float32)
_COARSEST = 6


def _jacobi(values: np.ndarray, fixed: np.ndarray, boundary: np.ndarray, iters: int) -> np.ndarray:
    """``iters`` Jacobi sweeps of Laplace's equation; ``fixed`` (uint8) cells keep ``boundary``.

    The crop border is a mirror (zero normal derivative), so a region touching it is not pulled
    towards anything there.
    """
    for _ in range(iters):
        values = cv2.filter2D(values, -1, _CROSS, borderType=cv2.BORDER_REFLECT)
        cv2.copyTo(boundary, fixed, values)
    return values


def _solve(boundary: np.ndarray, fixed: np.ndarray, iters: int) -> np.ndarray:
    """Harmonic interpolation of ``boundary`` (``(h, w, 3) float32``, valid where ``fixed``).

    Coarse-to-fine: the free cells start from the solution of a half-size problem (a cell is fixed
    there if any of its children is), then get ``iters`` Jacobi sweeps.
    """
    h, w = fixed.shape
    fixed_f = fixed.astype(np.float32)
    if min(h, w) > _COARSEST and not fixed.all():
        size = ((w + 1) // 2, (h + 1) // 2)
        # Average the boundary from the cells that touch the free region (the only ones that
        # matter at this level); cells far outside count only where nothing else does.
        free = (fixed == 0).view(np.uint8)
        ring = (cv2.dilate(free, np.ones((3, 3), np.uint8)) > 0) & (fixed > 0)
        wts = fixed_f * np.float32(1e-3) + ring
        weight = cv2.resize(wts, size, interpolation=cv2.INTER_AREA)
        acc = cv2.resize(boundary * wts[..., None], size, interpolation=cv2.INTER_AREA)
        fixed_c = (cv2.resize(fixed_f, size, interpolation=cv2.INTER_AREA) > 0).astype(np.uint8)
        boundary_c = acc / np.maximum(weight, 1e-9)[..., None]
        coarse = _solve(boundary_c, fixed_c, iters)
        init = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_LINEAR)
    else:
        # No coarser level: start from the mean boundary value.
        mean = (boundary * fixed_f[..., None]).sum(axis=(0, 1)) / max(float(fixed_f.sum()), 1.0)
        init = np.empty_like(boundary)
        init[:] = mean.astype(np.float32)
    cv2.copyTo(boundary, fixed, init)
    return _jacobi(init, fixed, boundary, iters)


def _robust_boundary(boundary: np.ndarray, fixed: np.ndarray) -> np.ndarray:
    """Clamp outliers among the boundary values next to the free region (low-res grid).

    ``boundary``: ``(h, w, 3) float32``; ``fixed``: ``(h, w) uint8``. The values on the ring of
    fixed cells touching free ones are fitted, per channel, by a quadratic in ``x, y`` with
    iteratively reweighted least squares (Tukey biweight, scale = 1.4826 MAD); values farther than
    2.5 scales + 4 levels from the fit are clamped to that band, cells the biweight rejects
    (beyond 4.685 scales in some channel) take the fitted value. A stretch of hair, background or
    shadow on part of the boundary then does not bleed a dark or bright patch into the face,
    while a smooth change of lighting along the boundary is kept.
    """
    free = (fixed == 0).view(np.uint8)
    ring = (cv2.dilate(free, np.ones((3, 3), np.uint8)) > 0) & (fixed > 0)
    ys, xs = np.nonzero(ring)
    if len(ys) < 16:
        return boundary
    h, w = fixed.shape
    x = xs * (2.0 / max(w - 1, 1)) - 1.0
    y = ys * (2.0 / max(h - 1, 1)) - 1.0
    design = np.stack([np.ones_like(x), x, y, x * x, x * y, y * y], axis=1)
    values = boundary[ys, xs].astype(np.float64)
    weight = np.ones(len(ys))
    for _ in range(6):
        sw = np.sqrt(weight)[:, None]
        coef = np.linalg.lstsq(design * sw, values * sw, rcond=None)[0]
        fit = design @ coef
        resid = values - fit
        scale = 1.4826 * np.median(np.abs(resid), axis=0) + 1.0
        u = np.abs(resid) / (4.685 * scale)
        weight = np.where(u < 1.0, (1.0 - u * u) ** 2, 0.0).min(axis=1) + 1e-6
    band = 2.5 * scale + 4.0
    robust = np.clip(values, fit - band, fit + band)
    outlier = weight < 1e-3  # rejected by the biweight in some channel: take the fit
    robust[outlier] = fit[outlier]
    out = boundary.copy()
    out[ys, xs] = robust.astype(np.float32)
    return out


def poisson_blend(
    face: np.ndarray,
    target: np.ndarray,
    mask: np.ndarray,
    max_side: int = 96,
    iters: int = 30,
    robust: bool = True,
) -> np.ndarray:
    """Gradient-domain blend of ``face`` into ``target`` inside ``mask > 0.5``.

    ``face``, ``target``: ``(H, W, 3) uint8`` BGR crops of the same shape; ``mask``: ``(H, W)
    float32`` 0..1, usually feathered: the Poisson region is ``mask > 0.5`` and ``mask`` is the
    alpha of the final composite. ``max_side``: the correction field is solved on a grid whose long
    side is at most this; ``iters``: Jacobi sweeps per pyramid level. ``robust``: clamp outliers among the
    boundary differences to their neighbours' level first (see ``_robust_boundary``), which keeps
    hair or background at the edge from tinting the face. Only the bounding box of
    ``mask > 0`` is computed. Returns a new ``(H, W, 3) uint8``; outside that box it equals
    ``target``.
    """
    mask = np.asarray(mask, dtype=np.float32)
    out = target.copy()
    support = (mask > 0).view(np.uint8)
    x, y, w, h = cv2.boundingRect(support)
    if w == 0 or h == 0:
        return out
    # One cell of margin so that the region has an outside ring even at the box edge.
    pad = 2
    H, W = mask.shape
    x0, y0 = max(x - pad, 0), max(y - pad, 0)
    x1, y1 = min(x + w + pad, W), min(y + h + pad, H)
    m = mask[y0:y1, x0:x1]
    inside = m > 0.5
    if not inside.any():
        return out
    t8 = target[y0:y1, x0:x1]
    diff = cv2.subtract(t8, face[y0:y1, x0:x1], dtype=cv2.CV_32F)
    hh, ww = inside.shape
    scale = min(1.0, float(max_side) / max(hh, ww))
    size = (max(1, int(round(ww * scale))), max(1, int(round(hh * scale))))
    outside = (~inside).astype(np.float32)
    if outside.sum() == 0:
        # The region covers the whole crop: no boundary, the best constant is the mean difference.
        corr = np.broadcast_to(diff.mean(axis=(0, 1)).astype(np.float32), diff.shape)
    else:
        weight = cv2.resize(outside, size, interpolation=cv2.INTER_AREA)
        acc = cv2.resize(diff * outside[..., None], size, interpolation=cv2.INTER_AREA)
        fixed = (weight > 0).astype(np.uint8)
        boundary = acc / np.maximum(weight, 1e-6)[..., None]
        if robust:
            boundary = _robust_boundary(boundary, fixed)
        corr_lo = _solve(boundary, fixed, iters)
        corr = cv2.resize(corr_lo, (ww, hh), interpolation=cv2.INTER_LINEAR)
    # out = t + m * (f + corr - t) = t + m * (corr - diff); cv2.add rounds and saturates.
    delta = cv2.subtract(corr, diff)
    delta *= m[..., None]
    out[y0:y1, x0:x1] = cv2.add(t8, delta, dtype=cv2.CV_8U)
    return out
