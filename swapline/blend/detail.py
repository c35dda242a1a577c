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


def detail_energy(image: np.ndarray, mask: np.ndarray) -> float:
    """Mean absolute grey-level gradient (horizontal plus vertical neighbour differences) of
    ``image`` ``(H, W, 3) uint8`` over ``mask`` ``(H, W) bool``: how much a small movement
    changes the pixels."""
    grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    gx = cv2.convertScaleAbs(cv2.Sobel(grey, cv2.CV_16S, 1, 0, ksize=1))
    gy = cv2.convertScaleAbs(cv2.Sobel(grey, cv2.CV_16S, 0, 1, ksize=1))
    m = mask.view(np.uint8) if mask.dtype == np.bool_ else mask.astype(np.uint8)
    return float(cv2.mean(cv2.add(gx, gy, dtype=cv2.CV_16U), mask=m)[0])


def detail_sigma(face: np.ndarray, target: np.ndarray, mask: np.ndarray) -> float:
    """The Gaussian sigma (px, from :data:`SIGMAS`) that brings the face's fine detail closest
    to the target's over ``mask``; 0 when the face is not sharper than the target."""
    if np.count_nonzero(mask) < 16:
        return 0.0
    goal = detail_energy(target, mask)
    x, y, w, h = cv2.boundingRect(mask.view(np.uint8) if mask.dtype == np.bool_ else mask.astype(np.uint8))
    crop, m = face[y:y + h, x:x + w], mask[y:y + h, x:x + w]
    best, best_err = 0.0, abs(detail_energy(crop, m) - goal)
    for s in SIGMAS[1:]:
        energy = detail_energy(cv2.GaussianBlur(crop, (0, 0), s), m)
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
