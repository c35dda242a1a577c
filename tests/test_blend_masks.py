"""Masks: polygons, boxes, mesh areas, feathering, combine_min, occlusion gate."""

from __future__ import annotations

import time

import cv2
import numpy as np
import pytest

from swapline.blend.masks import (
    area_mask,
    box_mask,
    combine_min,
    feather,
    hull_mask,
    polygon_mask,
)
from swapline.errors import ConfigError
from swapline.face import mesh_topology as topo

SHAPE = (400, 320)


def _ellipse(cx: float, cy: float, rx: float, ry: float, n: int, start: float = -np.pi / 2) -> np.ndarray:
    """``n`` points on an ellipse, clockwise on screen from ``start`` (top by default)."""
    t = start + np.linspace(0, 2 * np.pi, n, endpoint=False)
    return np.stack([cx + rx * np.cos(t), cy + ry * np.sin(t)], axis=1)


def synthetic_mesh(roll_deg: float = 0.0) -> np.ndarray:
    """A frontal cartoon face in FaceMesh numbering: the outlines the masks use, rolled about
    the face centre by ``roll_deg``."""
    mesh = np.tile([[160.0, 200.0]], (topo.N_POINTS, 1))
    mesh[topo.as_array(topo.FACE_OVAL)] = _ellipse(160, 200, 110, 150, len(topo.FACE_OVAL))
    # Eyes: subject's right eye on the image left; 33 / 263 are the outer corners.
    for loop, cx, outer in ((topo.RIGHT_EYE, 115, 33), (topo.LEFT_EYE, 205, 263)):
        mesh[topo.as_array(loop)] = _ellipse(cx, 160, 22, 8, len(loop))
        mesh[outer] = [cx - 22 if outer == 33 else cx + 22, 160]
    for group, cx in ((topo.RIGHT_BROW, 115), (topo.LEFT_BROW, 205)):
        t = np.linspace(-1, 1, len(group))
        mesh[topo.as_array(group)] = np.stack([cx + 28 * t, 135 - 6 * (1 - t**2)], axis=1)
    mesh[topo.as_array(topo.NOSE)] = _ellipse(160, 200, 18, 30, len(topo.NOSE))
    mesh[1] = [160, 215]
    mesh[2] = [160, 232]
    mesh[topo.as_array(topo.LIPS_OUTER)] = _ellipse(160, 275, 40, 16, len(topo.LIPS_OUTER))
    mesh[10] = mesh[topo.FACE_OVAL[0]]
    if roll_deg:
        a = np.deg2rad(roll_deg)
        r = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
        mesh = (mesh - [160, 200]) @ r.T + [160, 200]
    return mesh


def test_polygon_and_hull_masks() -> None:
    square = np.array([[10, 10], [50, 10], [50, 40], [10, 40]], float)
    m = polygon_mask((60, 60), square)
    assert m.dtype == np.float32 and m.shape == (60, 60)
    # Area: OpenCV's fill includes the outline pixels, so allow ~0.75 px all round.
    assert 40 * 30 <= float(m.sum()) < 40 * 30 + 0.75 * 140
    assert m[25, 30] == 1.0 and m[5, 5] == 0.0
    # Hull of a point cloud: a concave "C" ordering still fills its hull.
    pts = np.array([[10, 10], [50, 10], [20, 25], [50, 40], [10, 40]], float)
    h = hull_mask((60, 60), pts)
    assert h[25, 40] == 1.0 and polygon_mask((60, 60), pts)[25, 40] == 0.0


def test_box_mask_padding_and_feather_inside_box() -> None:
    box = (40.0, 50.0, 240.0, 350.0)
    hard = box_mask(SHAPE, box)
    assert abs(float(hard.sum()) - 200 * 300) < 1.0
    padded = box_mask(SHAPE, box, padding=(0.1, 0.0, 0.2, 0.05))
    ys, xs = np.nonzero(padded > 0.5)
    assert ys.min() == 80 and ys.max() == 289 and xs.min() == 50 and xs.max() == 239
    soft = box_mask(SHAPE, box, blur=0.1)  # 20 px feather
    assert soft[hard == 0].max() == 0.0, "feather leaks outside the box"
    assert soft[200, 140] == pytest.approx(1.0)
    assert 0.0 < soft[200, 50] < 1.0  # 10 px inside the edge: in the ramp
    assert soft[200, 41] < 0.05


def test_feather_stays_inside_and_is_fast() -> None:
    shape = (550, 450)
    m = np.zeros(shape, np.float32)
    cv2.ellipse(m, (225, 275), (160, 220), 0, 0, 360, 1.0, -1)
    inside = (m > 0.5).astype(np.uint8)
    dist = cv2.distanceTransform(np.pad(inside, 1), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)[1:-1, 1:-1]
    for erode, blur in ((13.5, 15.75), (0.0, 8.0), (5.0, 60.0)):
        f = feather(m, erode, blur)
        assert f.dtype == np.float32 and f.shape == shape
        assert f.min() >= 0.0 and f.max() <= 1.0
        assert f[dist <= erode].max() == 0.0, f"soft edge leaks outside the eroded mask ({erode}, {blur})"
        assert (f[dist > erode + blur + 2] > 0.99).all(), "core is not fully opaque"
        ramp = f[(dist > erode + 0.25 * blur) & (dist < erode + 0.75 * blur)]
        assert 0.05 < ramp.mean() < 0.95
    # Erode only: a hard edge moved inward.
    f = feather(m, 10.0, 0.0)
    assert set(np.unique(f)) <= {0.0, 1.0}
    assert np.array_equal(f > 0, dist > 10.0)
    # Accepts bool and 0/255 uint8.
    assert np.array_equal(feather(m > 0.5, 5, 6), feather(inside * 255, 5, 6))
    t = time.perf_counter()
    for _ in range(10):
        feather(m, 13.5, 15.75)
    assert (time.perf_counter() - t) / 10 < 0.03  # budget ~5 ms; generous for a busy machine


def test_combine_min() -> None:
    a = np.array([[0.2, 0.9], [1.0, 0.0]], np.float32)
    b = np.array([[0.5, 0.1], [0.7, 0.3]], np.float32)
    c = combine_min([a, b])
    assert np.array_equal(c, np.minimum(a, b)) and c.dtype == np.float32
    single = combine_min([a])
    assert np.array_equal(single, a) and single is not a
    with pytest.raises(ValueError):
        combine_min([])


@pytest.mark.parametrize("roll", [0.0, 25.0])
def test_area_definitions(roll: float) -> None:
    mesh = synthetic_mesh(roll)
    face = area_mask(SHAPE, mesh, ["face"])
    upper = area_mask(SHAPE, mesh, ["upper-face"])
    lower = area_mask(SHAPE, mesh, ["lower-face"])
    eyes = area_mask(SHAPE, mesh, ["eyes"])
    brows = area_mask(SHAPE, mesh, ["brows"])
    nose = area_mask(SHAPE, mesh, ["nose"])
    mouth = area_mask(SHAPE, mesh, ["mouth"])
    for m in (face, upper, lower, eyes, brows, nose, mouth):
        assert m.dtype == np.float32 and m.shape == SHAPE and m.max() == 1.0 and m.min() == 0.0
    assert np.abs(upper + lower - face).max() < 1e-5, "upper ∪ lower must equal face"
    assert float((upper > 0.5).sum()) > 0.3 * float((face > 0.5).sum())
    assert float((lower > 0.5).sum()) > 0.2 * float((face > 0.5).sum())

    def within(a: np.ndarray, b: np.ndarray) -> float:
        """Fraction of ``a``'s area inside ``b``."""
        return float(np.minimum(a, b).sum() / a.sum())

    assert within(eyes, face) > 0.999 and within(eyes, upper) > 0.999
    assert within(brows, upper) > 0.999
    assert within(mouth, lower) > 0.999 and within(mouth, upper) < 0.001
    assert within(nose, face) > 0.999
    # Eyes are the loops grown a little, not just the loops.
    loops = np.maximum(polygon_mask(SHAPE, mesh[topo.as_array(topo.LEFT_EYE)]),
                       polygon_mask(SHAPE, mesh[topo.as_array(topo.RIGHT_EYE)]))
    assert within(loops, eyes) > 0.999 and eyes.sum() > 1.3 * loops.sum()
    # Union of several areas = pixel-wise max.
    union = area_mask(SHAPE, mesh, ["eyes", "mouth", "nose"])
    assert np.array_equal(union, np.maximum(np.maximum(eyes, mouth), nose))
    with pytest.raises(ConfigError):
        area_mask(SHAPE, mesh, ["ears"])
