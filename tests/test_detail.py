"""Detail matching: a sharp face is softened to a soft target's level, a soft one left alone."""

from __future__ import annotations

import cv2
import numpy as np

from swapline.blend import detail
from swapline.blend.detail import detail_energy, detail_sigma, soften

from .conftest import read


def _face_crop() -> np.ndarray:
    return np.ascontiguousarray(read("src_biden.jpg")[200:560, 430:720])


def test_sharp_face_is_softened_to_the_target() -> None:
    sharp = _face_crop()
    soft_target = cv2.GaussianBlur(sharp, (0, 0), 1.6)
    mask = np.ones(sharp.shape[:2], bool)
    sigma = detail_sigma(sharp, soft_target, mask)
    assert 0.9 <= sigma <= 2.8
    softened = soften(sharp, sigma)
    ratio = detail_energy(softened, mask) / detail_energy(soft_target, mask)
    assert 0.8 < ratio < 1.25, ratio


def test_soft_face_is_left_alone() -> None:
    face = cv2.GaussianBlur(_face_crop(), (0, 0), 2.0)
    mask = np.ones(face.shape[:2], bool)
    assert detail_sigma(face, _face_crop(), mask) == 0.0
    assert np.array_equal(soften(face, 0.0), face)


def test_only_the_mask_counts() -> None:
    sharp = _face_crop()
    target = sharp.copy()
    mask = np.zeros(sharp.shape[:2], bool)
    mask[100:250, 60:230] = True
    target[~mask] = 128  # flat outside the mask: must not pull the estimate down
    assert detail_sigma(sharp, target, mask) == 0.0
    assert detail_sigma(sharp, target, np.zeros_like(mask)) == 0.0  # nothing to measure


def _sobel_energy(grey: np.ndarray, mask: np.ndarray) -> float:
    """The detail measure as it was first written (six passes)."""
    gx = cv2.convertScaleAbs(cv2.Sobel(grey, cv2.CV_16S, 1, 0, ksize=1))
    gy = cv2.convertScaleAbs(cv2.Sobel(grey, cv2.CV_16S, 0, 1, ksize=1))
    return float(cv2.mean(cv2.add(gx, gy, dtype=cv2.CV_16U), mask=mask)[0])


def test_detail_energy_is_the_same_float_as_sobel() -> None:
    rng = np.random.default_rng(3)
    for i in range(3000):
        h, w = (int(v) for v in rng.integers(1, 70, 2))
        grey = rng.integers(0, 256, (h, w), dtype=np.uint8)
        if i % 3 == 0:
            grey = cv2.GaussianBlur(grey, (0, 0), 1.5)
        mask = (rng.random((h, w)) < rng.random()).astype(np.uint8)
        if i % 7 == 0:
            mask[:] = 1
        assert detail._grey_energy(grey, mask) == _sobel_energy(grey, mask), (h, w, i)
