"""ArcFace-512 identity embeddings (InsightFace ``w600k_r50``) for the neural swappers.

Faces are aligned to the arcface_112_v2 template at 112 px; the model takes RGB
``(x - 127.5) / 127.5`` NCHW and returns a 512-d vector per face. All faces of a call run as
one batch (one call per face when the graph's batch axis is fixed at 1).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..runtime.model import ModelRunner
from .align import warp_to_template
from .types import Face

ARCFACE_SIZE = 112
ARCFACE_TEMPLATE = "arcface_112_v2"


class ArcFace:
    """ArcFace recognizer over an ONNX Runtime session (or anything with ``run``/``get_inputs``),
    run through a :class:`~swapline.runtime.model.ModelRunner` (input type, a batch fixed at 1,
    at most ``max_batch`` faces per call)."""

    def __init__(self, session: Any, *, max_batch: int | None = None):
        self.session = session
        self.runner = ModelRunner(session, name="arcface", max_batch=max_batch)
        self._input = next(iter(self.runner.inputs))

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
        emb = self.runner.run({self._input: blob})[0]
        emb = emb.reshape(len(crops), -1).astype(np.float32)
        if normalise:
            emb /= np.linalg.norm(emb, axis=1, keepdims=True) + 1e-12
        return emb

    def embed(self, image: np.ndarray, faces: Sequence[Face], *, normalise: bool = True) -> np.ndarray:
        """Embeddings ``(N, 512) float32`` of ``faces`` (their ``kps``) in ``image`` (BGR uint8)."""
        return self.embed_crops(self.align(image, faces), normalise=normalise)
