"""Unit tests of the dense piecewise-affine warp and the mesh posing."""

from __future__ import annotations

import cv2
import numpy as np

from swapline.face import mesh_topology as topo
from swapline.face.mesh_triangles import TRIANGLES
from swapline.swap.mesh import pose_mesh
from swapline.swap.mesh_warp import (
    dense_maps,
    expand_loop,
    fit_similarity_3d,
    rasterize_ids,
    ring_strip,
    triangle_affines,
)


def _rotation(ax: float, ay: float, az: float) -> np.ndarray:
    rx = cv2.Rodrigues(np.array([ax, 0.0, 0.0]))[0]
    ry = cv2.Rodrigues(np.array([0.0, ay, 0.0]))[0]
    rz = cv2.Rodrigues(np.array([0.0, 0.0, az]))[0]
    return rz @ ry @ rx


def test_triangle_affines_map_corners_exactly() -> None:
    rng = np.random.default_rng(0)
    dst = rng.uniform(0, 100, (50, 3, 2))
    src = rng.uniform(0, 100, (50, 3, 2))
    a = triangle_affines(dst, src)
    got = np.concatenate([dst, np.ones((50, 3, 1))], 2) @ a
    assert np.allclose(got, src, atol=1e-3)


def test_degenerate_triangle_gets_a_finite_map() -> None:
    dst = np.array([[[0, 0], [1, 1], [2, 2]]], float)  # collinear
    src = np.array([[[5, 5], [6, 6], [7, 7]]], float)
    a = triangle_affines(dst, src)
    assert np.isfinite(a).all()
    assert np.allclose(np.array([0, 0, 1.0]) @ a[0], [5, 5])


def test_rasterize_draws_later_triangles_on_top() -> None:
    tris = np.array([[[0, 0], [20, 0], [0, 20]], [[0, 0], [10, 0], [0, 10]]], float)
    ids = rasterize_ids(tris, (30, 30))
    assert ids[2, 2] == 2  # inside both: the later one wins
    assert ids[2, 15] == 1  # only in the first
    assert ids[25, 25] == 0


def test_dense_maps_identity_and_translation() -> None:
    tris = np.array([[[0, 0], [40, 0], [0, 40]], [[40, 0], [40, 40], [0, 40]]], float)
    ids = rasterize_ids(tris, (40, 40))
    mx, my = dense_maps(ids, triangle_affines(tris, tris + [3.0, -2.0]))
    ys, xs = np.mgrid[0:40, 0:40]
    inside = ids > 0
    assert inside.mean() > 0.9
    assert np.allclose(mx[inside], xs[inside] + 3.0, atol=1e-3)
    assert np.allclose(my[inside], ys[inside] - 2.0, atol=1e-3)
    assert np.allclose(mx[~inside], xs[~inside])  # no triangle: identity


def test_dense_maps_at_reduced_scale_give_output_pixels() -> None:
    tris = np.array([[[0, 0], [80, 0], [0, 80]], [[80, 0], [80, 80], [0, 80]]], float)
    ids = rasterize_ids((tris + 0.5) * 0.5 - 0.5, (40, 40))
    mx, my = dense_maps(ids, triangle_affines(tris, tris * 2.0), 0.5)
    full_x = cv2.resize(mx, (80, 80), interpolation=cv2.INTER_LINEAR)
    assert abs(full_x[40, 20] - 40.0) < 0.6  # output x=20 reads source x=40


def test_warp_moves_an_image_like_the_mesh() -> None:
    """Warping a checkerboard by a pure shift of its triangles shifts the pixels."""
    img = (np.indices((64, 64)).sum(0) % 16 < 8).astype(np.uint8) * 255
    tris = np.array([[[8, 8], [56, 8], [8, 56]], [[56, 8], [56, 56], [8, 56]]], float)
    ids = rasterize_ids(tris, (64, 64))
    mx, my = dense_maps(ids, triangle_affines(tris, tris + [4.0, 0.0]))
    out = cv2.remap(img, mx, my, cv2.INTER_NEAREST)
    assert np.array_equal(out[20:40, 20:40], img[20:40, 24:44])


def test_similarity_3d_recovers_a_known_transform() -> None:
    rng = np.random.default_rng(1)
    src = rng.normal(size=(40, 3))
    rot = _rotation(0.2, -0.4, 0.3)
    dst = 1.7 * src @ rot.T + [1.0, 2.0, 3.0]
    s, r, t = fit_similarity_3d(src, dst)
    assert abs(s - 1.7) < 1e-9 and np.allclose(r, rot) and np.allclose(t, [1, 2, 3])


def test_ring_strip_and_expand_loop() -> None:
    tris = ring_strip(4)
    assert tris.shape == (8, 3) and tris.max() == 7
    loop = np.array([[0, 0], [2, 0], [2, 2], [0, 2]], float)
    big = expand_loop(loop, 2.0)
    assert np.allclose(big.mean(0), loop.mean(0)) and np.allclose(np.ptp(big, 0), 4.0)


def test_triangulation_is_a_closed_surface_with_four_holes() -> None:
    from collections import Counter
    edges = Counter(tuple(sorted(e)) for t in TRIANGLES for e in ((t[0], t[1]), (t[1], t[2]), (t[0], t[2])))
    assert max(edges.values()) == 2
    boundary = {e for e, n in edges.items() if n == 1}
    loops = [topo.FACE_OVAL, topo.LIPS_INNER, topo.LEFT_EYE, topo.RIGHT_EYE]
    expected = {tuple(sorted((lp[i], lp[(i + 1) % len(lp)]))) for lp in loops for i in range(len(lp))}
    assert boundary == expected
    # the fills close the eye and mouth holes exactly
    filled = Counter(edges)
    for t in np.concatenate([topo.EYE_FILL, topo.MOUTH_FILL]):
        for e in ((t[0], t[1]), (t[1], t[2]), (t[0], t[2])):
            filled[tuple(sorted(e))] += 1
    assert {e for e, n in filled.items() if n == 1} == {
        tuple(sorted((lp[i], lp[(i + 1) % len(lp)]))) for lp in [topo.FACE_OVAL] for i in range(len(lp))}


def _fake_mesh(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.uniform(0, 200, (468, 3)).astype(np.float32)


def test_pose_mesh_weight_zero_is_the_target() -> None:
    src, tgt = _fake_mesh(0), _fake_mesh(1)
    assert np.allclose(pose_mesh(src, tgt, 0.0), tgt, atol=1e-4)


def test_pose_mesh_weight_one_without_expression_is_the_posed_source() -> None:
    tgt = _fake_mesh(1).astype(np.float64)
    rot = _rotation(0.1, 0.3, -0.2)
    src = (tgt - 50) @ rot.T * 0.5  # the same shape, another pose and scale
    out = pose_mesh(src, tgt, 1.0, keep_target_expression=False)
    assert np.allclose(out, tgt, atol=1e-3)


def test_pose_mesh_keeps_the_target_mouth_opening() -> None:
    tgt = _fake_mesh(2)
    src = tgt.copy()
    upper, lower = list(topo.LIPS_INNER_UPPER[1:-1]), list(topo.LIPS_INNER_LOWER[1:-1])
    src[lower, 1] -= 30  # the source's mouth is shut tighter than the target's
    opening = lambda m: float(m[lower, 1].mean() - m[upper, 1].mean())  # noqa: E731
    kept = pose_mesh(src, tgt, 1.0, keep_target_expression=True)
    taken = pose_mesh(src, tgt, 1.0, keep_target_expression=False)
    assert abs(opening(kept) - opening(tgt)) < 3.0
    assert abs(opening(taken) - opening(src)) < 3.0
