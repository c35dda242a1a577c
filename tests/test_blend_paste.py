"""paste_back / crop_with_padding: exact endpoints, rounding, clipping at every border."""

from __future__ import annotations

import numpy as np
import pytest

from swapline.blend.paste import blend_u8, crop_with_padding, paste_back, quantize_alpha

RNG = np.random.default_rng(7)


def _frame(h: int = 60, w: int = 80) -> np.ndarray:
    return RNG.integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_blend_u8_rounds_exactly_over_all_values() -> None:
    p = np.arange(256, dtype=np.uint8)
    pp, aa = np.meshgrid(p, p, indexing="ij")  # every patch value x every alpha
    bg = (255 - pp).astype(np.uint8)
    got = blend_u8(bg[..., None].repeat(3, -1), pp[..., None].repeat(3, -1), aa.astype(np.uint8))[..., 0]
    exact = np.floor((pp.astype(np.int64) * aa + bg.astype(np.int64) * (255 - aa)) / 255.0 + 0.5)
    assert np.array_equal(got, exact.astype(np.uint8))


def test_quantize_alpha_endpoints() -> None:
    a = np.array([[0.0, 1e-4, 0.5, 1 - 1e-4, 1.0, -0.2, 1.3]], np.float32)
    assert quantize_alpha(a).tolist() == [[0, 0, 128, 255, 255, 0, 255]]


def test_alpha_zero_is_bit_identical_and_one_is_patch() -> None:
    frame = _frame()
    before = frame.copy()
    patch = _frame(20, 30)
    alpha = np.zeros((20, 30), np.float32)
    alpha[:, 15:] = 1.0
    alpha[5:10, :15] = 0.37
    out = paste_back(frame, patch, alpha, (10, 12))
    assert np.array_equal(frame, before), "input frame modified"
    assert out is not frame
    region = out[12:32, 10:40]
    assert np.array_equal(region[:, 15:], patch[:, 15:])
    zero = alpha == 0
    assert np.array_equal(region[zero], before[12:32, 10:40][zero])
    # Outside the rectangle nothing changes.
    mask = np.ones(frame.shape[:2], bool)
    mask[12:32, 10:40] = False
    assert np.array_equal(out[mask], before[mask])
    # Partial alpha: the rounded mix, no bias.
    expect = np.floor(0.37 * patch[5:10, :15] + 0.63 * before[17:22, 10:25] + 0.5)
    assert np.abs(region[5:10, :15].astype(int) - expect).max() <= 1
    assert abs(float((region[5:10, :15].astype(float) - (0.37 * patch[5:10, :15] + 0.63 * before[17:22, 10:25])).mean())) < 0.1


@pytest.mark.parametrize("origin", [(-7, 5), (70, 5), (10, -9), (10, 50), (-5, -5), (75, 55), (-40, 0), (100, 100)])
def test_clipping_at_every_border(origin: tuple[int, int]) -> None:
    frame = _frame()
    before = frame.copy()
    h, w = 20, 30
    patch = _frame(h, w)
    out = paste_back(frame, patch, np.ones((h, w), np.float32), origin)
    assert np.array_equal(frame, before)
    x0, y0 = origin
    expect = before.copy()
    fy0, fx0 = max(y0, 0), max(x0, 0)
    fy1, fx1 = min(y0 + h, 60), min(x0 + w, 80)
    if fy1 > fy0 and fx1 > fx0:
        expect[fy0:fy1, fx0:fx1] = patch[fy0 - y0:fy1 - y0, fx0 - x0:fx1 - x0]
    assert np.array_equal(out, expect)


def test_out_argument_writes_in_place() -> None:
    frame = _frame()
    patch = _frame(10, 10)
    out = paste_back(frame, patch, np.ones((10, 10), np.float32), (0, 0), out=frame)
    assert out is frame
    assert np.array_equal(frame[:10, :10], patch)


@pytest.mark.parametrize(
    "box",
    [(10, 10, 40, 30), (-10, -5, 20, 15), (60, 50, 100, 90), (-20, 20, 100, 40), (90, 10, 120, 30), (-30, -30, -10, -10)],
)
def test_crop_with_padding_replicates_edges(box: tuple[int, int, int, int]) -> None:
    frame = _frame()
    before = frame.copy()
    crop, origin = crop_with_padding(frame, box)
    x0, y0, x1, y1 = box
    assert origin == (x0, y0)
    assert crop.shape == (y1 - y0, x1 - x0, 3) and crop.dtype == np.uint8
    ys = np.clip(np.arange(y0, y1), 0, 59)
    xs = np.clip(np.arange(x0, x1), 0, 79)
    assert np.array_equal(crop, frame[ys][:, xs])
    assert np.array_equal(frame, before)
    crop[:] = 0  # a copy, not a view
    assert np.array_equal(frame, before)


def test_crop_then_paste_round_trip_is_identity() -> None:
    frame = _frame()
    crop, origin = crop_with_padding(frame, (-15, 40, 25, 75))
    out = paste_back(frame, crop, np.ones(crop.shape[:2], np.float32), origin)
    assert np.array_equal(out, frame)


def test_paste_where_copies_only_masked_pixels_in_place() -> None:
    from swapline.blend.paste import paste_where

    rng = np.random.default_rng(3)
    frame = rng.integers(0, 256, (60, 80, 3), dtype=np.uint8)
    before = frame.copy()
    patch = rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)
    where = rng.random((30, 40)) > 0.5
    for origin in [(10, 5), (-15, -10), (60, 45), (100, 100)]:
        out = before.copy()
        paste_where(out, patch, where, origin)
        x0, y0 = origin
        expected = before.copy()
        for y in range(30):
            for x in range(40):
                fy, fx = y0 + y, x0 + x
                if where[y, x] and 0 <= fy < 60 and 0 <= fx < 80:
                    expected[fy, fx] = patch[y, x]
        assert np.array_equal(out, expected), origin
    # a non-contiguous destination (every other column of a wider frame) works too
    wide = np.zeros((60, 160, 3), np.uint8)
    view = wide[:, ::2]
    paste_where(view, patch, np.ones((30, 40), bool), (0, 0))
    assert np.array_equal(wide[:30, 0:80:2], patch)
    assert np.array_equal(frame, before)
