"""Detail matching: soften the source face to the target's sharpness.

A sharp source photo pasted into a soft or compressed target looks pasted on, and in video its
extra texture shimmers as the face moves. The warped face is blurred just enough that its fine
detail (mean absolute grey-level gradient over the face) matches the target's.
Faces that are already softer than the target are left as they are (sharpening would invent
detail).
"""

from __future__ import annotations

import cv2
import numpy as np

SIGMAS: tuple[float, ...] = (0.0, 0.5, 0.75, 1.0, 1.4, 2.0, 2.8, 4.0)


def _counts(mask: np.ndarray) -> tuple[int, int, int]:
    """Pixels of ``mask`` ``(H, W) uint8``: all, without the first and last column, without the
    first and last row (what :func:`_grey_energy` sums over)."""
    h, w = mask.shape[:2]
    return (cv2.countNonZero(mask), cv2.countNonZero(mask[:, 1:-1]) if w >= 3 else 0,
            cv2.countNonZero(mask[1:-1]) if h >= 3 else 0)


def _masked_sum(values: np.ndarray, mask: np.ndarray, count: int) -> int:
    """The exact sum of ``values`` ``(H, W) uint8`` over ``mask`` (``count`` pixels): OpenCV's
    masked mean times the count, rounded (the sum is an integer far below 2^53)."""
    return round(cv2.mean(values, mask=mask)[0] * count) if count else 0


def _grey_energy(grey: np.ndarray, mask: np.ndarray, counts: tuple[int, int, int] | None = None) -> float:
    """Mean over ``mask`` ``(H, W) uint8`` of ``|dx| + |dy|`` of ``grey`` ``(H, W) uint8``, the
    central differences of OpenCV's ``Sobel`` with ``ksize=1``: the same float as
    ``cv2.mean(|Sobel dx| + |Sobel dy|, mask)``, in two differences and two means instead of six
    passes. The reflected border makes both differences 0 on the edge columns and rows, so the
    sums run over the inner ones; OpenCV's mean is the exact sum times ``1 / count``.
    ``counts``: :func:`_counts` of ``mask`` (when one mask is measured many times)."""
    h, w = grey.shape[:2]
    n, nx, ny = counts if counts is not None else _counts(mask)
    if n == 0:
        return 0.0
    sx = _masked_sum(cv2.absdiff(grey[:, 2:], grey[:, :-2]), mask[:, 1:-1], nx) if w >= 3 else 0
    sy = _masked_sum(cv2.absdiff(grey[2:], grey[:-2]), mask[1:-1], ny) if h >= 3 else 0
    return (sx + sy) * (1.0 / n)


def _mask8(mask: np.ndarray) -> np.ndarray:
    return mask.view(np.uint8) if mask.dtype == np.bool_ else (np.asarray(mask) > 0.5).astype(np.uint8)


def detail_energy(image: np.ndarray, mask: np.ndarray) -> float:
    """Mean absolute grey-level gradient (horizontal plus vertical neighbour differences) of
    ``image`` ``(H, W, 3) uint8`` over ``mask`` ``(H, W) bool``: how much a small movement
    changes the pixels."""
    return _grey_energy(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY), _mask8(mask))


def detail_sigma(face: np.ndarray, target: np.ndarray, mask: np.ndarray, max_side: int = 160) -> float:
    """The Gaussian sigma (px, from :data:`SIGMAS`) that brings the face's fine detail closest
    to the target's over ``mask``; 0 when the face is not sharper than the target.

    The search runs on grey copies of the masked box, shrunk to at most ``max_side`` px (the
    sigmas shrink with them), so it costs well under a millisecond; both images are measured the
    same way, so the comparison holds.
    """
    m8 = _mask8(mask)
    if cv2.countNonZero(m8) < 16:
        return 0.0
    x, y, w, h = cv2.boundingRect(m8)
    gf = cv2.cvtColor(face[y:y + h, x:x + w], cv2.COLOR_BGR2GRAY)
    gt = cv2.cvtColor(target[y:y + h, x:x + w], cv2.COLOR_BGR2GRAY)
    m = m8[y:y + h, x:x + w]
    k = min(1.0, max_side / max(w, h))
    if k < 1.0:  # pyrDown halves with a proper low-pass, then a cheap bilinear step to size
        size = (max(1, round(w * k)), max(1, round(h * k)))
        while gf.shape[1] >= 2 * size[0]:
            gf, gt = cv2.pyrDown(gf), cv2.pyrDown(gt)
        gf, gt = (cv2.resize(g, size, interpolation=cv2.INTER_LINEAR) for g in (gf, gt))
        m = cv2.resize(m, size, interpolation=cv2.INTER_NEAREST)
    counts = _counts(m)
    goal = _grey_energy(gt, m, counts)
    best, best_err = 0.0, abs(_grey_energy(gf, m, counts) - goal)
    for s in SIGMAS[1:]:
        energy = _grey_energy(cv2.GaussianBlur(gf, (0, 0), s * k), m, counts)
        err = abs(energy - goal)
        if err < best_err:
            best, best_err = s, err
        if energy < goal:  # blurring more only moves further away
            break
    return best


def soften(face: np.ndarray, sigma: float) -> np.ndarray:
    """``face`` blurred by ``sigma`` px (a copy when ``sigma`` is below 0.3)."""
    if sigma < 0.3:
        return face.copy()
    return cv2.GaussianBlur(face, (0, 0), sigma)
