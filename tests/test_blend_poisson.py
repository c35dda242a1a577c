"""Low-resolution Poisson blend: seams, gradients, constant offsets, seamlessClone agreement."""

from __future__ import annotations

import time

import cv2
import numpy as np
import pytest

from swapline.blend.masks import feather
from swapline.blend.poisson import poisson_blend

H, W = 550, 450


def _scene() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A textured "face" with one smooth colour field, a target with another, an elliptic mask."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    texture = cv2.GaussianBlur(rng.normal(0, 20, (H, W, 3)).astype(np.float32), (0, 0), 2)
    face = np.stack([100 + 0.1 * xx, 120 + 0.05 * yy, 140 + 0 * xx], -1) + texture
    target = np.stack([60 + 0.2 * yy, 150 - 0.05 * xx + 15 * np.sin(yy / 40), 100 + 0.1 * xx], -1)
    mask = np.zeros((H, W), np.float32)
    cv2.ellipse(mask, (225, 275), (160, 220), 0, 0, 360, 1.0, -1)
    return np.clip(face, 0, 255).astype(np.uint8), np.clip(target, 0, 255).astype(np.uint8), mask


def _rings(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    inside = (mask > 0.5).astype(np.uint8)
    ring = inside > cv2.erode(inside, np.ones((3, 3), np.uint8))
    interior = cv2.erode(inside, np.ones((41, 41), np.uint8)).astype(bool)
    return ring, interior


def _laplacian(img: np.ndarray) -> np.ndarray:
    return cv2.Laplacian(img.astype(np.float32), cv2.CV_32F)


def test_seamless_boundary_and_face_gradients() -> None:
    face, target, mask = _scene()
    out = poisson_blend(face, target, mask)
    assert out.dtype == np.uint8 and out.shape == face.shape
    ring, interior = _rings(mask)
    seam = np.abs(out.astype(float) - target)[ring].mean()
    plain = np.abs(face.astype(float) - target)[ring].mean()
    assert plain > 15 and seam < 2.5, f"seam {seam:.2f} (plain paste {plain:.2f})"
    # Inside, the face's detail (Laplacian) is kept; the target's is not.
    err = np.abs(_laplacian(out) - _laplacian(face))[interior].mean()
    assert err < 0.5 and err < 0.3 * np.abs(_laplacian(target) - _laplacian(face))[interior].mean()
    # Outside the mask the target is untouched.
    assert np.array_equal(out[mask == 0], target[mask == 0])


def test_constant_offset_gives_target_back() -> None:
    face, _, mask = _scene()
    face = np.clip(face, 40, 200)
    target = (face.astype(np.int16) + np.array([25, -15, 10], np.int16)).astype(np.uint8)
    out = poisson_blend(face, target, mask)
    assert np.abs(out.astype(int) - target)[mask > 0.5].max() <= 1


def test_close_to_seamless_clone_in_the_interior() -> None:
    face, target, mask = _scene()
    out = poisson_blend(face, target, mask)
    inside = (mask > 0.5).astype(np.uint8)
    x, y, w, h = cv2.boundingRect(inside)
    ref = cv2.seamlessClone(face, target, inside * 255, (x + w // 2, y + h // 2), cv2.NORMAL_CLONE)
    _, interior = _rings(mask)
    mean_diff = np.abs(out[interior].mean(0) - ref[interior].mean(0))
    assert mean_diff.max() < 3.0, mean_diff
    assert np.abs(out.astype(float) - ref)[interior].mean() < 4.0


def test_feathered_mask_and_robust_boundary() -> None:
    face, target, mask = _scene()
    # Dark "hair" on a short stretch of the target's boundary.
    ring, _ = _rings(mask)
    hair = np.zeros(mask.shape, bool)
    hair[40:70, 180:270] = True
    dark = target.copy()
    dark[hair] = 10
    soft = feather(mask, 6.0, 20.0)
    robust = poisson_blend(face, dark, soft)
    naive = poisson_blend(face, dark, soft, robust=False)
    clean = poisson_blend(face, target, soft)
    # The robust boundary keeps the hair from darkening the face below it.
    probe = np.zeros(mask.shape, bool)
    probe[90:130, 190:260] = True
    shift_robust = np.abs(robust[probe].astype(float).mean(0) - clean[probe].mean(0)).max()
    shift_naive = np.abs(naive[probe].astype(float).mean(0) - clean[probe].mean(0)).max()
    assert shift_naive > 5 and shift_robust < 0.5 * shift_naive
    # Alpha 0 (outside the feathered mask) is the target exactly.
    assert np.array_equal(robust[soft == 0], dark[soft == 0])


def test_empty_mask_and_mask_at_crop_edge() -> None:
    face, target, _ = _scene()
    empty = np.zeros((H, W), np.float32)
    assert np.array_equal(poisson_blend(face, target, empty), target)
    # A region touching the crop border is not pulled towards anything there.
    edge = np.zeros((H, W), np.float32)
    edge[:300, :200] = 1.0
    out = poisson_blend(face, target, edge)
    inside = np.zeros((H, W), bool)
    inside[:280, :180] = True
    assert np.isfinite(out).all() and out[inside].std() > 5


@pytest.mark.parametrize("repeat", [15])
def test_speed(repeat: int) -> None:
    face, target, mask = _scene()
    soft = feather(mask, 13.0, 16.0)
    poisson_blend(face, target, soft)
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        poisson_blend(face, target, soft)
        times.append(time.perf_counter() - t)
    assert float(np.median(times)) < 0.040  # target 10 ms; generous for a loaded test machine
