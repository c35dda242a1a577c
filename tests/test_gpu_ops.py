"""Device image ops (swapline.gpu.ops) on CPU tensors against the OpenCV / numpy CPU path."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch is not installed (the GPU ops need it; pip install torch)")

from swapline.blend.color import lab_transfer as cpu_lab_transfer  # noqa: E402
from swapline.blend.masks import feather  # noqa: E402
from swapline.blend.paste import paste_back  # noqa: E402
from swapline.gpu import ops  # noqa: E402

from .conftest import read  # noqa: E402


def _nchw(img: np.ndarray) -> torch.Tensor:
    return ops.to_nchw(torch.from_numpy(img))


def _hwc(t: torch.Tensor) -> np.ndarray:
    return ops.to_hwc(t)[0].numpy()


def test_nv12_to_rgb_matches_opencv_within_one_level() -> None:
    bgr = read("src_obama.jpg")
    h, w = (bgr.shape[0] // 2) * 2, (bgr.shape[1] // 2) * 2
    bgr = bgr[:h, :w]
    i420 = cv2.cvtColor(bgr, cv2.COLOR_BGR2YUV_I420)
    y = i420[:h]
    u = i420[h:h + h // 4].reshape(h // 2, w // 2)
    v = i420[h + h // 4:].reshape(h // 2, w // 2)
    uv = np.stack([u, v], axis=-1)
    nv12 = np.concatenate([y, uv.reshape(h // 2, w)], axis=0)
    want = cv2.cvtColor(nv12, cv2.COLOR_YUV2RGB_NV12)
    got = ops.nv12_to_rgb(torch.from_numpy(y), torch.from_numpy(uv)).numpy()
    assert got.shape == want.shape and got.dtype == np.uint8
    diff = np.abs(got.astype(int) - want.astype(int))
    assert diff.max() <= 1 and diff.mean() < 0.3
    got_bgr = ops.nv12_to_rgb(torch.from_numpy(y), torch.from_numpy(uv.reshape(h // 2, w)), bgr=True).numpy()
    assert np.array_equal(got_bgr, got[..., ::-1])


@pytest.mark.parametrize("border", ["constant", "replicate"])
def test_warp_affine_matches_cv2_within_half_a_level(border: str) -> None:
    img = read("src_obama.jpg")
    angle, scale = 17.0, 0.8
    m = cv2.getRotationMatrix2D((img.shape[1] / 2, img.shape[0] / 2), angle, scale)
    m[:, 2] += (-30.0, 12.5)
    size = (256, 200)
    flag = cv2.BORDER_CONSTANT if border == "constant" else cv2.BORDER_REPLICATE
    want = cv2.warpAffine(img, m, size, flags=cv2.INTER_LINEAR, borderMode=flag).astype(np.float32)
    m2 = np.stack([m, cv2.getRotationMatrix2D((100, 100), -5, 1.1)])
    batch = _nchw(img).expand(2, -1, -1, -1)
    got = ops.warp_affine(batch, torch.from_numpy(m2), size, border=border)
    assert got.shape == (2, 3, 200, 256)
    diff = np.abs(got[0].permute(1, 2, 0).numpy() - want)
    assert diff.mean() < 0.5 and np.percentile(diff, 99.9) < 8
    want2 = cv2.warpAffine(img, m2[1], size, flags=cv2.INTER_LINEAR, borderMode=flag).astype(np.float32)
    assert np.abs(got[1].permute(1, 2, 0).numpy() - want2).mean() < 0.5


def test_remap_matches_cv2() -> None:
    img = read("src_biden.jpg")
    h, w = 180, 160
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    map_x = 40 + xx * 1.3 + 6 * np.sin(yy / 9)
    map_y = 30 + yy * 1.2 + 5 * np.cos(xx / 7)
    want = cv2.remap(img, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT).astype(np.float32)
    got = ops.remap(_nchw(img), torch.from_numpy(map_x), torch.from_numpy(map_y))[0].permute(1, 2, 0).numpy()
    assert np.abs(got - want).mean() < 0.5


@pytest.mark.parametrize(("erode_px", "blur_px"), [(0.0, 0.0), (3.0, 0.0), (0.0, 9.0), (4.0, 11.0)])
def test_feather_mask_matches_the_cpu_feather(erode_px: float, blur_px: float) -> None:
    mask = np.zeros((160, 140), np.uint8)
    cv2.ellipse(mask, (70, 80), (50, 65), 10, 0, 360, 255, -1)
    mask[0:30, 60:80] = 255  # touches the border: outside the crop counts as outside
    want = feather(mask, erode_px, blur_px)
    got = ops.feather_mask(torch.from_numpy(mask), erode_px, blur_px).numpy()
    assert got.shape == want.shape and got.dtype == np.float32
    assert np.abs(got - want).mean() < 0.01 and np.abs(got - want).max() < 0.25
    assert got.min() >= 0.0 and got.max() <= 1.0
    batched = ops.feather_mask(torch.from_numpy(mask > 127)[None, None].expand(2, 1, -1, -1), erode_px, blur_px)
    assert torch.allclose(batched[1, 0], torch.from_numpy(got))


def test_lab_transfer_matches_the_cpu_colour_match() -> None:
    face = cv2.resize(read("src_obama.jpg"), (192, 192))
    target = cv2.resize(read("src_astronaut_eileen_collins.png"), (192, 192))
    stats = np.zeros((192, 192), bool)
    stats[70:150, 50:140] = True
    want = cpu_lab_transfer(face, target, stats).astype(np.float32)
    got = ops.lab_transfer(_nchw(face), _nchw(target), torch.from_numpy(stats)[None])
    diff = np.abs(got[0].permute(1, 2, 0).numpy() - want)
    assert diff.mean() < 1.5 and np.percentile(diff, 99) < 6
    # too few statistics pixels: unchanged
    few = np.zeros_like(stats)
    few[0, :5] = True
    same = ops.lab_transfer(_nchw(face), _nchw(target), torch.from_numpy(few)[None])
    assert torch.equal(same, _nchw(face))


def test_lab_round_trip() -> None:
    rgb = torch.rand(2, 3, 17, 13, dtype=torch.float64)
    assert torch.allclose(ops.lab_to_rgb(ops.rgb_to_lab(rgb)), rgb, atol=1e-5)
    want = cv2.cvtColor(rgb[0].permute(1, 2, 0).numpy().astype(np.float32), cv2.COLOR_RGB2LAB)
    # OpenCV interpolates its gamma curve from a table: within half a LAB unit
    assert np.abs(ops.rgb_to_lab(rgb)[0].permute(1, 2, 0).numpy() - want).max() < 0.5


def test_paste_is_bit_exact_with_the_cpu_paste() -> None:
    frame = read("src_biden.jpg")
    rng = np.random.default_rng(3)
    patch = rng.integers(0, 256, (90, 70, 3), dtype=np.uint8)
    alpha = rng.random((90, 70)).astype(np.float32)
    alpha[:10] = 0.0
    alpha[-10:] = 1.0
    for origin in [(40, 25), (-20, -15), (frame.shape[1] - 30, frame.shape[0] - 40), (5000, 5)]:
        want = paste_back(frame, patch, alpha, origin)
        got = ops.paste(torch.from_numpy(frame), torch.from_numpy(patch), torch.from_numpy(alpha), origin)
        assert np.array_equal(got.numpy(), want), origin
    t = torch.from_numpy(frame.copy())
    assert ops.paste(t, torch.from_numpy(patch), torch.from_numpy(alpha), (0, 0), inplace=True) is t


def test_alpha_blend() -> None:
    fg = torch.full((2, 3, 4, 5), 200.0)
    bg = torch.zeros((2, 3, 4, 5))
    a = torch.full((2, 4, 5), 0.25)
    assert torch.allclose(ops.alpha_blend(fg, bg, a), torch.full((2, 3, 4, 5), 50.0))
    hwc = ops.alpha_blend(torch.full((4, 5, 3), 100.0), torch.full((4, 5, 3), 20.0), torch.full((4, 5), 0.5))
    assert torch.allclose(hwc, torch.full((4, 5, 3), 60.0))
