"""ArcFace-512 identity embeddings (InsightFace ``w600k_r50``) for the neural swappers.

Faces are aligned to the arcface_112_v2 template at 112 px; the model takes RGB
``(x - 127.5) / 127.5`` NCHW and returns a 512-d vector per face. All faces of a call run as
one batch (one call per face when the graph's batch axis is fixed at 1).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .align import warp_to_template
from .types import Face

ARCFACE_SIZE = 112
ARCFACE_TEMPLATE = "arcface_112_v2"


def _fixed_batch_one(session: Any) -> bool:
    shape = session.get_inputs()[0].shape
    return bool(shape) and shape[0] == 1


class ArcFace:
    """ArcFace recognizer over an ONNX Runtime session (or anything with ``run``/``get_inputs``)."""

    def __init__(self, session: Any):
        self.session = session
        inp = session.get_inputs()[0]
        self._input = inp.name
        self._dtype = np.float16 if "float16" in str(inp.type) else np.float32
        self._batch_one = _fixed_batch_one(session)

    @staticmethod
    def align(image: np.ndarray, faces: Sequence[Face]) -> np.ndarray:
        """Aligned crops ``(N, 112, 112, 3) uint8`` BGR of ``faces`` in ``image``."""
        if not faces:
            return np.zeros((0, ARCFACE_SIZE, ARCFACE_SIZE, 3), np.uint8)
        return np.stack([warp_to_template(image, f.kps, ARCFACE_TEMPLATE, ARCFACE_SIZE)[0] for f in faces])

    def embed_crops(self, crops: np.ndarray, *, normalise: bool = True) -> np.ndarray:
        """Embeddings ``(N, 512) float32`` of aligned crops ``(N, 112, 112, 3) uint8`` BGR.

        ``normalise``: unit length (the default); ``False`` gives the raw vectors, which the
        ``crossface_*`` embedding converters take.
        """
        if len(crops) == 0:
            return np.zeros((0, 512), np.float32)
        blob = (crops[..., ::-1].transpose(0, 3, 1, 2).astype(np.float32) - 127.5) / 127.5
        blob = np.ascontiguousarray(blob, dtype=self._dtype)
        if self._batch_one:
            emb = np.concatenate([self.session.run(None, {self._input: blob[i:i + 1]})[0] for i in range(len(blob))])
        else:
            emb = self.session.run(None, {self._input: blob})[0]
        emb = emb.reshape(len(crops), -1).astype(np.float32)
        if normalise:
            emb /= np.linalg.norm(emb, axis=1, keepdims=True) + 1e-12
        return emb

    def embed(self, image: np.ndarray, faces: Sequence[Face], *, normalise: bool = True) -> np.ndarray:
        """Embeddings ``(N, 512) float32`` of ``faces`` (their ``kps``) in ``image`` (BGR uint8)."""
        return self.embed_crops(self.align(image, faces), normalise=normalise)
