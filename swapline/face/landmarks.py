"""FaceMesh: 468 dense landmarks from an eye-aligned square crop.

The crop follows MediaPipe's recipe: centred on the face, rotated so the eyes are level, side
``roi_scale`` × the face size, resized to 192 × 192, RGB scaled to 0..1. The model returns
468 × (x, y, z) in crop pixels and a face-presence logit; points are mapped back to the image
with the inverse of the crop's affine (z scaled alike).
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
import onnxruntime as ort

from .align import invert_affine, transform_points
from .types import Face

MESH_SIZE = 192


def roi_from_points(center: np.ndarray, eye_left: np.ndarray, eye_right: np.ndarray, size: float, out: int) -> np.ndarray:
    """Affine ``(2, 3) float64`` mapping a rotated square region of the image onto ``out`` px.

    Args:
        center: ``(2,)`` centre of the region in image pixels.
        eye_left, eye_right: ``(2,)`` image-left and image-right eye; their line is made level.
        size: side of the square region in image pixels.
    """
    dx, dy = eye_right - eye_left
    angle = np.arctan2(dy, dx)
    scale = out / size
    c, s = np.cos(angle) * scale, np.sin(angle) * scale
    # rotate by -angle about the centre, scale, then move the centre to the crop's centre
    m = np.array([[c, s, 0.0], [-s, c, 0.0]])
    m[:, 2] = out / 2 - m[:, :2] @ center
    return m


# The detector's box sits a little high and loose for FaceMesh: measured over the 20 faces of
# the test photos, the crop a mesh implies is centred 0.04 box-heights lower (in the eye-level
# frame) and 0.91 times the size. Starting there, one pass usually suffices.
DETECTION_ROI_SHIFT = 0.04
DETECTION_ROI_SCALE = 1.5 * 0.91


def roi_from_face(face: Face) -> np.ndarray:
    """Crop affine for a freshly detected face, from its box and eye line (``(2, 3)``)."""
    eye_l, eye_r = face.kps[0].astype(np.float64), face.kps[1].astype(np.float64)
    dx, dy = eye_r - eye_l
    norm = np.hypot(dx, dy) + 1e-9
    down = np.array([-dy, dx]) / norm  # perpendicular to the eye line, towards the chin
    size = max(face.width, face.height)
    center = np.array(face.center, np.float64) + down * DETECTION_ROI_SHIFT * size
    return roi_from_points(center, eye_l, eye_r, size * DETECTION_ROI_SCALE, MESH_SIZE)


def roi_from_mesh(mesh: np.ndarray, roi_scale: float = 1.5) -> np.ndarray:
    """Crop affine from a previous mesh (tracking or refinement), ``(2, 3)``.

    The region is centred on the mesh's box and sized from its extent, so a second pass (or the
    next video frame) sees the face the way the model was trained to.
    """
    pts = np.asarray(mesh, np.float64)[:, :2]
    eye_l = pts[[33, 133]].mean(0)
    eye_r = pts[[263, 362]].mean(0)
    angle = np.arctan2(*(eye_r - eye_l)[::-1])
    c, s = np.cos(angle), np.sin(angle)
    rot = pts @ np.array([[c, -s], [s, c]])  # into the eye-level frame
    lo, hi = rot.min(0), rot.max(0)
    center = ((lo + hi) / 2) @ np.array([[c, s], [-s, c]])
    size = float((hi - lo).max()) * roi_scale
    return roi_from_points(center, eye_l, eye_r, size, MESH_SIZE)


def roi_differs(a: np.ndarray, b: np.ndarray, tolerance: float = 0.06) -> bool:
    """Whether two crop affines ``(2, 3)`` (image → crop) frame the face differently: the crop
    centre moved, or its size or rotation changed, by more than ``tolerance`` of the crop."""
    ia, ib = invert_affine(a), invert_affine(b)
    corners = np.array([[0, 0], [MESH_SIZE, 0], [0, MESH_SIZE], [MESH_SIZE, MESH_SIZE]], np.float64)
    pa = corners @ ia[:, :2].T + ia[:, 2]
    pb = corners @ ib[:, :2].T + ib[:, 2]
    side = np.linalg.norm(pa[1] - pa[0])
    return bool(np.abs(pa - pb).max() > tolerance * side)


class FaceMesh:
    """The 468-point FaceMesh model over an ONNX Runtime session (dynamic batch)."""

    def __init__(self, session: ort.InferenceSession):
        self.session = session
        self._input = session.get_inputs()[0].name
        names = [o.name for o in session.get_outputs()]
        self._points_name = next(n for n in names if n.endswith("_20")) if len(names) > 1 else names[0]
        self._score_name = next((n for n in names if n != self._points_name), None)

    def crops(self, image: np.ndarray, rois: Sequence[np.ndarray]) -> np.ndarray:
        """``(N, 3, 192, 192) float32`` model input for each crop affine of ``image`` (BGR uint8)."""
        out = np.empty((len(rois), 3, MESH_SIZE, MESH_SIZE), np.float32)
        for i, m in enumerate(rois):
            crop = cv2.warpAffine(image, m, (MESH_SIZE, MESH_SIZE), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
            out[i] = cv2.cvtColor(crop, cv2.COLOR_BGR2RGB).transpose(2, 0, 1)
        out *= 1.0 / 255.0
        return out

    def run(self, images: Sequence[np.ndarray], rois: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Landmarks for N crops, each of its own image.

        Args:
            images: N ``(H, W, 3) uint8`` BGR images (the same array may repeat).
            rois: N ``(2, 3)`` crop affines (image → 192 px crop).
        Returns:
            ``meshes (N, 468, 3) float32`` in image pixels, ``scores (N,) float32`` presence 0..1.
        """
        if len(rois) == 0:
            return np.zeros((0, 468, 3), np.float32), np.zeros((0,), np.float32)
        batch = np.concatenate([self.crops(img, [m]) for img, m in zip(images, rois)])
        outs = dict(zip([o.name for o in self.session.get_outputs()], self.session.run(None, {self._input: batch})))
        pts = outs[self._points_name].reshape(len(rois), 468, 3)
        logits = outs[self._score_name].reshape(-1) if self._score_name else np.full(len(rois), 10.0)
        meshes = np.stack([transform_points(p, invert_affine(m)) for p, m in zip(pts, rois)])
        return meshes.astype(np.float32), (1.0 / (1.0 + np.exp(-logits))).astype(np.float32)

    def landmark(self, image: np.ndarray, faces: Sequence[Face], refine: bool = True) -> list[Face]:
        """``faces`` of ``image`` with ``mesh`` and ``mesh_score`` filled in.

        With ``refine``, faces whose first-pass mesh implies a crop noticeably different from
        the detector's (turned, tilted or off-centre heads) get a second pass cropped from that
        mesh, the way the model expects; the others keep their first pass.
        """
        if not faces:
            return []
        rois = [roi_from_face(f) for f in faces]
        meshes, scores = self.run([image] * len(faces), rois)
        if refine:
            better = [roi_from_mesh(m) for m in meshes]
            redo = [i for i, (a, b) in enumerate(zip(rois, better)) if roi_differs(a, b)]
            if redo:
                m2, s2 = self.run([image] * len(redo), [better[i] for i in redo])
                meshes[redo], scores[redo] = m2, s2
        return [f.with_(mesh=m, mesh_score=float(s)) for f, m, s in zip(faces, meshes, scores)]
