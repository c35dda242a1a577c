"""The device (torch) swap path against the CPU one, on CPU tensors and real photos."""

from __future__ import annotations

import dataclasses
import time

import numpy as np
import pytest

from swapline.config import SwapConfig
from swapline.errors import ConfigError
from swapline.pipeline.frame import swap_faces
from swapline.swap.mesh import swap_mesh

from .conftest import read

torch = pytest.importorskip("torch")
from swapline.gpu.frame import face_maps, swap_faces_torch, unsupported_options

CPU_LIKE = SwapConfig(detail_match=False, keep_occluders=False, source_validity=False, relight=0.0, blend="alpha")  # the options the device path supports
MEAN_TOL = 2.0  # grey levels, mean of the per-pixel max channel difference over the changed pixels
P99_TOL = 12.0  # the same, 99th percentile


@pytest.fixture(scope="module")
def source(session):
    return dataclasses.replace(session.load_source(read("src_obama.jpg")), validity=False)


@pytest.fixture(scope="module")
def biden(session):
    image = read("src_biden.jpg")
    return image, session.analyse(image)


@pytest.fixture(scope="module")
def two(session):
    image = read("multi_two_people_obama_biden.jpg")
    return image, session.analyse(image)


def _run(image: np.ndarray, faces, source, config: SwapConfig, cache: dict | None = None):
    out, changed = swap_faces_torch(torch.from_numpy(image), faces, source, config, cache)
    assert out.dtype == torch.uint8 and changed.dtype == torch.bool
    return out.numpy(), changed.numpy()


def _compare(image: np.ndarray, faces, source, config: SwapConfig) -> tuple[np.ndarray, np.ndarray]:
    ref, ref_changed = swap_faces(image, faces, source, config)
    out, changed = _run(image, faces, source, config)
    # nothing outside `changed` moves, bit for bit
    assert np.array_equal(out[~changed], image[~changed])
    # the same pixels are touched (nearest-neighbour resize rounding aside)
    assert np.count_nonzero(changed ^ ref_changed) <= 1e-3 * np.count_nonzero(ref_changed) + 8
    union = changed | ref_changed
    diff = np.abs(out.astype(np.int16) - ref.astype(np.int16)).max(-1)[union]
    assert diff.mean() < MEAN_TOL, diff.mean()
    assert np.percentile(diff, 99) < P99_TOL, np.percentile(diff, 99)
    return out, changed


def test_matches_the_cpu_swap(biden, source) -> None:
    image, faces = biden
    assert faces
    out, changed = _compare(image, faces, source, CPU_LIKE)
    assert changed.sum() > 10_000
    assert np.abs(out.astype(np.int16) - image)[changed].mean() > 3  # the face really changed


@pytest.mark.parametrize("config", [
    SwapConfig(detail_match=False, keep_occluders=False, source_validity=False, relight=0.0, blend="alpha", color_match="none"),
    SwapConfig(detail_match=False, keep_occluders=False, source_validity=False, relight=0.0, blend="alpha", face_mask_types=("oval", "box")),
    SwapConfig(detail_match=False, keep_occluders=False, source_validity=False, relight=0.0, blend="alpha", face_mask_types=("area",), swap_resolution=512, face_shape_weight=0.3,
               expression="source"),
], ids=["no-colour", "oval+box", "area-fullres"])
def test_matches_the_cpu_swap_with_other_options(biden, source, config: SwapConfig) -> None:
    image, faces = biden
    _compare(image, faces, source, config)


def test_two_faces_both_change(two, source) -> None:
    image, faces = two
    assert len(faces) == 2
    out, changed = _compare(image, faces, source, CPU_LIKE)
    for face in faces:
        x0, y0, x1, y1 = (round(float(v)) for v in face.box)
        box = (slice(max(y0, 0), y1), slice(max(x0, 0), x1))
        assert changed[box].mean() > 0.5
        assert np.abs(out[box].astype(np.int16) - image[box]).mean() > 2


def test_face_past_the_frame_edge(biden, source) -> None:
    """A region reaching outside the frame is read with replicated edges and clipped on paste."""
    image, faces = biden
    x = int(faces[0].mesh[:, 0].mean())
    cut = np.ascontiguousarray(image[:, x:])
    shift = np.array([x, 0, 0], np.float32)
    moved = [dataclasses.replace(f, mesh=f.mesh - shift, box=f.box - np.array([x, 0, x, 0], np.float32))
             for f in faces]
    _compare(cut, moved, source, CPU_LIKE)


def test_face_maps_follow_swap_mesh(biden, source) -> None:
    image, faces = biden
    cfg = CPU_LIKE
    fm = face_maps(faces[0], source, shape_weight=cfg.face_shape_weight, resolution=cfg.swap_resolution)
    swap = swap_mesh(image, faces[0], source, shape_weight=cfg.face_shape_weight, resolution=cfg.swap_resolution)
    assert fm.origin == swap.origin
    assert fm.size == swap.face_region.shape[::-1]
    assert np.array_equal(fm.face_canvas, swap.canvas_face)
    np.testing.assert_array_equal(fm.mesh, swap.mesh)


def test_texture_cache_uploads_once(biden, source) -> None:
    image, faces = biden
    cache: dict = {}
    a, _ = _run(image, faces, source, CPU_LIKE, cache)
    assert len(cache) == 1
    entry = next(iter(cache.values()))
    b, _ = _run(image, faces, source, CPU_LIKE, cache)
    assert len(cache) == 1 and next(iter(cache.values())) is entry
    assert np.array_equal(a, b)


@pytest.mark.parametrize("changes, name", [
    ({}, "detail_match"),  # on by default
    ({"detail_match": False, "blend": "poisson"}, "poisson"),
    ({"detail_match": False, "color_match": "histogram"}, "histogram"),
    ({"detail_match": False, "color_match": "yuv-luma"}, "yuv-luma"),
    ({"detail_match": False, "blend": "alpha"}, "source_validity"),
    ({"detail_match": False, "blend": "alpha", "source_validity": False}, "relight"),
    ({"detail_match": False, "blend": "alpha", "source_validity": False, "relight": 0.0, "keep_occluders": True},
     "keep_occluders"),
    ({"detail_match": False, "source_validity": False, "relight": 0.0, "blend": "multiband"}, "multiband"),
])
def test_unsupported_options_are_refused(biden, source, changes: dict, name: str) -> None:
    image, faces = biden
    config = SwapConfig(**changes)
    assert any(name in b for b in unsupported_options(config))
    with pytest.raises(ConfigError, match=name):
        swap_faces_torch(torch.from_numpy(image), faces, source, config)


def test_no_faces_and_bad_frames(source) -> None:
    frame = torch.zeros((20, 30, 3), dtype=torch.uint8)
    out, changed = swap_faces_torch(frame, [], source, CPU_LIKE)
    assert torch.equal(out, frame) and out is not frame and not changed.any()
    with pytest.raises(ValueError, match="uint8"):
        swap_faces_torch(frame.float(), [], source, CPU_LIKE)


def test_time_one_1080p_frame(session, source, capsys) -> None:
    """Not a benchmark: prints one 1080p call's time on this machine (no assert on it)."""
    image = read("bench_obama_1080p.jpg")
    faces = session.analyse(image)
    cache: dict = {}
    frame = torch.from_numpy(image)
    swap_faces_torch(frame, faces, source, CPU_LIKE, cache)
    t0 = time.perf_counter()
    swap_faces_torch(frame, faces, source, CPU_LIKE, cache)
    t1 = time.perf_counter()
    swap_faces(image, faces, source, CPU_LIKE)
    t2 = time.perf_counter()
    with capsys.disabled():
        print(f"\n1080p, {len(faces)} face(s): torch on CPU {1000 * (t1 - t0):.1f} ms, numpy {1000 * (t2 - t1):.1f} ms")


def test_frame_path_selection() -> None:
    """The device path is chosen only with a device and options it supports; the CPU otherwise."""
    from swapline.config import SwapConfig
    from swapline.pipeline.frame import Processors, frame_path

    on_device = Processors(device="cuda:0")
    assert frame_path(SwapConfig(detail_match=False, keep_occluders=False, source_validity=False, relight=0.0, blend="alpha"), on_device) == "torch"
    assert frame_path(SwapConfig(detail_match=False, keep_occluders=False, source_validity=False, relight=0.0, blend="alpha"), Processors()) == "numpy"
    assert frame_path(SwapConfig(), on_device) == "numpy"  # detail matching: CPU only for now
    assert frame_path(SwapConfig(detail_match=False, keep_occluders=False, source_validity=False, relight=0.0, blend="poisson"), on_device) == "numpy"


def test_swap_faces_takes_the_device_path_when_told(session) -> None:  # noqa: ANN001
    """Forcing the device path onto the CPU device runs the torch ops and matches the CPU path."""
    from swapline.config import SwapConfig
    from swapline.pipeline.frame import Processors, swap_faces

    target = read("src_biden.jpg")
    source = dataclasses.replace(session.load_source(read("src_obama.jpg")), validity=False)
    faces = session.analyse(target)
    cfg = SwapConfig(detail_match=False, keep_occluders=False, source_validity=False, relight=0.0, blend="alpha")
    cpu, cpu_changed = swap_faces(target, faces, source, cfg)
    dev, dev_changed = swap_faces(target, faces, source, cfg, processors=Processors(device="cpu"))
    assert dev.dtype == np.uint8 and dev.shape == target.shape
    both = cpu_changed | dev_changed
    assert np.abs(dev[both].astype(int) - cpu[both]).mean() < 2.0
    assert np.array_equal(dev[~dev_changed], target[~dev_changed])
