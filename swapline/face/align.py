"""Warp templates, similarity fits and aligned crops.

A template is five reference points (left eye, right eye, nose tip, left and right mouth
corner, as seen in the image) normalised to a square crop of side 1.
"""

from __future__ import annotations

import cv2
import numpy as np

from ..errors import NoFaceError

TEMPLATES: dict[str, np.ndarray] = {
    "arcface_112_v2": np.array(
        [[0.34191607, 0.46157411], [0.65653393, 0.45983393], [0.500225, 0.64050536],
         [0.37097589, 0.82469196], [0.63151696, 0.82325089]], dtype=np.float32),
    "arcface_128": np.array(
        [[0.36167656, 0.40387734], [0.63696719, 0.40235469], [0.50019687, 0.56044219],
         [0.38710391, 0.72160547], [0.61507734, 0.72034453]], dtype=np.float32),
    "ffhq_512": np.array(
        [[0.37691676, 0.46864664], [0.62285697, 0.46912813], [0.50123859, 0.61331904],
         [0.39308822, 0.72541100], [0.61150205, 0.72490465]], dtype=np.float32),
}


def template_points(name: str, size: int) -> np.ndarray:
    """``(5, 2) float32`` template ``name`` scaled to a ``size`` × ``size`` crop."""
    return TEMPLATES[name] * np.float32(size)


def fit_similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (rotation, uniform scale, shift) taking ``src`` onto ``dst``.

    Args:
        src: ``(N, 2)`` points, N ≥ 2.
        dst: ``(N, 2)`` points.
    Returns:
        ``(2, 3) float64`` affine matrix ``M`` with ``dst ≈ M @ [x, y, 1]``.
    """
    src = np.asarray(src, np.float64)
    dst = np.asarray(dst, np.float64)
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s, d = src - mu_s, dst - mu_d
    var = (s**2).sum()
    if var < 1e-12:
        raise NoFaceError("cannot align a face whose landmarks coincide")
    # Umeyama in 2-D with complex numbers: d ≈ c · s, c = a + ib.
    sc, dc = s[:, 0] + 1j * s[:, 1], d[:, 0] + 1j * d[:, 1]
    c = (np.conj(sc) * dc).sum() / var
    a, b = c.real, c.imag
    m = np.array([[a, -b, 0.0], [b, a, 0.0]])
    m[:, 2] = mu_d - m[:, :2] @ mu_s
    return m


def invert_affine(m: np.ndarray) -> np.ndarray:
    """Inverse of a ``(2, 3)`` affine matrix, ``(2, 3) float64``."""
    return cv2.invertAffineTransform(np.asarray(m, np.float64))


def transform_points(points: np.ndarray, m: np.ndarray) -> np.ndarray:
    """Apply ``(2, 3)`` affine ``m`` to ``(N, 2+)`` points (extra columns such as z are scaled
    by the affine's scale). Returns the same shape, float32."""
    p = np.asarray(points, np.float64)
    out = p.copy()
    out[:, :2] = p[:, :2] @ m[:, :2].T + m[:, 2]
    if p.shape[1] > 2:
        out[:, 2:] = p[:, 2:] * np.sqrt(abs(np.linalg.det(m[:, :2])))
    return out.astype(np.float32)


def warp_to_template(image: np.ndarray, kps: np.ndarray, template: str, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Crop the face with landmarks ``kps`` aligned to ``template`` at ``size`` px.

    Args:
        image: ``(H, W, 3) uint8``.
        kps: ``(5, 2) float32`` five landmarks in image pixels.
    Returns:
        ``(crop (size, size, 3) uint8, M (2, 3) float64)`` where M maps image → crop.
    """
    m = fit_similarity(kps, template_points(template, size))
    crop = cv2.warpAffine(image, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return crop, m


def kps_from_mesh(mesh: np.ndarray) -> np.ndarray:
    """Five alignment points from a ``(468, 2+)`` FaceMesh: eye centres, nose tip, mouth corners.

    Returns ``(5, 2) float32`` in the order of the templates (image-left eye first).
    """
    m = np.asarray(mesh, np.float32)[:, :2]
    right_eye = m[[33, 133]].mean(0)   # subject's right = image left
    left_eye = m[[263, 362]].mean(0)
    return np.stack([right_eye, left_eye, m[1], m[61], m[291]]).astype(np.float32)


def crop_box_in_frame(m: np.ndarray, size: int) -> tuple[int, int, int, int]:
    """Integer box ``(x0, y0, x1, y1)`` (end exclusive) of the frame pixels covered by a
    ``size`` px crop whose image → crop affine is ``m`` ``(2, 3)`` (pixel centres at integers)."""
    inv = invert_affine(m)
    corners = np.array([[-0.5, -0.5], [size - 0.5, -0.5], [-0.5, size - 0.5], [size - 0.5, size - 0.5]])
    pts = corners @ inv[:, :2].T + inv[:, 2]
    x0, y0 = np.floor(pts.min(0)).astype(int)
    x1, y1 = np.ceil(pts.max(0)).astype(int) + 1
    return int(x0), int(y0), int(x1), int(y1)
