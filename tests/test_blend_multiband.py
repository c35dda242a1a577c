"""Multi-band blend: exact where it must be (same face, beyond the reach, deep inside), a wide
seam for colour steps, no ghost of the face's texture, row bands and crop offsets invisible."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from swapline.blend import multiband as mb
from swapline.blend.multiband import multiband_blend, multiband_levels, multiband_reach

RNG = np.random.default_rng(11)


def _disks(shape: tuple[int, int], centres: list[tuple[float, float]], radius: float, ramp: float) -> np.ndarray:
    """``(h, w) float32``: 1 within ``radius - ramp`` of a centre ``(y, x)``, a linear ramp to 0 at
    ``radius`` (exact 0 and 1 outside the ramp)."""
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]].astype(np.float32)
    mask = np.zeros(shape, np.float32)
    for cy, cx in centres:
        mask = np.maximum(mask, np.clip((radius - np.hypot(yy - cy, xx - cx)) / ramp, 0.0, 1.0))
    return mask


def _distance_to(where: np.ndarray) -> np.ndarray:
    """Chessboard distance of every pixel to the nearest true pixel of ``where`` ``(h, w) bool``."""
    return cv2.distanceTransform((~where).astype(np.uint8), cv2.DIST_C, 3)


def _image(shape: tuple[int, int], lo: int = 40, hi: int = 200) -> np.ndarray:
    return RNG.integers(lo, hi, (*shape, 3), dtype=np.uint8)


def test_levels_and_reach() -> None:
    assert multiband_levels(420, 0.08) == 4  # 33.6 px wide coarsest transition: 2.1 * 2**4
    assert multiband_levels(210, 0.08) == 3
    assert multiband_levels(10, 0.08) == 1 and multiband_levels(1e6, 0.08) == mb.MAX_LEVELS
    widths = [multiband_levels(w, 0.08) for w in range(20, 2000, 7)]
    assert widths == sorted(widths)
    assert multiband_levels(300, 0.16) > multiband_levels(300, 0.04)
    assert multiband_reach(0, levels=4) == 34 and multiband_reach(0, levels=2) == 10
    assert multiband_reach(0, levels=1) == 0
    assert multiband_reach(420, 0.08) == multiband_reach(0, levels=4)


@pytest.mark.parametrize("levels", [1, 2, 3, 5])
def test_same_face_gives_target_bit_for_bit(levels: int) -> None:
    shape = (97, 131)
    target = _image(shape, 0, 256)
    mask = _disks(shape, [(40, 60)], 38, 9)
    face = RNG.integers(0, 256, target.shape, dtype=np.uint8)  # garbage outside the mask ...
    face[mask > 0] = target[mask > 0]  # ... and the target inside it
    out = multiband_blend(face, target, mask, 120.0, levels=levels)
    assert out.dtype == np.uint8 and out.shape == target.shape
    assert np.array_equal(out, target)


@pytest.mark.parametrize("levels", [2, 3, 4])
def test_target_untouched_beyond_the_reach(levels: int) -> None:
    shape = (131, 157)  # odd sizes; the mask runs off two corners of the crop
    target = _image(shape)
    face = (target.astype(np.int16) + 55).astype(np.uint8)
    mask = _disks(shape, [(8, -6), (126, 152)], 44, 6)
    out = multiband_blend(face, target, mask, 150.0, levels=levels)
    dist = _distance_to(mask > 0)
    reach = multiband_reach(150.0, levels=levels)
    far = dist > reach
    assert far.sum() > 1000
    assert np.array_equal(out[far], target[far])
    # ... and the colour difference does spread out of the mask, over more than the finest levels.
    changed = (out != target).any(axis=2)
    assert changed[dist > 2 ** (levels - 1)].any()


@pytest.mark.parametrize("levels", [3, 4, 5])
def test_far_tail_is_cut_smoothly(levels: int) -> None:
    """The worst case, a 255 step along a straight border: the blend's tail would still reach
    half a grey level beyond the reach; it is tapered off before it, without a step."""
    shape = (70, 300)  # tall enough for 6 levels
    x = np.arange(shape[1], dtype=np.float32)
    mask = np.repeat(np.clip((100.0 - x) / 6.0, 0.0, 1.0)[None], shape[0], axis=0)
    target = np.zeros((*shape, 3), np.uint8)
    face = np.full((*shape, 3), 255, np.uint8)
    out = multiband_blend(face, target, mask, 150.0, levels=levels)
    row = out[35, :, 0].astype(int)
    reach = multiband_reach(150.0, levels=levels)
    assert row[100 + reach:].max() == 0 and row[100 + reach // 2] > 0
    steps = np.diff(row[100:])
    assert np.all(steps <= 0) and -steps.min() <= 255 // 2 ** levels
    assert row[row > 0][-1] == 1  # it fades out: no step down to 0 where it is cut


def test_deep_inside_is_the_face() -> None:
    shape = (150, 160)
    target = _image(shape, 20, 120)
    face = _image(shape, 120, 240)
    mask = _disks(shape, [(75, 80)], 70, 8)
    for levels in (2, 3, 4):
        out = multiband_blend(face, target, mask, 140.0, levels=levels)
        deep = _distance_to(mask < 1) > multiband_reach(140.0, levels=levels)
        assert deep.sum() > 100
        assert np.abs(out.astype(int) - face)[deep].max() <= 1


def _edge_scene(ramp: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Face 40 brighter than the target left of column 100, through a linear mask ramp ``ramp``
    pixels wide; the face is black (garbage) right of the mask."""
    shape = (60, 240)
    x = np.arange(shape[1], dtype=np.float32)
    mask = np.repeat(np.clip((100.0 - x) / ramp, 0.0, 1.0)[None], shape[0], axis=0)
    target = np.full((*shape, 3), 100, np.uint8)
    face = np.full((*shape, 3), 140, np.uint8)
    face[mask == 0] = 0
    return face, target, mask


@pytest.mark.parametrize("ramp", [1.0, 4.0])
def test_colour_step_crosses_a_wide_band(ramp: float) -> None:
    face, target, mask = _edge_scene(ramp)
    alpha = cv2.blendLinear(face, target, mask, 1.0 - mask)
    steepest_alpha = np.abs(np.diff(alpha[30, :, 0].astype(int))).max()
    widths = []
    for band in (0.04, 0.16):
        out = multiband_blend(face, target, mask, 200.0, band)
        row = out[30, :, 0].astype(int)
        assert np.all(np.diff(row) <= 0), row  # monotone: no edge, no ring, nothing of the garbage
        assert np.abs(np.diff(row)).max() <= max(0.5 * steepest_alpha, 5)
        assert np.all(out[:, :40] == 140) and np.all(out[:, -30:] == 100)
        widths.append(int(((row > 104) & (row < 136)).sum()))  # 10-90 % of the step
    assert widths[0] < widths[1]
    assert 0.5 * 0.16 * 200 < widths[1] < 2.0 * 0.16 * 200


def test_texture_does_not_ghost() -> None:
    shape = (160, 160)
    mask = _disks(shape, [(80, 80)], 60, 5)
    target = np.full((*shape, 3), 120, np.uint8)
    xx = np.arange(shape[1])
    textures = {
        "noise": RNG.normal(0.0, 25.0, shape),
        "checkerboard": 40.0 * ((np.indices(shape).sum(axis=0) % 2) * 2 - 1),
        "stripes": np.repeat(40.0 * np.sin(2 * np.pi * xx / 8.0)[None], shape[0], axis=0),
    }
    outside = _distance_to(mask > 0)
    deep = _distance_to(mask < 1) > multiband_reach(120.0, levels=3)
    for name, texture in textures.items():
        face = np.repeat(np.clip(120.0 + texture, 0, 255).astype(np.uint8)[..., None], 3, axis=2)
        out = multiband_blend(face, target, mask, 120.0, levels=3).astype(int)
        ghost = np.abs(out - target)
        # The texture's amplitude is 25-40: a tenth of it 2 px out, a twentieth 6 px out.
        assert ghost[outside > 2].max() <= 4 and ghost[outside > 6].max() <= 2, name
        assert np.abs(out - face)[deep].max() <= 1, name


def test_one_level_is_the_alpha_blend() -> None:
    shape = (70, 90)
    face, target = _image(shape), _image(shape)
    mask = _disks(shape, [(35, 45)], 30, 12)
    out = multiband_blend(face, target, mask, 50.0, levels=1).astype(int)
    alpha = target + mask[..., None] * (face.astype(np.float32) - target)
    assert np.abs(out - alpha).max() <= 0.5 + 1e-3


def test_row_bands_skipping_and_crop_offset_do_not_show(monkeypatch: pytest.MonkeyPatch) -> None:
    shape = (160, 200)
    target = _image(shape, 60, 140)
    textured = target.copy()
    textured[..., 2] = RNG.integers(0, 256, shape)  # texture in one channel ...
    coloured = textured.copy()
    coloured[..., 1] += 90  # ... and a colour difference in another (the live test sums them)
    sign = (np.indices(shape).sum(axis=0) % 2 * 2 - 1)[..., None]
    checkered = (target + 20 * sign).astype(np.uint8)  # nothing of it below full size
    disk = _disks(shape, [(80, 100)], 45, 8)  # its box grown by the reach (34) fits the crop
    plateau = np.minimum(disk, np.float32(0.7))  # the blend inside too, and ...
    plateau[40:120, :100] = 0.7  # ... out to the crop's left side
    for face, mask in ((textured, disk), (coloured, disk), (checkered, plateau)):
        results = []
        for rows in (2, 30, 10_000):
            monkeypatch.setattr(mb, "STRIP_ROWS", rows)
            results.append(multiband_blend(face, target, mask, 400.0))
        # Every cell computed: the pixels skipped otherwise were the answer already.
        monkeypatch.setattr(mb, "LIVE", -1.0)
        monkeypatch.setattr(mb, "_MIXED", 2.0)
        results.append(multiband_blend(face, target, mask, 400.0))
        assert all(np.array_equal(r, results[0]) for r in results[1:])
        monkeypatch.undo()
    # The same scene inside a bigger crop: only the box around the mask is computed.
    pad = ((10, 30), (22, 6), (0, 0))
    big = multiband_blend(np.pad(coloured, pad), np.pad(target, pad), np.pad(disk, pad[:2]), 400.0)
    assert np.array_equal(big[10:170, 22:222], multiband_blend(coloured, target, disk, 400.0))


def test_empty_mask_and_inputs_left_alone() -> None:
    shape = (40, 50)
    face, target = _image(shape), _image(shape)
    out = multiband_blend(face, target, np.zeros(shape, np.float32), 40.0)
    assert np.array_equal(out, target) and out is not target
    mask = _disks(shape, [(20, 25)], 15, 4)
    copies = face.copy(), target.copy(), mask.copy()
    multiband_blend(face, target, mask, 40.0)
    assert all(np.array_equal(a, b) for a, b in zip((face, target, mask), copies))
    with pytest.raises(ValueError):
        multiband_blend(face, target[:-1], mask, 40.0)
