"""Colour matching of the warped source face to the target crop.

All functions take ``face`` (the warped source, ``(H, W, 3) uint8`` BGR), ``target`` (the target
crop, same shape) and ``stats_mask`` (``(H, W)`` bool: skin pixels, e.g. cheek/nose/chin
patches, where statistics are computed in both images) and return a new ``(H, W, 3) uint8`` BGR
image: every pixel of the crop is transformed, the mask only selects the statistics. With fewer
than ``MIN_PIXELS`` statistics pixels there is nothing to learn from and ``face`` is returned
unchanged (a copy).
"""

from __future__ import annotations

import cv2
import numpy as np

from swapline.config import COLOR_MATCHES
from swapline.errors import ConfigError

MIN_PIXELS = 16
STD_RATIO_RANGE = (0.5, 2.0)


def _stats_mask(stats_mask: np.ndarray) -> np.ndarray:
    m = np.asarray(stats_mask)
    return m if m.dtype == np.bool_ else m > 0.5


def _lab(img: np.ndarray) -> np.ndarray:
    """``(H, W, 3) uint8`` BGR -> float32 CIELAB (L 0..100, a/b about -128..127)."""
    return cv2.cvtColor(img.astype(np.float32) * np.float32(1.0 / 255.0), cv2.COLOR_BGR2LAB)


def _from_lab(lab: np.ndarray) -> np.ndarray:
    bgr = cv2.cvtColor(lab, cv2.COLOR_LAB2BGR)
    return _to_uint8(bgr, 255.0)


def _to_uint8(img: np.ndarray, scale: float = 1.0) -> np.ndarray:
    """float32 -> uint8: scale, round to nearest, saturate (negatives clamped to 0 first, as
    cv2.convertScaleAbs alone would take ``|x|``)."""
    return cv2.convertScaleAbs(cv2.max(img, 0.0), alpha=scale)


def lab_with_error(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``image`` ``(H, W, 3) uint8`` BGR in OpenCV's 8-bit LAB, and what that loses.

    Returns ``(lab (H, W, 3) uint8, error (H, W, 3) uint8)`` with ``error = 128 + image -
    BGR(lab)`` (saturated; the round trip's error is at most a few tens of levels), so
    ``BGR(lab) + error - 128`` is ``image`` again.
    """
    lab = cv2.cvtColor(image, cv2.COLOR_BGR2LAB)
    error = cv2.subtract(image, cv2.cvtColor(lab, cv2.COLOR_LAB2BGR), dtype=cv2.CV_16S)
    return lab, cv2.convertScaleAbs(cv2.add(error, 128, dtype=cv2.CV_16S).clip(0, 255))


def lab_statistics(lab_f: np.ndarray, target: np.ndarray, stats_mask: np.ndarray) -> np.ndarray | None:
    """The statistics LAB transfer works from.

    Args:
        lab_f: ``(H, W, 3) uint8`` the face in 8-bit LAB (:func:`lab_with_error`).
        target: ``(H, W, 3) uint8`` BGR target crop.
        stats_mask: ``(H, W)`` bool skin pixels.
    Returns:
        ``(4, 3) float64``: mean_f, std_f, mean_t, std_t in OpenCV's 8-bit LAB units, or None
        with fewer than ``MIN_PIXELS`` statistics pixels.
    """
    mask = _stats_mask(stats_mask)
    if np.count_nonzero(mask) < MIN_PIXELS:
        return None
    m8 = mask.view(np.uint8) if mask.dtype == np.bool_ else mask.astype(np.uint8)
    # both images are only needed for their statistics: convert just the box around them
    x, y, w, h = cv2.boundingRect(m8)
    box = (slice(y, y + h), slice(x, x + w))
    m_box = np.ascontiguousarray(m8[box])
    mean_f, std_f = (v.reshape(3) for v in cv2.meanStdDev(lab_f[box], mask=m_box))
    lab_t = cv2.cvtColor(target[box], cv2.COLOR_BGR2LAB)
    mean_t, std_t = (v.reshape(3) for v in cv2.meanStdDev(lab_t, mask=m_box))
    return np.stack([mean_f, std_f, mean_t, std_t])


def lab_apply(lab_f: np.ndarray, error: np.ndarray, stats: np.ndarray) -> np.ndarray:
    """Map the face so its statistics ``stats[0:2]`` become ``stats[2:4]`` (``(4, 3)``, see
    :func:`lab_statistics`).

    ``lab_f``, ``error``: ``(H, W, 3) uint8`` from :func:`lab_with_error` (or sampled from a
    :class:`swapline.swap.mesh.Texture`). The map is affine per LAB channel (one
    ``cv2.transform``, rounded and saturated); adding ``error`` back cancels the 8-bit round
    trip's own loss (up to 9 levels in dark saturated pixels), so an identity map returns the
    face's own colours. Returns ``(H, W, 3) uint8`` BGR.
    """
    mean_f, std_f, mean_t, std_t = stats
    ratio = np.clip(std_t / np.maximum(std_f, 1e-3), *STD_RATIO_RANGE)
    affine = np.zeros((3, 4), np.float64)
    affine[[0, 1, 2], [0, 1, 2]] = ratio
    affine[:, 3] = mean_t - mean_f * ratio
    moved = cv2.cvtColor(cv2.transform(lab_f, affine), cv2.COLOR_LAB2BGR)
    return cv2.addWeighted(moved, 1.0, error, 1.0, -128.0)


def lab_transfer(face: np.ndarray, target: np.ndarray, stats_mask: np.ndarray) -> np.ndarray:
    """Reinhard colour transfer in CIELAB: face statistics -> target statistics.

    Per channel: ``out = (face - mean_f) * clip(std_t / std_f, 0.5, 2) + mean_t`` with means and
    standard deviations over ``stats_mask``, in OpenCV's 8-bit LAB (about 4x faster than float
    LAB). Returns ``(H, W, 3) uint8`` BGR.
    """
    lab_f, error = lab_with_error(face)
    stats = lab_statistics(lab_f, target, stats_mask)
    if stats is None:
        return face.copy()
    return lab_apply(lab_f, error, stats)


# --- histogram matching ----------------------------------------------------------------------

_SLOPE_RANGE = (0.5, 2.0)


def _gauss1d(x: np.ndarray, sigma: float) -> np.ndarray:
    """Smooth a 1-D float64 array with a Gaussian (edge values extended)."""
    r = int(np.ceil(3 * sigma))
    k = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
    k /= k.sum()
    padded = np.pad(x, r, mode="edge")
    return np.convolve(padded, k, mode="valid")


def _match_lut(src: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Smooth monotone ``(256,) float64`` map from ``src`` values to ``ref`` values (uint8 samples).

    CDF matching between Gaussian-smoothed histograms, trusted only between the 0.5 % and 99.5 %
    quantiles of ``src``; outside, the map continues with the mean/std slope (clamped like
    ``lab_transfer``) so values absent from the skin patch (teeth, eye whites, hair) are not thrown
    to the histogram's extremes. Slopes are clipped to 0.25..4 and the map smoothed again.
    """
    bins = np.arange(256, dtype=np.float64)
    hs = _gauss1d(np.bincount(src, minlength=256).astype(np.float64), 2.0) + 1e-6 * len(src)
    hr = _gauss1d(np.bincount(ref, minlength=256).astype(np.float64), 2.0) + 1e-6 * len(ref)
    cs = np.cumsum(hs) / hs.sum()
    cr = np.cumsum(hr) / hr.sum()
    # CDF value at bin centres (midpoint rule) for an unbiased match.
    cs_mid = cs - 0.5 * hs / hs.sum()
    cr_mid = cr - 0.5 * hr / hr.sum()
    lut = np.interp(cs_mid, cr_mid, bins)
    lo, hi = np.percentile(src, [0.5, 99.5])
    lo, hi = int(np.floor(lo)), int(np.ceil(hi))
    ratio = float(np.clip(ref.std() / max(src.std(), 1e-3), *STD_RATIO_RANGE))
    lut[:lo] = lut[lo] + (bins[:lo] - lo) * ratio
    lut[hi + 1:] = lut[hi] + (bins[hi + 1:] - hi) * ratio
    slopes = np.clip(np.diff(lut), *_SLOPE_RANGE)
    mid = (lo + hi) // 2
    rebuilt = np.concatenate([[0.0], np.cumsum(slopes)])
    lut = rebuilt - rebuilt[mid] + lut[mid]
    lut = _gauss1d(lut, 1.5)
    return lut


def histogram_match(face: np.ndarray, target: np.ndarray, stats_mask: np.ndarray) -> np.ndarray:
    """Per-channel histogram matching in 8-bit CIELAB with a smooth, monotone map.

    Each of L, a, b is mapped by a lookup table built from the two images' skin histograms (see
    ``_match_lut``): smoothed histograms, slope-limited (0.25..4), linear mean/std extension
    beyond the skin's 0.5..99.5 % range. Working in LAB instead of B, G, R keeps hue from drifting
    at the extremes (no red/magenta specks). Returns ``(H, W, 3) uint8`` BGR.
    """
    mask = _stats_mask(stats_mask)
    if np.count_nonzero(mask) < MIN_PIXELS:
        return face.copy()
    lab_f = cv2.cvtColor(face, cv2.COLOR_BGR2LAB)
    lab_t = cv2.cvtColor(target, cv2.COLOR_BGR2LAB)
    sf = lab_f[mask]
    st = lab_t[mask]
    luts = np.stack([_match_lut(sf[:, c], st[:, c]) for c in range(3)], axis=-1)
    lut = np.clip(np.rint(luts), 0, 255).astype(np.uint8).reshape(256, 1, 3)
    out = cv2.LUT(lab_f, lut)
    return cv2.cvtColor(out, cv2.COLOR_LAB2BGR)


# --- luminance preserving -------------------------------------------------------------------

def lowpass(image: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur ``(H, W) float32`` with ``sigma`` px; wide blurs run on a shrunken copy
    (a 20 px sigma costs what a 5 px one does), which a low-pass result does not notice."""
    factor = max(1, int(sigma // 4))
    if factor == 1:
        return cv2.GaussianBlur(image, (0, 0), sigma)
    h, w = image.shape[:2]
    small = cv2.resize(image, (max(1, w // factor), max(1, h // factor)), interpolation=cv2.INTER_AREA)
    small = cv2.GaussianBlur(small, (0, 0), sigma / factor)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def yuv_luma(
    face: np.ndarray,
    target: np.ndarray,
    stats_mask: np.ndarray,
    detail_sigma: float | None = None,
) -> np.ndarray:
    """Target luminance, source chroma (YUV, BT.601 as in ``cv2.COLOR_BGR2YUV``).

    ``U, V``: the face's chroma shifted by the difference of the skin means (target - face), so
    the source's colour pattern (lips, cheeks, eyes) stays but sits on the target's skin tone.
    ``Y``: the target's Y unchanged when ``detail_sigma`` is None (default): the target's lighting
    and shading are kept exactly (the source contributes only colour). With ``detail_sigma`` (px)
    ``Y = blur(Y_target) + (Y_face - blur(Y_face))``: the target's lighting (low frequencies),
    the source's detail. Where the new colour falls outside the RGB cube its chroma is scaled
    towards grey just enough to fit, so Y stays exact (to uint8 rounding) there too. Returns ``(H, W, 3) uint8`` BGR.
    """
    mask = _stats_mask(stats_mask)
    yuv_f = cv2.cvtColor(face.astype(np.float32), cv2.COLOR_BGR2YUV)
    yuv_t = cv2.cvtColor(target.astype(np.float32), cv2.COLOR_BGR2YUV)
    y_f, u_f, v_f = cv2.split(yuv_f)
    y_t = yuv_t[..., 0].copy()
    if detail_sigma is None:
        y_out = y_t
    else:
        s = float(detail_sigma)
        y_out = lowpass(y_t, s) + y_f - lowpass(y_f, s)
    if np.count_nonzero(mask) >= MIN_PIXELS:
        shift = yuv_t[mask][:, 1:].mean(axis=0) - yuv_f[mask][:, 1:].mean(axis=0)
    else:
        shift = np.zeros(2)
    out = cv2.merge([y_out, u_f + np.float32(shift[0]), v_f + np.float32(shift[1])])
    bgr = cv2.cvtColor(out, cv2.COLOR_YUV2BGR)
    # Keep Y exact where the colour leaves the RGB cube: scale the pixel's chroma towards grey
    # (Y + s * (bgr - Y) has the same Y for any s) by the largest s <= 1 that fits.
    inside = cv2.inRange(bgr, (0.0, 0.0, 0.0), (255.0, 255.0, 255.0))
    bad = np.flatnonzero(inside.reshape(-1) == 0)
    if len(bad):
        flat = bgr.reshape(-1, 3)
        px = flat[bad]
        y = np.clip(y_out.reshape(-1)[bad], 0.0, 255.0)[:, None]
        chroma = px - y
        room = np.where(chroma > 0, 255.0 - y, y)
        mag = np.maximum(np.abs(chroma), 1e-6)
        scale = np.minimum(room / mag, 1.0).min(axis=1, keepdims=True)
        flat[bad] = y + chroma * scale
    return _to_uint8(bgr)


def match_color(mode: str, face: np.ndarray, target: np.ndarray, stats_mask: np.ndarray) -> np.ndarray:
    """Dispatch on ``mode`` (``swapline.config.COLOR_MATCHES``): ``"lab"`` (default),
    ``"histogram"``, ``"yuv-luma"`` or ``"none"`` (a copy of ``face``). Returns ``(H, W, 3) uint8``."""
    if mode == "lab":
        return lab_transfer(face, target, stats_mask)
    if mode == "histogram":
        return histogram_match(face, target, stats_mask)
    if mode == "yuv-luma":
        return yuv_luma(face, target, stats_mask)
    if mode == "none":
        return face.copy()
    raise ConfigError(f"unknown colour match {mode!r}: use one of " + ", ".join(COLOR_MATCHES))


MONOCHROME_STD = 1.5  # chroma (YCrCb Cr, Cb) spread in levels about its tone curve: monochrome below
_TONE_DEGREE = 2  # the tone curve: chroma as a polynomial of luminance
_TONE_SAMPLES = 4000


def monochrome_tone(image: np.ndarray, where: np.ndarray) -> np.ndarray | None:
    """The tone curve of a monochrome face (grey, or toned like sepia, whose tint may follow its
    brightness), else None.

    Args:
        image: ``(H, W, 3) uint8`` BGR.
        where: ``(H, W) bool`` the face's pixels.
    Returns:
        ``(2, 3) float64`` polynomial coefficients (highest power first) of Cr and of Cb as
        functions of Y (OpenCV's 8-bit YCrCb, Y scaled to 0..1) when both stay within
        :data:`MONOCHROME_STD` levels (RMS) of them over ``where`` (at least :data:`MIN_PIXELS`).
    """
    count = int(np.count_nonzero(where))
    if count < MIN_PIXELS:
        return None
    k = max(1, int(np.sqrt(count / _TONE_SAMPLES)))  # an even grid of about that many samples
    small = np.ascontiguousarray(image[::k, ::k])
    ycc = cv2.cvtColor(small, cv2.COLOR_BGR2YCrCb)[where[::k, ::k]].astype(np.float64)
    y = ycc[:, 0] / 255.0
    curves = []
    for c in (1, 2):
        coeffs = np.polyfit(y, ycc[:, c], _TONE_DEGREE)
        if np.sqrt(np.mean((np.polyval(coeffs, y) - ycc[:, c]) ** 2)) >= MONOCHROME_STD:
            return None
        curves.append(coeffs)
    return np.stack(curves)


def with_tone(image: np.ndarray, tone: np.ndarray) -> np.ndarray:
    """``image`` ``(H, W, 3) uint8`` BGR with its own luminance and the chroma the tone curve
    ``tone`` (from :func:`monochrome_tone`) gives that luminance: a colour face made as grey or
    as toned as a monochrome target."""
    ycc = cv2.cvtColor(image, cv2.COLOR_BGR2YCrCb)
    lut_y = np.arange(256, dtype=np.float64) / 255.0
    for c in (1, 2):
        lut = np.clip(np.round(np.polyval(tone[c - 1], lut_y)), 0, 255).astype(np.uint8)
        ycc[..., c] = cv2.LUT(ycc[..., 0], lut)
    return cv2.cvtColor(ycc, cv2.COLOR_YCrCb2BGR)


TONE_GAIN_RANGE = (0.33, 3.0)  # the most a skin-tone gain may brighten or darken a channel
TONE_MIN_PIXELS = 32


def skin_tone_gain(face: np.ndarray, target: np.ndarray, where: np.ndarray) -> np.ndarray | None:
    """Per-channel gain that gives ``face`` the mean skin colour of ``target`` (both
    ``(h, w, 3) uint8`` BGR) over ``where`` ``(h, w) bool`` (skin of the target that the swap
    covers). Means are taken in linear light (sRGB decoded), so the gain keeps the face's own
    shading and texture and moves only its tone. Returns ``(3,) float32`` for the sRGB values
    (to apply with :func:`apply_tone_gain`), or None with fewer than :data:`TONE_MIN_PIXELS`."""
    if int(np.count_nonzero(where)) < TONE_MIN_PIXELS:
        return None
    step = 2 if np.count_nonzero(where[::2, ::2]) >= TONE_MIN_PIXELS else 1  # a mean needs no every pixel
    sel = where[::step, ::step]
    f = _linear(face[::step, ::step][sel])
    t = _linear(target[::step, ::step][sel])
    gain_lin = t.mean(0) / np.maximum(f.mean(0), 1e-4)
    # a gain g in linear light is about g ** (1 / 2.2) on the encoded values
    gain = np.clip(gain_lin ** (1.0 / 2.2), *TONE_GAIN_RANGE)
    return gain.astype(np.float32)


def apply_tone_gain(face: np.ndarray, gain: np.ndarray) -> np.ndarray:
    """``face`` ``(h, w, 3) uint8`` BGR times ``gain`` ``(3,)`` per channel (saturated)."""
    g = np.asarray(gain, np.float64).reshape(3)
    return cv2.multiply(face, (float(g[0]), float(g[1]), float(g[2]), 0.0), dtype=cv2.CV_8U)


def _linear(pixels: np.ndarray) -> np.ndarray:
    """``(N, 3) uint8`` sRGB-encoded → ``(N, 3) float32`` linear light 0..1."""
    x = np.asarray(pixels, np.float32) / np.float32(255.0)
    return np.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4).astype(np.float32)
