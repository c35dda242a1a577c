"""Lighting of a face as second-order spherical harmonics (SH), fitted from its mesh normals.

A Lambertian face under distant light reads ``I_c(x) ≈ ρ_c(x) · Σ_k l_kc Y_k(n(x))``: nine
coefficients per colour channel describe any smooth lighting. Fitted on a face's skin pixels
with its albedo taken as constant there, ``l`` absorbs the skin's mean colour, so ``shading``
predicts what skin looks like at each normal. Dividing the source's texture by its own shading
leaves a ratio that is 1 on average skin (its albedo relative to its skin: eyes, lips, brows,
freckles); multiplying that by the target's shading puts the source's face under the target's
lighting and in its skin tone.

Normals are in the mesh's frame (x right, y down, z away from the camera; see
:mod:`swapline.face.normals`).
"""

from __future__ import annotations

import cv2
import numpy as np

N_COEFFS = 9
# Real SH normalisation constants (bands 0, 1, 2).
_C0 = 0.282095
_C1 = 0.488603
_C2 = 1.092548
_C3 = 0.315392
_C4 = 0.546274
# Ridge weights per coefficient: band 0 free, the others pulled towards 0 a little so a face
# seen over a narrow cone of normals (a turned head) does not get wild lighting.
_RIDGE = np.array([0.0, 1.0, 1.0, 1.0, 4.0, 4.0, 4.0, 4.0, 4.0])
MIN_SHADING = 0.25  # shading is never taken below this fraction of the mean (no blow-ups)


def sh_basis(normals: np.ndarray) -> np.ndarray:
    """The nine real SH basis functions at ``normals`` ``(..., 3)`` (unit length).

    Returns ``(..., 9) float32``: Y00, Y1-1 (y), Y10 (z), Y11 (x), Y2-2 (xy), Y2-1 (yz),
    Y20 (3z²-1), Y21 (xz), Y22 (x²-y²).
    """
    n = np.asarray(normals, np.float32)
    x, y, z = n[..., 0], n[..., 1], n[..., 2]
    return np.stack([
        np.full_like(x, _C0), _C1 * y, _C1 * z, _C1 * x,
        _C2 * x * y, _C2 * y * z, _C3 * (3.0 * z * z - 1.0), _C2 * x * z, _C4 * (x * x - y * y),
    ], -1)


def fit_lighting(normals: np.ndarray, colors: np.ndarray, weights: np.ndarray | None = None,
                 iterations: int = 3, ridge: float = 1e-3) -> np.ndarray | None:
    """Least-squares SH lighting per channel, robust to outliers (iteratively reweighted with
    Tukey's biweight on each sample's residual, scaled by the median absolute residual).

    Args:
        normals: ``(N, 3)`` unit normals of the samples.
        colors: ``(N, C) float`` their colours (any scale; typically 0..255 BGR).
        weights: ``(N,)`` prior weights 0..1 (validity), or None.
        iterations: reweighting rounds after the first fit.
        ridge: strength of the pull of the non-constant coefficients towards 0, relative to
            the data's weight.
    Returns:
        ``(9, C) float32`` coefficients, or None with fewer than 30 usable samples.
    """
    b = sh_basis(normals).astype(np.float64)
    y = np.asarray(colors, np.float64).reshape(len(b), -1)
    w = np.ones(len(b)) if weights is None else np.asarray(weights, np.float64).reshape(-1).copy()
    ok = np.isfinite(y).all(1) & (w > 0)
    b, y, w = b[ok], y[ok], w[ok]
    if len(b) < 30:
        return None
    prior = w.copy()
    reg = np.diag(_RIDGE) * ridge
    coeffs = np.zeros((N_COEFFS, y.shape[1]))
    for it in range(iterations + 1):
        sw = w.sum()
        if sw <= 1e-9:
            return None
        bw = b * w[:, None]
        coeffs = np.linalg.solve(bw.T @ b + reg * sw, bw.T @ y)
        if it == iterations:
            break
        r = np.abs(y - b @ coeffs).mean(1)
        scale = 4.685 * 1.4826 * max(float(np.median(r[prior > 0.5] if (prior > 0.5).any() else r)), 1e-3)
        u = np.clip(r / scale, 0.0, 1.0)
        w = prior * (1.0 - u * u) ** 2
    return coeffs.astype(np.float32)


def shading(normals: np.ndarray, coeffs: np.ndarray) -> np.ndarray:
    """The fitted lighting at ``normals`` ``(..., 3)``: ``(..., C) float32``, never below
    :data:`MIN_SHADING` of the constant term (a dark prediction is not divided by)."""
    s = sh_basis(normals) @ np.asarray(coeffs, np.float32)
    floor = MIN_SHADING * _C0 * np.maximum(np.asarray(coeffs, np.float32)[0], 1e-3)
    return np.maximum(s, floor)


def mean_shading(coeffs: np.ndarray) -> np.ndarray:
    """``(C,) float32``: the lighting's constant term as a colour (the mean over all normals)."""
    return (_C0 * np.asarray(coeffs, np.float32)[0]).astype(np.float32)


def fit_face_lighting(image: np.ndarray, normals: np.ndarray, usable: np.ndarray,
                      samples: int = 1000) -> np.ndarray | None:
    """The SH lighting of a face from its pixels and per-pixel mesh normals.

    Args:
        image: ``(h, w, 3) uint8`` the face (any scale, e.g. a canvas-size copy).
        normals: ``(3, h, w) float32`` mesh normals interpolated per pixel (any length > 0).
        usable: ``(h, w) bool`` pixels to fit from (skin that is not an eye, brow, nostril or
            lip); outliers among them (hair, glasses) are down-weighted by the robust fit.
        samples: about how many pixels to use (an even grid).
    Returns:
        ``(9, 3) float32`` or None when too few pixels are usable.
    """
    count = int(usable.sum())
    if count < 30:
        return None
    step = max(1, int(np.sqrt(count / samples)))
    sel = usable[::step, ::step]
    n = normals[:, ::step, ::step][:, sel].T
    n = n / np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-6)
    return fit_lighting(n, image[::step, ::step][sel].astype(np.float32))


def shading_map(normals: np.ndarray, coeffs: np.ndarray) -> np.ndarray:
    """:func:`shading` over a map of normals ``(3, h, w)`` (any length > 0; zero-length ones
    give the mean): ``(h, w, C) float32``."""
    n = np.moveaxis(np.asarray(normals, np.float32), 0, -1)
    length = np.linalg.norm(n, axis=-1, keepdims=True)
    n = np.where(length > 1e-6, n / np.maximum(length, 1e-6), 0.0)
    return shading(n, coeffs)


LOW_LIGHT_GAIN_RANGE = (0.5, 2.0)


def low_light_gain(face: np.ndarray, target: np.ndarray, where: np.ndarray, sigma: float,
                   strength: float = 1.0, max_side: int = 96) -> np.ndarray | None:
    """``(h, w) float32`` gain that gives ``face`` the low-frequency luminance of ``target``
    (both ``(h, w, 3) uint8`` BGR): the ratio of their luminances low-passed by a Gaussian of
    ``sigma`` px, each averaged only over ``where`` ``(h, w) bool`` (normalised convolution: the
    target's skin that the swap covers), raised to ``strength`` (0: no change, 1: the target's
    light at that scale). Computed at most ``max_side`` px on the long side and resized back (a
    low-pass has no detail). None when ``where`` is almost empty."""
    h, w = where.shape
    if int(np.count_nonzero(where)) < 64 or strength <= 0:
        return None
    s = min(1.0, max_side / max(h, w))
    size = (max(1, round(w * s)), max(1, round(h * s)))
    small = [cv2.resize(cv2.cvtColor(x, cv2.COLOR_BGR2GRAY), size, interpolation=cv2.INTER_AREA).astype(np.float32)
             for x in (face, target)]
    wt = cv2.resize(where.astype(np.float32), size, interpolation=cv2.INTER_AREA)
    sg = max(0.5, sigma * s)
    norm = cv2.GaussianBlur(wt, (0, 0), sg) + 1e-4
    lf, lt = (cv2.GaussianBlur(x * wt, (0, 0), sg) / norm for x in small)
    gain = np.clip(np.maximum(lt, 1.0) / np.maximum(lf, 1.0), *LOW_LIGHT_GAIN_RANGE) ** np.float32(strength)
    return cv2.resize(gain.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
