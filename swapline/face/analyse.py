"""Face analysis: detection, dense landmarks and identity, from the default models."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..models.store import ModelStore
from ..runtime.session import SessionFactory
from ..runtime.timing import StageTimes, timed
from .detect import YuNetDetector
from .landmarks import FaceMesh
from .recognize import SFace
from .types import Face


class FaceAnalyser:
    """Holds the three default model sessions and runs them in order on images."""

    def __init__(self, detector: YuNetDetector, mesh: FaceMesh, recognizer: SFace):
        self.detector = detector
        self.mesh = mesh
        self.recognizer = recognizer

    @classmethod
    def from_store(cls, store: ModelStore, factory: SessionFactory, score_threshold: float = 0.5) -> "FaceAnalyser":
        """Load YuNet, FaceMesh and SFace through the model store (fetch/convert on first use)."""
        opt = store.root / "optimized"
        return cls(
            YuNetDetector(factory.create(store.path("yunet"), optimized_dir=opt), score_threshold=score_threshold),
            FaceMesh(factory.create(store.path("facemesh"), optimized_dir=opt)),
            SFace(factory.create(store.path("sface"), optimized_dir=opt)),
        )

    def analyse(self, images: Sequence[np.ndarray], *, embed: bool = True, score_threshold: float | None = None,
                detector_size: int | None = None, times: StageTimes | None = None) -> list[list[Face]]:
        """All faces of each image (``(H, W, 3) uint8`` BGR), with mesh and, if ``embed``,
        identity. Faces whose mesh model reports no face (presence < 0.5) are dropped.
        ``detector_size`` is the detector's long side (default 640). ``times`` collects
        ``detect``, ``mesh`` and ``embed`` milliseconds."""
        with timed(times, "detect"):
            detected = self.detector.detect(images, score_threshold, detector_size)
        out: list[list[Face]] = []
        for image, faces in zip(images, detected):
            with timed(times, "mesh"):
                faces = [f for f in self.mesh.landmark(image, faces) if (f.mesh_score or 0.0) >= 0.5]
            if embed:
                with timed(times, "embed"):
                    faces = self.recognizer.embed(image, faces)
            out.append(faces)
        return out
